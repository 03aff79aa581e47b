package bgp

import (
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/vrouter/packet"
)

// TestEgressEndpoint (issue 15, finding 5): a route whose next hop a
// route server rewrote to itself is tunnelled to the Tunnel Egress
// Endpoint it carries; an endpoint that names no tunnel end is ignored.
func TestEgressEndpoint(t *testing.T) {
	node := netip.MustParseAddr("192.0.2.1")
	rs := netip.MustParseAddr("192.0.2.254")
	r := Route{Family: VPNv4, RD: NewRD(node, 1), Prefix: netip.MustParsePrefix("10.0.0.5/32"), Label: 20, NextHop: node,
		Encaps: []packet.Encap{packet.EncapMPLSoUDP}}
	decode := func(nh netip.Addr, egress string) Route {
		t.Helper()
		attrs, err := r.attributes(encoding{asn: 65001, tunnelEncap: TunnelEncapFirst})
		if err != nil {
			t.Fatal(err)
		}
		if egress != "" {
			for i, a := range attrs {
				if _, ok := a.(*bgp.PathAttributeTunnelEncap); ok {
					attrs[i] = bgp.NewPathAttributeTunnelEncap([]*bgp.TunnelEncapTLV{bgp.NewTunnelEncapTLV(bgp.TUNNEL_TYPE_MPLS_IN_UDP,
						[]bgp.TunnelEncapSubTLVInterface{bgp.NewTunnelEncapSubTLVEgressEndpoint(egress)})})
				}
			}
		}
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(nh.String(), []bgp.AddrPrefixInterface{r.nlri()}))
		got, err := routeFromNative(VPNv4, r.nlri(), attrs, true)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := decode(node, ""); got.Endpoint() != node || !got.Equal(r) {
		t.Errorf("next hop unchanged: %v, endpoint %v; want %v", got, got.Endpoint(), r)
	}
	if got := decode(rs, ""); got.Endpoint() != node || got.NextHop != rs {
		t.Errorf("next hop rewritten to %v: endpoint %v, want the egress endpoint %v (%v)", rs, got.Endpoint(), node, got)
	}
	for _, bad := range []string{"0.0.0.0", "127.0.0.1", "224.0.0.1"} {
		if got := decode(rs, bad); got.Endpoint() != rs {
			t.Errorf("egress endpoint %s: endpoint %v, want the next hop %v", bad, got.Endpoint(), rs)
		}
	}
}
