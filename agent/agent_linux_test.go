package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
)

// The reference scenario of DESIGN.md on two nodes: a hosts leonardo's
// leo1, b hosts db's pg1; db shares leonardo's route target, so leo1
// reaches pg1. The network "other" has endpoints with the same addresses
// on both nodes (oth1 = leo1's, oth2 = pg1's) and reaches neither. The
// reflector's RIB carries each endpoint with its RD, label, route targets
// and encapsulation community. The same against FRR, gobgpd and BIRD (no
// EVPN in BIRD: MPLS encapsulations only).
func TestReferenceScenario(t *testing.T) {
	for _, tc := range []struct {
		kind   bgpd.Kind
		prefix string
		encaps string
	}{
		{bgpd.FRR, "wtaf", ""},
		{bgpd.GoBGPd, "wtag", ""},
		{bgpd.BIRD, "wtab", "[mplsoudp, mplsogre]"},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) { referenceScenario(t, tc.prefix, tc.kind, tc.encaps) })
	}
}

var referenceEndpoints = []epSpec{
	{Name: "leo1", Network: "leonardo", Address: "10.0.10.5/24", Node: "a"},
	{Name: "oth1", Network: "other", Address: "10.0.10.5/24", Node: "a"},
	{Name: "pg1", Network: "db", Address: "10.0.100.3/24", Node: "b"},
	{Name: "oth2", Network: "other", Address: "10.0.100.3/24", Node: "b"},
}

func referenceScenario(t *testing.T, prefix string, kind bgpd.Kind, encaps string) {
	start := time.Now()
	f := newFleet(t, prefix, kind, []string{"a", "b"}, fleetConfig{Encaps: encaps, Endpoints: referenceEndpoints})
	a, b := f.hosts["a"], f.hosts["b"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay, b.Underlay)
	waitRoute(t, a, "leonardo", "10.0.100.3/32", "192.0.2.2", 20*time.Second)
	waitRoute(t, b, "db", "10.0.10.5/32", "192.0.2.1", 20*time.Second)
	waitRoute(t, a, "other", "10.0.100.3/32", "192.0.2.2", 20*time.Second)
	t.Logf("fleet up and routes exchanged in %v", time.Since(start).Round(time.Millisecond))

	// leonardo reaches db: ping and TCP.
	echo(t, f.eps["pg1"], "10.0.100.3:5432")
	mustPing(t, f.eps["leo1"], "10.0.100.3")
	transfer(t, f.eps["leo1"], "10.0.100.3:5432", 2<<20)

	// other reaches its own endpoint at pg1's address, never pg1.
	pg1 := endpointPort(t, b, "pg1")
	before := portTx(t, b, pg1)
	mustPing(t, f.eps["oth1"], "10.0.100.3")
	if c, err := dial(f.eps["oth1"], "10.0.100.3:5432", 2*time.Second); err == nil {
		c.Close()
		t.Error("oth1 connected to 10.0.100.3:5432: only pg1 listens there, and other must not reach db")
	}
	if n := portTx(t, b, pg1) - before; n != 0 {
		t.Errorf("pg1's port sent %d frames while only the other network talked to its address", n)
	}
	// leonardo and db see nothing of other: no route of other's in theirs.
	for _, r := range routesOf(t, a, "leonardo") {
		if strings.Contains(r.Via, "oth") {
			t.Errorf("leonardo on a has a route into other: %v", r)
		}
	}

	// The reflector's RIB.
	labels := map[string]uint32{}
	for _, h := range []*lab.Host{a, b} {
		eps, err := h.AgentAPI.Endpoints()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			labels[e.Name] = e.Label
		}
	}
	var rib []bgpd.RIBEntry
	waitFor(t, "the reflector to hold four VPNv4 endpoint routes", 10*time.Second, func() bool {
		var err error
		rib, err = f.rr.VPNv4()
		return err == nil && len(rib) >= 4
	})
	want := []struct {
		ep, prefix, nexthop, rt string
	}{
		{"leo1", "10.0.10.5/32", "192.0.2.1", "64512:100"},
		{"oth1", "10.0.10.5/32", "192.0.2.1", "64512:400"},
		{"pg1", "10.0.100.3/32", "192.0.2.2", "64512:200"},
		{"oth2", "10.0.100.3/32", "192.0.2.2", "64512:400"},
	}
	rds := map[string]bool{}
	for _, w := range want {
		var got *bgpd.RIBEntry
		for i, e := range rib {
			if e.Prefix.String() == w.prefix && e.NextHop.String() == w.nexthop && slices.Contains(e.RouteTargets, w.rt) {
				got = &rib[i]
			}
		}
		if got == nil {
			t.Errorf("%s: no VPNv4 route %s via %s with RT %s in the reflector: %v", kind, w.prefix, w.nexthop, w.rt, rib)
			continue
		}
		if !strings.HasPrefix(got.RD, w.nexthop+":") || rds[got.RD+w.prefix] {
			t.Errorf("%s %s: RD %q, want %s:<vrf>, unique per network", w.ep, w.prefix, got.RD, w.nexthop)
		}
		rds[got.RD+w.prefix] = true
		if got.Label != labels[w.ep] {
			t.Errorf("%s: label %d in the reflector, the agent allocated %d", w.ep, got.Label, labels[w.ep])
		}
		if !slices.Contains(got.Encaps, 13) {
			t.Errorf("%s: encapsulation communities %v lack MPLSoUDP (13)", w.ep, got.Encaps)
		}
		if w.ep == "pg1" && !slices.Contains(got.RouteTargets, "64512:100") {
			t.Errorf("pg1 must also carry leonardo's 64512:100 (the join): %v", got.RouteTargets)
		}
	}
}

func endpointPort(t *testing.T, h *lab.Host, name string) uint32 {
	t.Helper()
	eps, err := h.AgentAPI.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eps {
		if e.Name == name {
			return e.Port
		}
	}
	t.Fatalf("%s: no endpoint %s: %v", h.Name, name, eps)
	return 0
}

func portTx(t *testing.T, h *lab.Host, port uint32) uint64 {
	t.Helper()
	c, err := h.AgentAPI.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.GetPorts() {
		if p.GetPort() == port {
			return p.GetTxPackets()
		}
	}
	return 0
}

func routesOf(t *testing.T, h *lab.Host, network string) []agentapi.Route {
	t.Helper()
	rs, err := h.AgentAPI.Routes(network)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func tunnelTx(t *testing.T, h *lab.Host, encap string) uint64 {
	t.Helper()
	c, err := h.AgentAPI.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.GetTunnelTx()[encap]
}
