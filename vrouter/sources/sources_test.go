package sources

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
)

var (
	n1 = netip.MustParseAddr("192.0.2.1")
	n2 = netip.MustParseAddr("192.0.2.2")
	n3 = netip.MustParseAddr("2001:db8::3")
)

const udp, gre, vx = packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN

func tun(id nexthop.ID, enc packet.Encap, a netip.Addr) *nexthop.NextHop {
	nh := &nexthop.NextHop{ID: id, Kind: nexthop.Tunnel, Encap: enc, Underlay: a}
	if enc == vx {
		nh.VNI = 100
	} else {
		nh.Label = 16
	}
	return nh
}

func want(t *testing.T, tb *Table, vrf uint32, srcs ...Source) {
	t.Helper()
	got := tb.List(vrf)
	if !slices.Equal(got, srcs) {
		t.Fatalf("vrf %d accepts %v, want %v", vrf, got, srcs)
	}
	for _, s := range srcs {
		if !tb.Accepts(vrf, s.Encap, s.Addr) || !tb.Known(s.Encap, s.Addr) {
			t.Fatalf("vrf %d: Accepts/Known(%v) false, listed", vrf, s)
		}
	}
}

// TestRoutesMoveSources walks a VRF through what the agent does to it:
// routes come, share a next hop, change next hop (a BGP best path that
// moves), go through a composite (ECMP) whose members change, and are
// withdrawn; the accepted sources follow at every step.
func TestRoutesMoveSources(t *testing.T) {
	tb := New()
	if tb.Accepts(1, udp, n1) || tb.Known(udp, n1) || tb.Accepts(70000, udp, n1) {
		t.Fatal("an empty table accepts")
	}
	tb.SetNextHop(tun(1, udp, n1))
	tb.SetNextHop(tun(2, udp, n2))
	tb.SetNextHop(&nexthop.NextHop{ID: 9, Kind: nexthop.Port, Port: 1})
	want(t, tb, 1) // next hops alone accept nothing: no route uses them
	if tb.Known(udp, n1) {
		t.Fatal("a next hop no route uses is known")
	}

	tb.Route(1, 0, 1)
	tb.Route(1, 0, 1) // a second prefix through the same next hop
	tb.Route(1, 0, 9)
	want(t, tb, 1, Source{udp, n1})
	want(t, tb, 2)
	if tb.Accepts(1, vx, n1) || tb.Accepts(1, gre, n1) {
		t.Fatal("vrf 1 accepts n1 over an encapsulation none of its routes use")
	}

	tb.Route(1, 1, 2) // one prefix moves to n2: n1 stays for the other
	want(t, tb, 1, Source{udp, n1}, Source{udp, n2})
	tb.Route(1, 1, 2) // the other too: n1 leaves
	want(t, tb, 1, Source{udp, n2})
	if tb.Known(udp, n1) {
		t.Fatal("n1 known after its last route moved")
	}

	// The next hop itself changes its endpoint and encapsulation.
	tb.SetNextHop(tun(2, vx, n3))
	want(t, tb, 1, Source{vx, n3})

	// ECMP: a composite over n1 and n3; then a member changes; then goes.
	tb.SetNextHop(tun(1, gre, n1))
	tb.SetNextHop(&nexthop.NextHop{ID: 5, Kind: nexthop.Composite, Members: []nexthop.ID{1, 2}})
	tb.Route(2, 0, 5)
	want(t, tb, 2, Source{gre, n1}, Source{vx, n3})
	tb.SetNextHop(tun(1, gre, n2))
	want(t, tb, 2, Source{gre, n2}, Source{vx, n3})
	want(t, tb, 1, Source{vx, n3})
	tb.SetNextHop(&nexthop.NextHop{ID: 5, Kind: nexthop.Composite, Members: []nexthop.ID{2}})
	want(t, tb, 2, Source{vx, n3})
	if tb.Known(gre, n2) {
		t.Fatal("a member removed from the composite is still known")
	}

	// Withdrawals: vrf 1's routes go, vrf 2 keeps n3 through the composite.
	tb.Route(1, 2, 0)
	want(t, tb, 1, Source{vx, n3})
	tb.Route(1, 2, 0)
	tb.Route(1, 9, 0)
	want(t, tb, 1)
	want(t, tb, 2, Source{vx, n3})

	// A VRF deleted with its routes.
	tb.DeleteVRF(2, func(yield func(nexthop.ID) bool) { yield(5) })
	want(t, tb, 2)
	if tb.Known(vx, n3) {
		t.Fatal("n3 known after every VRF lost it")
	}
	if len(tb.uses) != 0 || len(tb.count) != 0 || len(tb.total) != 0 {
		t.Fatalf("bookkeeping left: uses %v count %v total %v", tb.uses, tb.count, tb.total)
	}
}

// TestAcceptEncaps: a tunnel next hop's further encapsulations (what the
// remote may choose to send with) are accepted beside its own, and go
// with it.
func TestAcceptEncaps(t *testing.T) {
	tb := New()
	nh := tun(1, gre, n1)
	nh.AcceptEncaps = []packet.Encap{vx, gre}
	tb.SetNextHop(nh)
	tb.Route(1, 0, 1)
	want(t, tb, 1, Source{gre, n1}, Source{vx, n1})
	nh.AcceptEncaps = nil
	tb.SetNextHop(nh)
	want(t, tb, 1, Source{gre, n1})
}

// TestDeletedNextHopComesBack: a next hop deleted while a route still
// names it (not an order the control API allows, but the table must not
// go wrong) accepts nothing, and again its endpoint when it is set again.
func TestDeletedNextHopComesBack(t *testing.T) {
	tb := New()
	tb.SetNextHop(tun(1, udp, n1))
	tb.Route(3, 0, 1)
	tb.DeleteNextHop(1)
	want(t, tb, 3)
	tb.SetNextHop(tun(1, udp, n2))
	want(t, tb, 3, Source{udp, n2})
}

// TestAcceptsAllocatesNothing: the per-packet check allocates nothing.
func TestAcceptsAllocatesNothing(t *testing.T) {
	tb := New()
	tb.SetNextHop(tun(1, udp, n1))
	tb.Route(1, 0, 1)
	if n := testing.AllocsPerRun(100, func() {
		tb.Accepts(1, udp, n1)
		tb.Accepts(1, udp, n2)
		tb.Known(udp, n2)
	}); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// BenchmarkAccepts is the per-packet cost of the check, with 1,000
// endpoints in the VRF.
func BenchmarkAccepts(b *testing.B) {
	tb := New()
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		tb.SetNextHop(tun(nexthop.ID(i+1), udp, a))
		tb.Route(1, 0, nexthop.ID(i+1))
	}
	a := netip.AddrFrom4([4]byte{10, 0, 1, 7})
	for b.Loop() {
		if !tb.Accepts(1, udp, a) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkRouteChurn is the writer's cost: a route moving between two
// next hops of 1,000-endpoint VRF, so that an endpoint leaves and joins
// (republishing the VRF's set) every time.
func BenchmarkRouteChurn(b *testing.B) {
	tb := New()
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		tb.SetNextHop(tun(nexthop.ID(i+1), udp, a))
		tb.Route(1, 0, nexthop.ID(i+1))
	}
	tb.SetNextHop(tun(2000, udp, n1))
	n := 0
	for b.Loop() {
		tb.Route(1, 1, 2000)
		tb.Route(1, 2000, 1)
		n += 2
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "routes/s")
}
