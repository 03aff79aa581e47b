package bgp

import (
	"encoding/hex"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/vrouter/packet"
)

// TestContrailOriginVNThroughFRR (issue 15, finding 8): a raw peer sends
// VPNv4 routes whose extended communities are written byte by byte as
// OpenContrail writes them — origin-VN type 0x80, sub-type 0x71, AS
// 64512, VN 4660 — with the encapsulation communities in both orders,
// through FRR (which sorts them and shows the origin-VN as "UNK:128,
// 113"). A Weft speaker reads the origin VN back, and both routes offer
// both encapsulations (which one is used is the local priority's choice,
// TestEncapChoiceIgnoresWireOrder in agent).
func TestContrailOriginVNThroughFRR(t *testing.T) {
	l := newLab(t, bgpd.FRR, labOpts{nodes: 2})
	raw := newFakePeerOn(t, l.node(0), 179)
	s := startSpeaker(t, l.speakerConfig(l.node(1)))
	rec := record(s)
	raw.accept(30 * time.Second)
	waitUp(t, s, 30*time.Second)

	const (
		rt       = "0002fc0000000064" // route target 64512:100
		originVN = "8071fc0000001234" // Contrail origin-VN: 0x80 0x71, AS 64512, VN 0x1234
		udp      = "030c00000000000d" // encapsulation MPLS in UDP (13)
		gre      = "030c00000000000b" // encapsulation MPLS in GRE (11)
	)
	routes := map[netip.Prefix][]string{
		netip.MustParsePrefix("10.77.0.1/32"): {rt, originVN, udp, gre},
		netip.MustParsePrefix("10.77.0.2/32"): {gre, udp, originVN, rt},
	}
	nh := l.node(0)
	for p, ecs := range routes {
		var ec []byte
		for _, h := range ecs {
			b, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			ec = append(ec, b...)
		}
		r := Route{Family: VPNv4, RD: NewRD(nh, 9), Prefix: p, Label: 77, NextHop: nh}
		attrs := serialize(t, bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil), bgp.NewPathAttributeLocalPref(100),
			bgp.NewPathAttributeMpReachNLRI(nh.String(), []bgp.AddrPrefixInterface{r.nlri()}))
		attrs = append(attrs, rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, byte(bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES), ec, -1)...)
		raw.send(rawUpdate(attrs, nil))
	}

	rec.wait(t, 20*time.Second, "both routes at the Weft speaker", func() bool {
		n := 0
		for _, r := range rec.tableLocked() {
			if _, ok := routes[r.Prefix]; ok {
				n++
			}
		}
		return n == 2
	})
	rec.mu.Lock()
	got := rec.tableLocked()
	rec.mu.Unlock()
	for _, r := range got {
		if _, ok := routes[r.Prefix]; !ok {
			continue
		}
		if r.OriginVN != 0x1234 {
			t.Errorf("%v: origin VN %d, want 4660 (0x1234) from the Contrail community", r.Prefix, r.OriginVN)
		}
		if !slices.Contains(r.RouteTargets, as2RT(testASN, 100)) {
			t.Errorf("%v: route targets %v, want 64512:100", r.Prefix, r.RouteTargets)
		}
		if !slices.Contains(r.Encaps, packet.EncapMPLSoUDP) || !slices.Contains(r.Encaps, packet.EncapMPLSoGRE) {
			t.Errorf("%v: encapsulations %v, want MPLSoUDP and MPLSoGRE", r.Prefix, r.Encaps)
		}
	}
	// What FRR makes of the community, for the README's word on it.
	es, err := l.rr.VPNv4()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Prefix == netip.MustParsePrefix("10.77.0.1/32") {
			t.Logf("FRR shows the extended communities as %q", e.ExtCommunities)
		}
	}
}

// newFakePeerOn is a fake peer listening on addr:port (FRR dials its
// clients on 179).
func newFakePeerOn(t *testing.T, addr netip.Addr, port int) *fakePeer {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakePeer{t: t, ln: ln, addr: addr, notifications: make(chan []byte, 16)}
}
