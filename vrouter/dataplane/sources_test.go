package dataplane

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// receiveFrom runs one tunnel payload from outer source from through the
// tunnel's receive path and reports whether port A got it.
func (b *bed) receiveFrom(enc packet.Encap, from netip.Addr, payload []byte) bool {
	f := frame.New()
	f.SetData(frame.Headroom, copy(f.Buf[frame.Headroom:], payload))
	b.e.newTunnelRx(enc).batch([]tunnel.Msg{{F: f, Addr: from}})
	return len(b.pa.written()) > 0
}

// TestTunnelSourcesFollowRoutes: the engine's route and next-hop writes
// move the sources a VRF accepts, also when a route's neighbours in the
// FIB come and go (a miss of fib.Table.Get names no next hop); the
// packets it refuses are counted by why.
func TestTunnelSourcesFollowRoutes(t *testing.T) {
	b := newBed(t, false)
	b.pa.keep = true
	e := b.e
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	other := netip.MustParseAddr("192.0.2.3")
	pkt := mplsPayload(labelA, udpTo(addrMPLS, addrA, 40000, 53))
	if !b.receiveFrom(packet.EncapMPLSoUDP, remote, pkt) {
		t.Fatalf("the bed's peer refused: drops %v", e.Counters().Drops)
	}
	if b.receiveFrom(packet.EncapMPLSoUDP, other, pkt) || e.Drops(DropTunnelSource) != 1 {
		t.Fatalf("a stranger's packet: drops %v", e.Counters().Drops)
	}

	// Routes to other: two neighbours of one prefix; one goes.
	const nhOther = 20
	must(e.SetNextHop(nexthop.NextHop{ID: nhOther, Kind: nexthop.Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: other, Label: 40}))
	p1, p2 := netip.MustParsePrefix("10.9.0.1/32"), netip.MustParsePrefix("10.9.0.2/32")
	must(e.SetRoute(vrf1, p1, nhOther))
	must(e.SetRoute(vrf1, p2, nhOther))
	must(e.DeleteRoute(vrf1, p1))
	if !b.receiveFrom(packet.EncapMPLSoUDP, other, pkt) {
		t.Fatalf("other refused while a route leads there: drops %v", e.Counters().Drops)
	}
	must(e.DeleteRoute(vrf1, p2))
	if b.receiveFrom(packet.EncapMPLSoUDP, other, pkt) || e.Drops(DropTunnelSource) != 2 {
		t.Fatalf("other accepted after its last route went: drops %v", e.Counters().Drops)
	}

	// A second VRF whose only route leads to other: other's packet with
	// VRF 1's label is another VRF's, counted apart.
	must(e.SetVRF(vrf2, net2))
	must(e.SetRoute(vrf2, p1, nhOther))
	if b.receiveFrom(packet.EncapMPLSoUDP, other, pkt) || e.Drops(DropTunnelVRF) != 1 {
		t.Fatalf("VRF 2's peer with VRF 1's label: drops %v", e.Counters().Drops)
	}
	must(e.DeleteRoute(vrf2, p1))
	must(e.DeleteVRF(vrf2))
	if got := e.TunnelSources(vrf1); len(got) != 3 {
		t.Errorf("VRF 1 accepts %v, want the bed's peer over three encapsulations", got)
	}
}
