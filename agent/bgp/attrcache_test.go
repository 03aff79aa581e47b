package bgp

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/routetarget"
)

// TestAttrCacheDecodesAsRouteFromAPI: the subscription's cached decode
// gives every sample route exactly as routeFromAPI does, the first time
// and from the cache; routes that share attributes share no slice an
// append could write through.
func TestAttrCacheDecodesAsRouteFromAPI(t *testing.T) {
	var c attrCache
	for pass := range 2 {
		for _, r := range sampleRoutes(t) {
			p, err := r.apiPath(encoding{asn: 64512, tunnelEncap: TunnelEncapAll}, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.route(p)
			if err != nil {
				t.Fatalf("pass %d, %v: %v", pass, r, err)
			}
			want, _ := routeFromAPI(p)
			if !got.Equal(want) || !got.Equal(r) {
				t.Errorf("pass %d:\n got %v\nwant %v", pass, got, want)
			}
		}
	}
	// Two routes of one remote node: the same attributes, MP_REACH aside.
	a := sampleRoutes(t)[0]
	a.RouteTargets = a.RouteTargets[:3] // decoded into a slice with room to spare
	b := a
	b.Prefix, b.Label, b.NextHop = netip.MustParsePrefix("10.1.9.0/24"), 2002, netip.MustParseAddr("192.0.2.77")
	pa, _ := a.apiPath(encoding{asn: 64512, tunnelEncap: TunnelEncapNone}, false)
	pb, _ := b.apiPath(encoding{asn: 64512, tunnelEncap: TunnelEncapNone}, false)
	ga, err := c.route(pa)
	if err != nil {
		t.Fatal(err)
	}
	sets := len(c.parts)
	gb, err := c.route(pb)
	if len(c.parts) != sets {
		t.Errorf("the second route's attributes were decoded again (%d sets, had %d)", len(c.parts), sets)
	}
	if err != nil {
		t.Fatal(err)
	}
	if gb.NextHop != b.NextHop || gb.Label != b.Label || gb.Prefix != b.Prefix {
		t.Errorf("second route of the same attributes: %v, want %v", gb, b)
	}
	x := routetarget.RouteTarget{Type: routetarget.AS2, ASN: 1, Local: 1}
	y := routetarget.RouteTarget{Type: routetarget.AS2, ASN: 2, Local: 2}
	ga.RouteTargets = append(ga.RouteTargets, x)
	gb.RouteTargets = append(gb.RouteTargets, y)
	if ga.RouteTargets[len(ga.RouteTargets)-1] != x {
		t.Errorf("an append to one route's route targets wrote through to another's: %v", ga.RouteTargets)
	}
	gb.RouteTargets = gb.RouteTargets[:len(gb.RouteTargets)-1]
	if again, _ := c.route(pb); !again.Equal(gb) {
		t.Errorf("an append to a decoded route changed the cache: %v, want %v", again, gb)
	}
}
