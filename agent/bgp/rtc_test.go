package bgp

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/routetarget"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// rtcNetworks is how many networks the senders of the RTC tests carry;
// network n has route target 64512:n and RD <sender>:n.
const rtcNetworks = 3

// rtcRoutes are a sender's routes: per network a VPNv4 route, and an
// EVPN type 5 route (RFC 4684 applies to every family with route
// targets).
func rtcRoutes(a netip.Addr) []Route {
	var out []Route
	for n := 1; n <= rtcNetworks; n++ {
		rts := []RouteTarget{as2RT(testASN, uint32(n))}
		out = append(out, Route{
			Family: VPNv4, RD: NewRD(a, uint16(n)), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), a.As4()[3], 0}), 24),
			Label: uint32(1000 + n), NextHop: a, RouteTargets: rts, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, OriginVN: uint32(n),
		}, Route{
			Family: EVPN, RD: NewRD(a, uint16(n)), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + n), a.As4()[3], 0}), 24),
			Label: uint32(5000 + n), NextHop: a, RouteTargets: rts, Encaps: []packet.Encap{packet.EncapVXLAN},
			OriginVN: uint32(n), RouterMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, a.As4()[3]},
		})
	}
	return out
}

// networksOf are the networks (route target locals) of routes.
func networksOf(rs []Route) []uint32 {
	var out []uint32
	for _, r := range rs {
		for _, rt := range r.RouteTargets {
			if !slices.Contains(out, rt.Local) {
				out = append(out, rt.Local)
			}
		}
	}
	slices.Sort(out)
	return out
}

// holds reports whether the table is exactly the routes of nets from
// every sender, in both families.
func holds(table map[Key]Route, senders []netip.Addr, nets ...uint32) bool {
	want := 0
	for _, s := range senders {
		for _, r := range rtcRoutes(s) {
			if !slices.Contains(nets, r.RouteTargets[0].Local) {
				continue
			}
			want++
			if _, ok := table[r.Key()]; !ok {
				return false
			}
		}
	}
	return len(table) == want
}

// TestRouteTargetConstraint: with gobgpd as reflector, two senders
// without RTC announce the routes of three networks; the node, with RTC,
// imports network 1 and receives only its routes (VPNv4 and EVPN), which
// is also all the reflector's Adj-RIB-Out to the node holds. Importing
// network 2 brings its routes (the time it took is logged), no longer
// importing network 1 withdraws them. The node's own routes reach the
// reflector only once another client with RTC imports them.
func TestRouteTargetConstraint(t *testing.T) {
	testenv.SkipIfShort(t)
	l := newLab(t, bgpd.GoBGPd, labOpts{nodes: 4, rr: bgpd.Config{Families: []bgpd.Family{bgpd.VPNv4, bgpd.EVPN, bgpd.RTC}}})
	var senders []netip.Addr
	var speakers []*Speaker
	for i := range 2 {
		cfg := l.speakerConfig(l.node(i))
		cfg.Peers[0].Families = []Family{VPNv4, EVPN}
		cfg.Routes = rtcRoutes(l.node(i))
		senders = append(senders, l.node(i))
		speakers = append(speakers, startSpeaker(t, cfg))
	}
	cfg := l.speakerConfig(l.node(2))
	cfg.Peers[0].Families = []Family{VPNv4, EVPN}
	cfg.RouteTargetConstraint = true
	// The node's own route is of a network it exports to, not one it
	// imports (gobgpd v3.37 reflects a client's own memberships back to
	// it, 3.10 does not: either way, 64512:9 is nobody's yet).
	own := Route{Family: VPNv4, RD: NewRD(l.node(2), 9), Prefix: netip.MustParsePrefix("10.9.99.0/24"), Label: 1999, NextHop: l.node(2),
		RouteTargets: []RouteTarget{as2RT(testASN, 9)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, OriginVN: 9}
	cfg.Routes = []Route{own}
	node := startSpeaker(t, cfg)
	if err := node.SetImportTargets([]RouteTarget{as2RT(testASN, 1)}); err != nil {
		t.Fatal(err)
	}
	rec := record(node)
	waitAllUp(t, time.Now(), 30*time.Second, append(speakers, node)...)
	if ps := node.Peers(); !ps[0].RouteTargetConstraint {
		t.Fatalf("the node's session with gobgpd did not negotiate RTC: %v", ps[0])
	}

	rec.wait(t, 10*time.Second, "network 1's routes only", func() bool { return holds(rec.table, senders, 1) })
	adjOut := func(nets ...uint32) {
		t.Helper()
		for _, f := range []bgpd.Family{bgpd.VPNv4, bgpd.EVPN} {
			pollRR(t, 10*time.Second, "adj-out "+string(f), func() ([]bgpd.RIBEntry, error) { return l.rr.AdjOut(l.node(2), f) }, func(es []bgpd.RIBEntry) bool {
				got := map[uint32]int{}
				for _, e := range es {
					for _, rt := range e.RouteTargets {
						n, err := routetarget.Parse(rt)
						if err != nil {
							return false
						}
						got[n.Local]++
					}
				}
				for _, n := range nets {
					if got[n] != len(senders) {
						return false
					}
				}
				return len(es) == len(nets)*len(senders)
			})
		}
	}
	adjOut(1)
	// The reflector sends network 1's routes even while staying quiet
	// about the others: no route of networks 2 and 3 arrived meanwhile.
	for _, e := range rec.eventsSince(time.Time{}) {
		if e.Kind == RouteAdded && !slices.Equal(networksOf([]Route{e.Route}), []uint32{1}) {
			t.Errorf("the node received a route of another network: %v", e.Route)
		}
	}

	t0 := time.Now()
	if err := node.SetImportTargets([]RouteTarget{as2RT(testASN, 1), as2RT(testASN, 2)}); err != nil {
		t.Fatal(err)
	}
	took := rec.wait(t, 10*time.Second, "networks 1 and 2", func() bool { return holds(rec.table, senders, 1, 2) })
	t.Logf("a network added: its %d routes arrived %v after the membership was announced", 2*len(senders), took)
	adjOut(1, 2)
	if err := node.SetImportTargets([]RouteTarget{as2RT(testASN, 2)}); err != nil {
		t.Fatal(err)
	}
	took = rec.wait(t, 10*time.Second, "network 2 only", func() bool { return holds(rec.table, senders, 2) })
	t.Logf("a network removed: its routes withdrawn %v after the membership was; total %v", took, time.Since(t0))
	adjOut(2)
	if got := node.ImportTargets(); !slices.Equal(got, []RouteTarget{as2RT(testASN, 2)}) {
		t.Errorf("ImportTargets = %v, want [64512:2]", got)
	}

	// The node's own route: the reflector has no membership for it from
	// anyone else (its other clients have no RTC), so GoBGP on the node
	// keeps it back (RFC 4684's outbound filter); once a second node with
	// RTC imports its network, it goes out and reaches that node.
	hasOwn := func(es []bgpd.RIBEntry) bool { _, ok := findRIB(es, own.RD.String(), own.Prefix); return ok }
	time.Sleep(time.Second)
	if es, err := l.rr.VPNv4(); err != nil || hasOwn(es) {
		t.Fatalf("the reflector has the node's route without any membership for it (err %v): %v", err, es)
	}
	cfg = l.speakerConfig(l.node(3))
	cfg.Peers[0].Families = []Family{VPNv4, EVPN}
	cfg.RouteTargetConstraint = true
	second := startSpeaker(t, cfg)
	if err := second.SetImportTargets([]RouteTarget{as2RT(testASN, 9)}); err != nil {
		t.Fatal(err)
	}
	rec2 := record(second)
	rec2.wait(t, 20*time.Second, "the first node's route at the second", func() bool { _, ok := rec2.table[own.Key()]; return ok })
	pollRR(t, 10*time.Second, "the node's route at the reflector", l.rr.VPNv4, hasOwn)
	// The first node still receives only what it imports.
	rec.wait(t, 5*time.Second, "network 2 only", func() bool { return holds(rec.table, senders, 2) })
}

// TestRouteTargetConstraintWithoutRTC: FRR 8.4 and BIRD 2.0.12 have no
// RTC; a node with RTC on negotiates without it, receives every network's
// routes and sends its own, as without RTC.
func TestRouteTargetConstraintWithoutRTC(t *testing.T) {
	testenv.SkipIfShort(t)
	for _, kind := range []bgpd.Kind{bgpd.FRR, bgpd.BIRD} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, kind, labOpts{nodes: 2, rr: bgpd.Config{Families: []bgpd.Family{bgpd.VPNv4}}})
			cfg := l.speakerConfig(l.node(0))
			cfg.Peers[0].Families = []Family{VPNv4}
			var routes []Route
			for _, r := range rtcRoutes(l.node(0)) {
				if r.Family == VPNv4 {
					routes = append(routes, r)
				}
			}
			cfg.Routes = routes
			sender := startSpeaker(t, cfg)
			cfg = l.speakerConfig(l.node(1))
			cfg.Peers[0].Families = []Family{VPNv4}
			cfg.RouteTargetConstraint = true
			own := Route{Family: VPNv4, RD: NewRD(l.node(1), 1), Prefix: netip.MustParsePrefix("10.1.99.0/24"), Label: 1999, NextHop: l.node(1),
				RouteTargets: []RouteTarget{as2RT(testASN, 1)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, OriginVN: 1}
			cfg.Routes = []Route{own}
			node := startSpeaker(t, cfg)
			if err := node.SetImportTargets([]RouteTarget{as2RT(testASN, 1)}); err != nil {
				t.Fatal(err)
			}
			rec, got := record(node), record(sender)
			waitAllUp(t, time.Now(), 30*time.Second, sender, node)
			if ps := node.Peers(); ps[0].RouteTargetConstraint {
				t.Fatalf("%v negotiated RTC: %v", kind, ps[0])
			}
			rec.wait(t, 10*time.Second, "every network's routes", func() bool { return len(rec.table) == len(routes) })
			got.wait(t, 10*time.Second, "the node's own route at the sender", func() bool { _, ok := got.table[own.Key()]; return ok })
		})
	}
}
