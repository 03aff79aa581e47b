package agent_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/objects"
)

// The reference scenario of DESIGN.md on two nodes: a hosts leonardo's
// leo1, b hosts db's pg1; db shares leonardo's route target, so leo1
// reaches pg1. The network "other" has endpoints with the same addresses
// on both nodes (oth1 = leo1's, oth2 = pg1's) and reaches neither; its
// oth3 has an address of its own. The
// reflector's RIB carries each endpoint with its RD, label, route targets
// and encapsulation community. The same against FRR, gobgpd and BIRD (no
// EVPN in BIRD: MPLS encapsulations only).
func TestReferenceScenario(t *testing.T) {
	lab.Modes(t, func(t *testing.T, m lab.Mode) {
		for _, tc := range []struct {
			kind   bgpd.Kind
			prefix string
			encaps string
		}{
			{bgpd.FRR, "wtaf", ""},
			{bgpd.GoBGPd, "wtag", ""},
			{bgpd.BIRD, "wtab", "[mplsoudp, mplsogre]"},
		} {
			t.Run(tc.kind.String(), func(t *testing.T) { referenceScenario(t, tc.prefix, tc.kind, tc.encaps, m) })
		}
	})
}

var referenceEndpoints = []epSpec{
	{Name: "leo1", Network: "leonardo", Address: "10.0.10.5/24", Node: "a"},
	{Name: "oth1", Network: "other", Address: "10.0.10.5/24", Node: "a"},
	{Name: "pg1", Network: "db", Address: "10.0.100.3/24", Node: "b"},
	{Name: "oth2", Network: "other", Address: "10.0.100.3/24", Node: "b"},
	// An address only other uses: a leak of it into leonardo would
	// disturb no ping, only the tables show it.
	{Name: "oth3", Network: "other", Address: "10.0.10.7/24", Node: "b"},
}

func referenceScenario(t *testing.T, prefix string, kind bgpd.Kind, encaps string, m lab.Mode) {
	start := time.Now()
	f := newFleet(t, prefix, kind, []string{"a", "b"}, fleetConfig{Mode: m, Encaps: encaps, Endpoints: referenceEndpoints})
	a, b := f.hosts["a"], f.hosts["b"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay, b.Underlay)
	waitRoute(t, a, "leonardo", "10.0.100.3/32", "192.0.2.2", 20*time.Second)
	waitRoute(t, b, "db", "10.0.10.5/32", "192.0.2.1", 20*time.Second)
	waitRoute(t, a, "other", "10.0.100.3/32", "192.0.2.2", 20*time.Second)
	waitRoute(t, a, "other", "10.0.10.7/32", "192.0.2.2", 20*time.Second)
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
	// Isolation in the vRouters' tables, matched by VRF and prefix: where
	// two networks use one address, each network's route leads to its
	// own endpoint (the label or VNI it takes in on the far side), and no
	// route of leonardo or db leads into other, nor one of other's out.
	ta, tb := tables(t, a), tables(t, b)
	for _, c := range []struct {
		h               *lab.Host
		local, remote   *objects.Set
		network, prefix string
		endpoint        string
		vni             uint32
	}{
		{a, ta, tb, "leonardo", "10.0.100.3/32", "pg1", 200},
		{a, ta, tb, "other", "10.0.100.3/32", "oth2", 400},
		{b, tb, ta, "db", "10.0.10.5/32", "leo1", 100},
		{b, tb, ta, "other", "10.0.10.5/32", "oth1", 400},
	} {
		nh, ok := routeIn(c.local, c.network, c.prefix)
		if !ok {
			t.Errorf("%s: no route %s in %s's VRF", c.h.Name, c.prefix, c.network)
			continue
		}
		if nh.GetKind() != vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL || nh.GetNetwork() != c.vni ||
			!leadsTo(c.remote, nh, c.endpoint) {
			t.Errorf("%s: %s in %s goes %v, want a tunnel to %s (network %d)", c.h.Name, c.prefix, c.network, nh, c.endpoint, c.vni)
		}
	}
	for _, c := range []struct {
		h        *lab.Host
		tab      *objects.Set
		network  string
		isolated func(vni uint32) bool
	}{
		{a, ta, "leonardo", func(v uint32) bool { return v != 400 }},
		{b, tb, "db", func(v uint32) bool { return v != 400 }},
		{a, ta, "other", func(v uint32) bool { return v == 400 }},
		{b, tb, "other", func(v uint32) bool { return v == 400 }},
	} {
		id, ok := vrfOf(c.tab, c.network)
		if !ok {
			t.Errorf("%s: no VRF for %s", c.h.Name, c.network)
			continue
		}
		for _, k := range objects.SortedRoutes(c.tab.Routes) {
			if k.VRF != id {
				continue
			}
			for _, nh := range members(c.tab, c.tab.Routes[k]) {
				if !c.isolated(nh.GetNetwork()) {
					t.Errorf("%s: %s's route %s leads into network %d: %v", c.h.Name, c.network, k.Prefix, nh.GetNetwork(), nh)
				}
			}
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

// members is next hop id of s, or its members when it is a composite.
func members(s *objects.Set, id uint32) []*vrouterv1.NextHop {
	nh := s.NextHops[id]
	if nh.GetKind() != vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE {
		return []*vrouterv1.NextHop{nh}
	}
	var out []*vrouterv1.NextHop
	for _, m := range nh.GetMembers() {
		out = append(out, s.NextHops[m])
	}
	return out
}

// leadsTo reports whether tunnel next hop nh arrives at endpoint's port in
// remote, the far vRouter's tables: by the label it takes in for the
// port (MPLS) or the VNI of the port's VRF (VXLAN).
func leadsTo(remote *objects.Set, nh *vrouterv1.NextHop, endpoint string) bool {
	var port uint32
	for id, p := range remote.Ports {
		if p.GetName() == endpoint {
			port = id
		}
	}
	if port == 0 {
		return false
	}
	if nh.GetEncap() == vrouterv1.Encap_ENCAP_VXLAN {
		return remote.VNIs[nh.GetVni()] == remote.Ports[port].GetVrf()
	}
	to, ok := remote.NextHops[remote.Labels[nh.GetLabel()]]
	return ok && to.GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT && to.GetPort() == port
}

// portRx is the frames h's vRouter took in from port.
func portRx(t *testing.T, h *lab.Host, port uint32) uint64 {
	t.Helper()
	for _, p := range vrouterCounters(t, h).GetPorts() {
		if p.GetPort() == port {
			return p.GetRxPackets()
		}
	}
	return 0
}

// drops is what h's vRouter counted dropped for reason.
func drops(t *testing.T, h *lab.Host, reason string) uint64 {
	t.Helper()
	return vrouterCounters(t, h).GetDrops()[reason]
}

// vrouterCounters reads h's vRouter's counters through its control API.
func vrouterCounters(t *testing.T, h *lab.Host) *vrouterv1.CountersReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.Client.Counters(ctx, &vrouterv1.CountersRequest{})
	if err != nil {
		t.Fatalf("%s: vrouter counters: %v", h.Name, err)
	}
	return c
}

func tunnelTx(t *testing.T, h *lab.Host, encap string) uint64 {
	t.Helper()
	c, err := h.AgentAPI.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.GetTunnelTx()[encap]
}
