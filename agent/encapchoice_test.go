package agent

import (
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

// TestEncapChoiceIgnoresWireOrder (issue 15, finding 8): reflectors sort
// extended communities (FRR does), so the order a path's encapsulations
// arrive in says nothing: the local priority (overlay.encapsulation)
// alone picks among what the path offers and the vRouter has.
func TestEncapChoiceIgnoresWireOrder(t *testing.T) {
	udp, gre, vx := packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN
	offers := [][]packet.Encap{{udp, gre}, {gre, udp}}
	for _, tc := range []struct {
		prio    []packet.Encap
		tunnels []packet.Encap
		want    packet.Encap
	}{
		{[]packet.Encap{udp, gre, vx}, allTunnels, udp},
		{[]packet.Encap{gre, udp, vx}, allTunnels, gre},
		{[]packet.Encap{vx, udp, gre}, allTunnels, udp},                   // no VNI on the path: VXLAN is not offered
		{[]packet.Encap{udp, gre}, []packet.Encap{gre}, gre},              // the vRouter has no MPLSoUDP tunnel
		{[]packet.Encap{vx, gre, udp}, []packet.Encap{udp, gre, vx}, gre}, // the vRouter's order does not count either
	} {
		for _, offer := range offers {
			p := Path{HasVPN: true, Label: 20, Encaps: offer}
			got, ok := chooseEncap(tc.prio, tc.tunnels, p)
			if !ok || got != tc.want {
				t.Errorf("priority %v, tunnels %v, path offers %v: chose %v (%v), want %v", tc.prio, tc.tunnels, offer, got, ok, tc.want)
			}
		}
	}
}
