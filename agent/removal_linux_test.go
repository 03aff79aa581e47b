package agent_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/vrouter/objects"
)

// A network removed from a running fleet: the reference scenario's two
// nodes, then a config without the network "other" and its endpoints is
// reloaded on both. Read from the vRouters' tables (not the agents'
// record), other's VRF, routes, ports, VNI, labels and next hops are gone
// from both nodes, and leonardo and db still forward.
func TestNetworkRemoved(t *testing.T) {
	f := newFleet(t, "wtan", bgpd.FRR, []string{"a", "b"}, fleetConfig{Endpoints: referenceEndpoints})
	a, b := f.hosts["a"], f.hosts["b"]
	waitRoute(t, a, "leonardo", "10.0.100.3/32", "192.0.2.2", 30*time.Second)
	waitRoute(t, b, "db", "10.0.10.5/32", "192.0.2.1", 30*time.Second)
	waitRoute(t, a, "other", "10.0.100.3/32", "192.0.2.2", 30*time.Second)
	waitRoute(t, b, "other", "10.0.10.5/32", "192.0.2.1", 30*time.Second)
	otherVRF := map[*lab.Host]uint32{}
	for _, h := range []*lab.Host{a, b} {
		id, ok := vrfOf(tables(t, h), "other")
		if !ok || !hasRoute(t, h, "other", "10.0.10.5/32") || !hasRoute(t, h, "other", "10.0.100.3/32") {
			t.Fatalf("%s: other's VRF and routes are not in the vRouter before the removal", h.Name)
		}
		otherVRF[h] = id
	}

	kept := slices.DeleteFunc(slices.Clone(referenceEndpoints), func(e epSpec) bool { return e.Network == "other" })
	cfg := renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: kept})
	var lines []string
	for _, l := range strings.Split(cfg, "\n") {
		if !strings.Contains(l, "name: other") {
			lines = append(lines, l)
		}
	}
	f.l.WriteFile(t, "weft.yaml", strings.Join(lines, "\n"))
	for _, h := range []*lab.Host{a, b} {
		if err := h.AgentAPI.Reload(); err != nil {
			t.Fatalf("%s: reload without other: %v", h.Name, err)
		}
	}

	for _, h := range []*lab.Host{a, b} {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			left := otherLeft(tables(t, h), otherVRF[h])
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: 30 s after the reload, the vRouter still has of network other: %v", h.Name, left)
			}
		}
	}
	if !hasRoute(t, a, "leonardo", "10.0.100.3/32") || !hasRoute(t, b, "db", "10.0.10.5/32") {
		t.Fatal("leonardo's and db's routes went with other")
	}
	echo(t, f.eps["pg1"], "10.0.100.3:5432")
	mustPing(t, f.eps["leo1"], "10.0.100.3")
	transfer(t, f.eps["leo1"], "10.0.100.3:5432", 1<<20)
}

// otherLeft lists what of network other (VNI 400, its endpoints oth1,
// oth2 and oth3, its VRF vrf) is still in a vRouter's tables: a label of its
// would keep one of its next hops.
func otherLeft(s *objects.Set, vrf uint32) []string {
	var left []string
	if id, ok := vrfOf(s, "other"); ok {
		left = append(left, fmt.Sprintf("VRF %d", id))
	}
	if v := s.VRFs[vrf]; v == nil || v.GetName() == "other" {
		for k := range s.Routes {
			if k.VRF == vrf {
				left = append(left, "route "+k.Prefix.String())
			}
		}
	}
	for _, p := range s.Ports {
		if strings.HasPrefix(p.GetName(), "oth") {
			left = append(left, "port "+p.GetName())
		}
	}
	if _, ok := s.VNIs[400]; ok {
		left = append(left, "VNI 400")
	}
	for _, nh := range s.NextHops {
		if nh.GetNetwork() == 400 {
			left = append(left, "next hop "+nh.String())
		}
	}
	slices.Sort(left)
	return left
}
