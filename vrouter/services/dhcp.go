package services

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/weftnet/weft/internal/dhcpreply"
	"github.com/weftnet/weft/vrouter/packet"
)

const (
	dhcpServerPort = 67
	dhcpClientPort = 68
	// dhcpFixedLen is the BOOTP header up to and including the magic
	// cookie (RFC 2131 section 2, RFC 2132 section 2).
	dhcpFixedLen = 236 + 4
	// dhcpMinMaxSize is the message size every client accepts (RFC 2131
	// section 2: 576-byte IP datagrams); larger needs option 57.
	dhcpMinMaxSize = 576
	dhcpTTL        = 64
)

var (
	limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	dhcpMagic        = []byte{99, 130, 83, 99}
)

// dhcpFixedOptLen are the options whose length RFC 2132 fixes and that
// the server reads: a wrong length is named, not silently ignored.
var dhcpFixedOptLen = map[uint8]int{
	uint8(dhcpv4.OptionDHCPMessageType):        1,
	uint8(dhcpv4.OptionRequestedIPAddress):     4,
	uint8(dhcpv4.OptionServerIdentifier):       4,
	uint8(dhcpv4.OptionMaximumDHCPMessageSize): 2,
}

func dhcpErr(field, format string, args ...any) *Error {
	return &Error{Layer: "dhcpv4", Field: field, Reason: fmt.Sprintf(format, args...)}
}

// handleIPv4 picks DHCP client messages out of IPv4 frames: UDP from port
// 68 to port 67 of the limited broadcast (a client without an address, or
// rebinding) or of the gateway (a renewal, an inform). A datagram to any
// other server is the forwarder's: a workload may run a relay or talk to a
// DHCP server elsewhere in its VRF.
func handleIPv4(eth packet.Ethernet, p *PortInfo, out []byte) (int, bool, error) {
	ip, err := packet.ParseIPv4(eth.Payload())
	if err != nil || ip.Protocol() != packet.ProtoUDP || ip.IsFragment() {
		return 0, false, nil
	}
	u, err := packet.ParseUDP(ip.Payload())
	if err != nil || u.DstPort() != dhcpServerPort || u.SrcPort() != dhcpClientPort {
		return 0, false, nil
	}
	gw, hasGW := p.gateway4()
	if dst := ip.Dst(); dst != limitedBroadcast && (!hasGW || dst != gw) {
		return 0, false, nil
	}
	return serveDHCP(eth, u, p, out)
}

// serveDHCP answers one client message for the port's IPv4 address
// (RFC 2131 section 4.3): DISCOVER with an OFFER, REQUEST with an ACK of
// that address or a NAK of any other, INFORM with an ACK carrying
// configuration only; RELEASE and DECLINE need no answer (the address is
// the port's whatever the client thinks of it).
func serveDHCP(eth packet.Ethernet, u packet.UDP, p *PortInfo, out []byte) (int, bool, error) {
	if eth.Src() != p.MAC {
		return 0, true, dhcpErr("ethernet source", "%v is not the port's MAC %v", eth.Src(), p.MAC)
	}
	req, err := parseDHCP(u.Payload())
	if err != nil {
		return 0, true, err
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return 0, true, dhcpErr("op", "%d, want %d (BOOTREQUEST)", req.OpCode, dhcpv4.OpcodeBootRequest)
	}
	if req.HWType != iana.HWTypeEthernet {
		return 0, true, dhcpErr("htype", "%d, want %d (Ethernet)", req.HWType, iana.HWTypeEthernet)
	}
	if len(req.ClientHWAddr) != 6 {
		return 0, true, dhcpErr("hlen", "%d, want 6", len(req.ClientHWAddr))
	}
	if chaddr := packet.MAC(req.ClientHWAddr); chaddr != p.MAC {
		return 0, true, dhcpErr("chaddr", "%v is not the port's MAC %v", chaddr, p.MAC)
	}
	addr, ok := p.address(false)
	gw, okGW := p.gateway4()
	if !ok || !okGW {
		return 0, true, &Error{Layer: "dhcpv4", Field: "port info", Reason: "has no IPv4 address and gateway to offer"}
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		return 0, true, nil
	case dhcpv4.MessageTypeNone:
		return 0, true, dhcpErr("option 53 (message type)", "is missing (BOOTP is not served)")
	default:
		return 0, true, dhcpErr("option 53 (message type)", "%s is not a client message the server answers", mt)
	}
	d := dhcpreply.Decide(req, addr.Addr(), func(a netip.Addr) bool { return a == gw })
	if d.Type == dhcpv4.MessageTypeNone {
		return 0, true, nil // the client chose another server's offer
	}
	// giaddr is copied as RFC 2131 table 3 says; relaying is not served,
	// so it plays no part in the addressing.
	resp := dhcpreply.Reply(req, d, gw, dhcpreply.IPv4(req.GatewayIPAddr))
	if d.Type == dhcpv4.MessageTypeNak {
		resp.UpdateOption(dhcpv4.OptMessage("requested address is not this port's"))
	} else {
		c := dhcpreply.Config{Address: addr, Router: gw, RouteToRouter: true, DNS: p.DNS,
			Hostname: p.Hostname, Domain: p.Domain, MTU: p.MTU, Lease: p.leaseTime()}
		c.Put(resp, d)
	}
	return putDHCPFrame(out, req, resp, d.Type, p, gw)
}

func (p *PortInfo) leaseTime() time.Duration {
	if p.LeaseTime <= 0 {
		return DefaultLeaseTime
	}
	return min(p.LeaseTime, dhcpv4.MaxLeaseTime)
}

// putDHCPFrame writes the reply frame, addressed as RFC 2131 section 4.1
// says for a client on the server's own link (giaddr is not served): a NAK
// to the limited broadcast; to ciaddr when the client has an address
// (renewing, rebinding, inform); to the limited broadcast when the client
// asked for broadcast; else to yiaddr at chaddr, which a client without an
// address receives on its packet socket.
func putDHCPFrame(out []byte, req, resp *dhcpv4.DHCPv4, typ dhcpv4.MessageType, p *PortInfo, gw netip.Addr) (int, bool, error) {
	dst, dstMAC := limitedBroadcast, packet.BroadcastMAC
	ciaddr, yiaddr := dhcpreply.IPv4(req.ClientIPAddr), dhcpreply.IPv4(resp.YourIPAddr)
	switch {
	case typ == dhcpv4.MessageTypeNak:
	case ciaddr.IsValid() && !ciaddr.IsUnspecified():
		dst, dstMAC = ciaddr, p.MAC
	case req.IsBroadcast():
	case yiaddr.IsValid() && !yiaddr.IsUnspecified():
		dst, dstMAC = yiaddr, p.MAC
	}
	payload := resp.ToBytes()
	limit := dhcpMinMaxSize
	if v, err := req.MaxMessageSize(); err == nil && int(v) > limit {
		limit = int(v)
	}
	limit = min(limit, MaxReplyLen-packet.EthernetHeaderLen)
	if p.MTU >= dhcpMinMaxSize {
		limit = min(limit, p.MTU)
	}
	ipLen := packet.IPv4MinHeaderLen + packet.UDPHeaderLen + len(payload)
	if ipLen > limit {
		return 0, true, dhcpErr("reply", "of %d bytes exceeds the client's maximum message size %d", ipLen, limit)
	}
	n := packet.EthernetHeaderLen + ipLen
	if len(out) < n {
		return 0, true, errOutShort
	}
	h, _ := packet.PutEthernet(out, dstMAC, p.GatewayMAC, packet.EtherTypeIPv4)
	ih := packet.IPv4Header{TTL: dhcpTTL, Protocol: packet.ProtoUDP, Src: gw, Dst: dst}
	il, err := packet.PutIPv4Header(out[h:], &ih, packet.UDPHeaderLen+len(payload))
	if err != nil {
		return 0, true, err
	}
	copy(out[h+il+packet.UDPHeaderLen:], payload)
	u, err := packet.PutUDP(out[h+il:n], dhcpServerPort, dhcpClientPort, len(payload))
	if err != nil {
		return 0, true, err
	}
	u.SetChecksum(gw, dst)
	return n, true, nil
}

// parseDHCP checks what the library's decoder would only report vaguely
// (a short buffer, a bad option length), naming the field, then decodes.
func parseDHCP(b []byte) (*dhcpv4.DHCPv4, error) {
	if len(b) < dhcpFixedLen {
		return nil, dhcpErr("message", "needs %d bytes, have %d", dhcpFixedLen, len(b))
	}
	if c := b[dhcpFixedLen-4 : dhcpFixedLen]; !bytes.Equal(c, dhcpMagic) {
		return nil, dhcpErr("magic cookie", "%x, want %x", c, dhcpMagic)
	}
	if err := checkOptions(b[dhcpFixedLen:]); err != nil {
		return nil, err
	}
	d, err := dhcpv4.FromBytes(b)
	if err != nil {
		return nil, dhcpErr("message", "%v", err)
	}
	return d, nil
}

// checkOptions walks the options (RFC 2132 section 2): each within the
// message, fixed-length ones of their length, and an End option.
func checkOptions(o []byte) error {
	for off := 0; off < len(o); {
		code := o[off]
		switch code {
		case 0: // Pad
			off++
			continue
		case 255: // End
			return nil
		}
		if off+1 >= len(o) {
			return dhcpErr(fmt.Sprintf("option %d", code), "at offset %d has no length byte", dhcpFixedLen+off)
		}
		l := int(o[off+1])
		if off+2+l > len(o) {
			return dhcpErr(fmt.Sprintf("option %d", code), "length %d exceeds the %d bytes left", l, len(o)-off-2)
		}
		if want, ok := dhcpFixedOptLen[code]; ok && l != want {
			return dhcpErr(fmt.Sprintf("option %d", code), "length %d, want %d", l, want)
		}
		off += 2 + l
	}
	return dhcpErr("options", "have no end option (255)")
}
