package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/internal/testrig/bgpd"
)

// TestMalformedThroughFRR (issue 9, bar 4, against FRR): a raw peer
// sends FRR 8.4 a VPNv4 route, then the same route with an AIGP
// attribute (RFC 7311, type 26, optional non-transitive) flagged
// transitive. FRR 8.4 does not know AIGP (it came in FRR 9): it relays
// the attribute as an unknown optional transitive one, setting the
// Partial bit, and keeps the path as valid and best. At the Weft speaker
// the flags are an error (RFC 7606 3 c): the route is withdrawn
// (treat-as-withdraw, counted), its session with FRR stays Established,
// and a route sent after it arrives. (An attribute FRR knows is checked
// by FRR itself: an IPv6 Extended Communities attribute of 7 bytes makes
// FRR 8.4 reset the raw peer's session, 3/9, and never reaches Weft.)
func TestMalformedThroughFRR(t *testing.T) {
	l := newLab(t, bgpd.FRR, labOpts{nodes: 2})
	raw := newFakePeerOn(t, l.node(0), 179)
	s := startSpeaker(t, l.speakerConfig(l.node(1)))
	rec := record(s)
	raw.accept(30 * time.Second)
	waitUp(t, s, 30*time.Second)

	nh := l.node(0)
	route := func(i int) Route {
		return Route{Family: VPNv4, RD: NewRD(nh, 9), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 79, byte(i), 0}), 24),
			Label: 700 + uint32(i), NextHop: nh, RouteTargets: []RouteTarget{as2RT(testASN, 100)}, OriginVN: 7, LocalPref: 100}
	}
	announce := func(r Route, extra []byte) {
		origin, rest := vpnAttrs(t, r)
		raw.send(rawUpdate(append(append(origin, rest...), extra...), nil))
	}
	r1 := route(1)
	announce(r1, nil)
	rec.wait(t, 20*time.Second, "the valid route at the Weft speaker", func() bool { _, ok := rec.table[r1.Key()]; return ok })
	before := s.Peers()[0]

	// AIGP (RFC 7311): optional non-transitive, here sent transitive,
	// with a well-formed IGP metric TLV (type 1, length 11).
	aigp := []byte{1, 0, 11, 0, 0, 0, 0, 0, 0, 0, 42}
	bad := rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, byte(bgp.BGP_ATTR_TYPE_AIGP), aigp, -1)
	announce(r1, bad)
	rec.wait(t, 20*time.Second, "the route withdrawn at the Weft speaker", func() bool { _, ok := rec.table[r1.Key()]; return !ok })
	p := s.Peers()[0]
	// GoBGP refuses the flags FRR relayed (transitive, and the Partial
	// bit FRR set as it passed an attribute it does not know) and treats
	// the UPDATE as withdraw (RFC 7606 3 c).
	if p.TreatAsWithdraw != before.TreatAsWithdraw+1 || !strings.Contains(p.LastInputError, "treated as withdraw") ||
		!strings.Contains(p.LastInputError, "AIGP") || !strings.Contains(p.LastInputError, "PARTIAL") {
		t.Errorf("treat-as-withdraw %d -> %d, last input error %q", before.TreatAsWithdraw, p.TreatAsWithdraw, p.LastInputError)
	}
	t.Logf("the Weft speaker says: %s", p.LastInputError)

	// Both sessions kept: a route after it arrives, nothing was reset.
	r2 := route(2)
	announce(r2, nil)
	rec.wait(t, 20*time.Second, "a route after the malformed one", func() bool { _, ok := rec.table[r2.Key()]; return ok })
	if p := s.Peers()[0]; p.State != StateEstablished || p.MalformedResets != before.MalformedResets {
		t.Errorf("the Weft speaker's session with FRR: %v", p)
	}
	select {
	case n := <-raw.notifications:
		t.Errorf("FRR sent the raw peer a NOTIFICATION %x", n)
	default:
	}
	ss, err := l.rr.Sessions()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ss {
		if !x.Established {
			t.Errorf("FRR's session with %v: %+v", x.Neighbor, x)
		}
	}
	if out, err := l.rr.CLI("show bgp ipv4 vpn " + r1.Prefix.String() + " json"); err == nil {
		t.Logf("FRR's path for %v: %s", r1.Prefix, strings.Join(strings.Fields(out), " "))
	}
}
