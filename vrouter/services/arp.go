package services

import "github.com/weftnet/weft/vrouter/packet"

// minFrameLen is the shortest Ethernet frame without FCS; an ARP reply is
// padded to it so that it is valid on any medium a port may sit on.
const minFrameLen = 60

var (
	errARPEthSrc = &Error{Layer: "arp", Field: "ethernet source", Reason: "is not the port's MAC"}
	errARPSender = &Error{Layer: "arp", Field: "sender hardware address", Reason: "is not the port's MAC"}
)

// handleARP answers a request for any address but the endpoint's own with
// the gateway MAC. Probes (sender 0.0.0.0) and announcements (sender equal
// to target) get no answer, so that the endpoint's duplicate address
// detection succeeds. Replies are consumed without answer: the vRouter
// learns nothing from ARP and forwards no L2 frame.
func handleARP(eth packet.Ethernet, p *PortInfo, out []byte) (int, bool, error) {
	a, err := packet.ParseARP(eth.Payload())
	if err != nil {
		return 0, true, err
	}
	if eth.Src() != p.MAC {
		return 0, true, errARPEthSrc
	}
	if a.SenderMAC() != p.MAC {
		return 0, true, errARPSender
	}
	if a.Op() != packet.ARPRequest {
		return 0, true, nil
	}
	spa, tpa := a.SenderIP(), a.TargetIP()
	if spa.IsUnspecified() || a.IsGratuitous() || !answerable(tpa) || p.isOwn(tpa) {
		return 0, true, nil
	}
	if len(out) < minFrameLen {
		return 0, true, errOutShort
	}
	// The sender asked for tpa; the answer comes from tpa at the gateway
	// MAC, back to the sender (whether the request was broadcast or a
	// unicast refresh).
	h, _ := packet.PutEthernet(out, a.SenderMAC(), p.GatewayMAC, packet.EtherTypeARP)
	if _, err := packet.PutARP(out[h:], packet.ARPReply, p.GatewayMAC, tpa, a.SenderMAC(), spa); err != nil {
		return 0, true, err
	}
	clear(out[h+packet.ARPLen : minFrameLen])
	return minFrameLen, true, nil
}
