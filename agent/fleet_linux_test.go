package agent_test

// One real node in a simulated fleet: internal/testrig/fleetsim feeds a
// real reflector the routes of N remote nodes, and node a (real `weft
// agent` and `weft vrouter`) hosts endpoints in 2 of the fleet's networks.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/fleetsim"
	"github.com/weftnet/weft/internal/testrig/lab"
)

// simFleet is the bar's fleet: 1,000 nodes and 300 networks, each node in
// 3 networks with 2 endpoints in each (6,000 routes, every network on 10
// nodes). The benchmark takes more endpoints per node.
var simFleet = fleetsim.Fleet{Nodes: 1000, Networks: 300, PerNode: 3, Endpoints: 2, ASN: 64512,
	FirstNode: netip.MustParseAddr("198.18.0.1")}

const genAddr = "192.0.2.200" // the generator's host on the fabric

// fleetFigures are what one run of the scenario measured.
type fleetFigures struct {
	received     int           // VPNv4 paths a received from the reflector
	adjOut       int           // paths in the reflector's Adj-RIB-Out to a
	networkAdded time.Duration // endpoint in a new network -> its routes installed
	restart      time.Duration // reflector restart -> every route installed again
	restartConv  string        // the agent's own last convergence after it
}

// runSimFleet: node a hosts net007 and net123 of fleet behind a reflector of
// kind that the generator feeds. It checks what a receives (its status per
// network, its installed routes, the reflector's Adj-RIB-Out to it: with
// rtc only its networks' routes, without it the whole fleet's), then adds
// an endpoint in net200 and restarts the reflector, and returns the
// figures. Every wait is bounded generously; the times are figures.
func runSimFleet(t testing.TB, prefix string, kind bgpd.Kind, fleet fleetsim.Fleet) fleetFigures {
	t.Helper()
	hosted := []int{7, 123}
	var nets strings.Builder
	for m := range fleet.Networks {
		n := fleet.Network(m)
		fmt.Fprintf(&nets, "  - {name: %s, vni: %d, routeTargets: {import: [%q], export: [%q]}, subnets: [%q]}\n", n.Name, n.VNI, n.RT, n.RT, n.Subnet)
	}
	var eps []epSpec
	for _, m := range hosted {
		eps = append(eps, epSpec{Name: fmt.Sprintf("s%d", m), Network: fleet.Network(m).Name, Address: fmt.Sprintf("10.0.255.%d/16", m), Node: "a"})
	}
	c := fleetConfig{Endpoints: eps, MoreNetworks: nets.String(), ExtraClients: []string{genAddr}}
	rtc := kind == bgpd.GoBGPd
	if rtc {
		c.RRFamilies = []bgpd.Family{bgpd.VPNv4, bgpd.VPNv6, bgpd.EVPN, bgpd.RTC}
	}
	f := newFleet(t, prefix, kind, []string{"a"}, c)
	a := f.hosts["a"]
	gen := f.l.Host(t, "gen", genAddr)
	g, err := fleetsim.Start(fleetsim.Config{Fleet: fleet, RouterID: netip.MustParseAddr(genAddr), Peer: netip.MustParseAddr(rrAddr),
		Dial: fleetsim.DialIn(gen.NS.Do)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.WaitSent(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitInstalled(t, a, fleet, hosted, time.Minute)

	var fig fleetFigures
	// What a asked for and got: its status per network, what its vRouter
	// forwards, what the reflector sends it.
	st, err := a.AgentAPI.Status()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range st.Networks {
		names = append(names, n.Network)
	}
	if !slices.Equal(names, []string{"net007", "net123"}) {
		t.Errorf("status: a has networks %v, want [net007 net123]", names)
	}
	var vrfs []string
	for _, v := range tables(t, a).VRFs {
		vrfs = append(vrfs, v.GetName())
	}
	slices.Sort(vrfs)
	if !slices.Equal(vrfs, []string{"net007", "net123"}) {
		t.Errorf("a's vRouter has VRFs %v, want [net007 net123]", vrfs)
	}
	fig.received = receivedVPNv4(t, a)
	fig.adjOut = adjOutCheck(t, f.rr, a.Underlay, fleet, hosted, rtc)
	all := len(fleet.RoutesOf(7)) + len(fleet.RoutesOf(123))
	if rtc && fig.received != all {
		t.Errorf("with rtc, a received %d VPNv4 paths, want its 2 networks' %d", fig.received, all)
	}
	if !rtc && fig.received < fleet.Total() {
		t.Errorf("without rtc, a received %d VPNv4 paths, want the whole fleet's %d", fig.received, fleet.Total())
	}

	// An endpoint in a third network: its routes come.
	ns := f.l.Endpoint(t, "s200")
	t0 := time.Now()
	if err := a.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: "s200", Network: "net200", Address: "10.0.255.200/16", Netns: ns.Name}); err != nil {
		t.Fatal(err)
	}
	hosted = append(hosted, 200)
	waitInstalled(t, a, fleet, hosted, 30*time.Second)
	fig.networkAdded = time.Since(t0)
	if rtc {
		adjOutCheck(t, f.rr, a.Underlay, fleet, hosted, rtc)
	}

	// The reflector restarts (killed): a keeps its routes stale, the
	// sessions come back, the generator sends the fleet again.
	t0 = time.Now()
	f.rr.Restart(t)
	if err := g.WaitSent(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's convergence after the restart", time.Minute, func() bool {
		st, err := a.AgentAPI.Status()
		return err == nil && st.LastConvergence != nil && st.LastConvergence.Established.After(t0) && installedAll(st, fleet, hosted)
	})
	fig.restart = time.Since(t0)
	st, _ = a.AgentAPI.Status()
	fig.restartConv = fmt.Sprintf("session up %v after the restart, then End-of-RIB %s, installed %s",
		st.LastConvergence.Established.Sub(t0).Round(time.Millisecond), st.LastConvergence.EndOfRIB, st.LastConvergence.Took)
	waitInstalled(t, a, fleet, hosted, 30*time.Second)
	return fig
}

// installedAll: every network of hosted has all its fleet routes received,
// accepted and installed in st.
func installedAll(st agentapi.Status, fleet fleetsim.Fleet, hosted []int) bool {
	for _, m := range hosted {
		want := len(fleet.RoutesOf(m))
		n := network(&st, fleet.Network(m).Name)
		if n == nil || n.Received != want || n.Accepted != want || n.Installed != want {
			return false
		}
	}
	return true
}

// waitInstalled waits until a's status counts every route of the hosted
// networks, then checks each route in a's vRouter: its prefix, its node's
// next hop and its label.
func waitInstalled(t testing.TB, a *lab.Host, fleet fleetsim.Fleet, hosted []int, d time.Duration) {
	t.Helper()
	var last agentapi.Status
	deadline := time.Now().Add(d)
	for {
		st, err := a.AgentAPI.Status()
		if err == nil && installedAll(st, fleet, hosted) {
			break
		}
		last = st
		if time.Now().After(deadline) {
			t.Fatalf("after %v a's networks are %+v; want %v with %d routes each", d, last.Networks, hosted, len(fleet.RoutesOf(hosted[0])))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range hosted {
		name := fleet.Network(m).Name
		rs, err := a.AgentAPI.Routes(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range fleet.RoutesOf(m) {
			via := fmt.Sprintf("%v label %d", r.NextHop, r.Label)
			if !slices.ContainsFunc(rs, func(x agentapi.Route) bool { return x.Prefix == r.Prefix.String() && strings.Contains(x.Via, via) }) {
				t.Fatalf("a's vRouter has no route %s %v via %s; routes: %v", name, r.Prefix, via, rs)
			}
		}
	}
}

// receivedVPNv4 is how many VPNv4 paths a's session with the reflector
// received (weft ctl peers: "l3vpn-ipv4-unicast R/A/S").
func receivedVPNv4(t testing.TB, a *lab.Host) int {
	t.Helper()
	ps, err := a.AgentAPI.Peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		for _, fam := range p.Families {
			var r, acc, s int
			if _, err := fmt.Sscanf(fam, "l3vpn-ipv4-unicast %d/%d/%d", &r, &acc, &s); err == nil {
				return r
			}
		}
	}
	t.Fatalf("a's peers show no l3vpn-ipv4-unicast: %+v", ps)
	return 0
}

// adjOutCheck reads the reflector's Adj-RIB-Out to a: with rtc it holds
// exactly the hosted networks' routes, without it the whole fleet's. It
// returns its size.
func adjOutCheck(t testing.TB, rr *bgpd.Daemon, a netip.Addr, fleet fleetsim.Fleet, hosted []int, rtc bool) int {
	t.Helper()
	es, err := rr.AdjOut(a, bgpd.VPNv4)
	if err != nil {
		t.Fatal(err)
	}
	want := fleet.Total()
	var rts []string
	if rtc {
		want = 0
		for _, m := range hosted {
			want += len(fleet.RoutesOf(m))
			rts = append(rts, fleet.Network(m).RT)
		}
	}
	// The generator's routes only: a's own come back from FRR, not gobgpd.
	n := 0
	for _, e := range es {
		if e.NextHop == a {
			continue
		}
		n++
		if rtc && !slices.ContainsFunc(e.RouteTargets, func(rt string) bool { return slices.Contains(rts, rt) }) {
			t.Fatalf("the reflector sends a %v, of none of its networks %v", e, rts)
		}
	}
	if n != want {
		t.Fatalf("the reflector's Adj-RIB-Out to a holds %d of the fleet's paths, want %d", n, want)
	}
	return n
}

// TestSimulatedFleet is the bar's fleet (1,000 nodes, 300 networks) for
// node a hosting 2 networks. With gobgpd as the reflector, which speaks
// route target constraint (RFC 4684), a receives only its 2 networks'
// routes; with FRR 8.4, which does not, the same fleet sends a all 6,000
// (the baseline). The figures: the network added on a, and the reflector
// restart, each until every route is installed.
func TestSimulatedFleet(t *testing.T) {
	for _, c := range []struct {
		kind   bgpd.Kind
		prefix string
	}{{bgpd.GoBGPd, "wtsfg"}, {bgpd.FRR, "wtsff"}} {
		t.Run(c.kind.String(), func(t *testing.T) {
			fig := runSimFleet(t, c.prefix, c.kind, simFleet)
			t.Logf("%v, %d nodes, %d networks, %d routes: a received %d VPNv4 paths (Adj-RIB-Out %d); a network added on a installed in %v; "+
				"after a reflector restart every route installed again in %v (%s)", c.kind, simFleet.Nodes, simFleet.Networks, simFleet.Total(),
				fig.received, fig.adjOut, fig.networkAdded.Round(time.Millisecond), fig.restart.Round(time.Millisecond), fig.restartConv)
		})
	}
}

// BenchmarkSimulatedFleet: TestSimulatedFleet's scenario with 10 endpoints
// per node and network (30,000 routes), once per reflector; run with
// -benchtime 1x.
func BenchmarkSimulatedFleet(b *testing.B) {
	fleet := simFleet
	fleet.Endpoints = 10
	for _, c := range []struct {
		kind   bgpd.Kind
		prefix string
	}{{bgpd.GoBGPd, "wtsbg"}, {bgpd.FRR, "wtsbf"}} {
		b.Run(c.kind.String(), func(b *testing.B) {
			var fig fleetFigures
			for range b.N {
				fig = runSimFleet(b, c.prefix, c.kind, fleet)
			}
			b.ReportMetric(float64(fig.received), "paths-received")
			b.ReportMetric(float64(fig.networkAdded.Milliseconds()), "ms-network-added")
			b.ReportMetric(fig.restart.Seconds(), "s-reflector-restart")
			b.Logf("%s", fig.restartConv)
		})
	}
}
