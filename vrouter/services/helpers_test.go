package services

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/weftnet/weft/vrouter/packet"
)

// The fixture: one endpoint with an IPv4 and an IPv6 address behind the
// vRouter's gateway, as the reference scenario's db network has it.
var (
	epMAC    = packet.MAC{0x02, 0x00, 0x0a, 0x00, 0x64, 0x03}
	gwMAC    = packet.MAC{0x02, 0x77, 0x65, 0x66, 0x74, 0x01}
	otherMAC = packet.MAC{0x02, 0x00, 0x0a, 0x00, 0x64, 0x99}

	ep4   = netip.MustParsePrefix("10.0.100.3/24")
	gw4   = netip.MustParseAddr("10.0.100.1")
	ep6   = netip.MustParsePrefix("2001:db8:100::3/64")
	gwLL  = netip.MustParseAddr("fe80::1")
	epLL  = netip.MustParseAddr("fe80::a:ff:fe00:6403")
	dns4  = netip.MustParseAddr("10.0.100.53")
	dns6  = netip.MustParseAddr("2001:db8:100::53")
	zero4 = netip.IPv4Unspecified()
	bcast = netip.MustParseAddr("255.255.255.255")
)

func testPort() *PortInfo {
	return &PortInfo{
		MAC:        epMAC,
		GatewayMAC: gwMAC,
		Addresses:  []netip.Prefix{ep4, ep6},
		Gateways:   []netip.Addr{gw4, gwLL},
		MTU:        1400,
		DNS:        []netip.Addr{dns4, dns6},
		Hostname:   "pg1",
		Domain:     "db.weft.internal",
		DHCP:       true,
		LeaseTime:  time.Hour,
	}
}

func ethFrame(t testing.TB, dst, src packet.MAC, etherType uint16, payload []byte) []byte {
	t.Helper()
	b := make([]byte, packet.EthernetHeaderLen+len(payload))
	if _, err := packet.PutEthernet(b, dst, src, etherType); err != nil {
		t.Fatal(err)
	}
	copy(b[packet.EthernetHeaderLen:], payload)
	return b
}

type arpReq struct {
	ethSrc, sha packet.MAC
	op          uint16
	spa, tpa    netip.Addr
}

func arpFrame(t testing.TB, r arpReq) []byte {
	t.Helper()
	if r.op == 0 {
		r.op = packet.ARPRequest
	}
	a := make([]byte, packet.ARPLen+18) // padded to 60 as on the wire
	if _, err := packet.PutARP(a, r.op, r.sha, r.spa, packet.MAC{}, r.tpa); err != nil {
		t.Fatal(err)
	}
	return ethFrame(t, packet.BroadcastMAC, r.ethSrc, packet.EtherTypeARP, a)
}

// nsBody is a neighbor solicitation (checksum left to ndFrame), with a
// source link-layer address option when slla is given; rsBody likewise.
func nsBody(target netip.Addr, slla *packet.MAC) []byte {
	b := make([]byte, 24)
	b[0] = packet.ICMPv6NeighborSolicit
	t := target.As16()
	copy(b[8:24], t[:])
	if slla != nil {
		b = append(b, packet.NDOptSourceLinkAddr, 1)
		b = append(b, slla[:]...)
	}
	return b
}

func rsBody(slla *packet.MAC) []byte {
	b := make([]byte, 8)
	b[0] = packet.ICMPv6RouterSolicit
	if slla != nil {
		b = append(b, packet.NDOptSourceLinkAddr, 1)
		b = append(b, slla[:]...)
	}
	return b
}

type ndReq struct {
	ethSrc, ethDst packet.MAC
	src, dst       netip.Addr
	hopLimit       uint8 // 0 means 255
	ext            []byte
	body           []byte
	badChecksum    bool
}

// ndFrame wraps an ICMPv6 body in IPv6 (after ext, whose first byte must
// then name ICMPv6 as next header) with a correct checksum, unless asked.
func ndFrame(t testing.TB, r ndReq) []byte {
	t.Helper()
	if r.hopLimit == 0 {
		r.hopLimit = 255
	}
	if r.ethDst.IsZero() {
		r.ethDst = packet.MAC{0x33, 0x33, 0xff, 0, 0, 1}
	}
	m := append([]byte(nil), r.body...)
	if v, err := packet.ParseICMPv6(m); err == nil {
		v.SetChecksum(r.src, r.dst)
		if r.badChecksum {
			m[2] ^= 0xff
		}
	}
	next := uint8(packet.ProtoICMPv6)
	if len(r.ext) > 0 {
		next = packet.ProtoFragment
	}
	ip := make([]byte, packet.IPv6HeaderLen+len(r.ext)+len(m))
	if _, err := packet.PutIPv6Header(ip, &packet.IPv6Header{NextHeader: next, HopLimit: r.hopLimit, Src: r.src, Dst: r.dst}, len(r.ext)+len(m)); err != nil {
		t.Fatal(err)
	}
	copy(ip[packet.IPv6HeaderLen:], r.ext)
	copy(ip[packet.IPv6HeaderLen+len(r.ext):], m)
	return ethFrame(t, r.ethDst, r.ethSrc, packet.EtherTypeIPv6, ip)
}

// dhcpMsg is a client message from the endpoint, the way dhclient sends
// it: a fixed transaction ID, chaddr, the message type and mods.
func dhcpMsg(typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		TransactionID: dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef},
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  net.HardwareAddr(epMAC[:]),
		Options:       dhcpv4.Options{},
	}
	d.UpdateOption(dhcpv4.OptMessageType(typ))
	d.UpdateOption(dhcpv4.OptParameterRequestList(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionClasslessStaticRoute))
	for _, m := range mods {
		m(d)
	}
	return d
}

type udpReq struct {
	ethSrc           packet.MAC
	src, dst         netip.Addr
	srcPort, dstPort uint16
}

// udpFrame carries payload in UDP over IPv4 with both checksums right.
func udpFrame(t testing.TB, r udpReq, payload []byte) []byte {
	t.Helper()
	if r.srcPort == 0 {
		r.srcPort, r.dstPort = dhcpClientPort, dhcpServerPort
	}
	if !r.src.IsValid() {
		r.src, r.dst = zero4, bcast
	}
	ip := make([]byte, packet.IPv4MinHeaderLen+packet.UDPHeaderLen+len(payload))
	hl, err := packet.PutIPv4Header(ip, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoUDP, Src: r.src, Dst: r.dst}, packet.UDPHeaderLen+len(payload))
	if err != nil {
		t.Fatal(err)
	}
	copy(ip[hl+packet.UDPHeaderLen:], payload)
	u, err := packet.PutUDP(ip[hl:], r.srcPort, r.dstPort, len(payload))
	if err != nil {
		t.Fatal(err)
	}
	u.SetChecksum(r.src, r.dst)
	return ethFrame(t, packet.BroadcastMAC, r.ethSrc, packet.EtherTypeIPv4, ip)
}

func dhcpFrame(t testing.TB, r udpReq, d *dhcpv4.DHCPv4) []byte {
	t.Helper()
	if r.ethSrc.IsZero() {
		r.ethSrc = epMAC
	}
	return udpFrame(t, r, d.ToBytes())
}

// checkReply verifies that a reply is a well-formed frame from the gateway
// MAC to the endpoint (or a group it is in): every header parses, lengths
// agree, checksums are right, and it is one of the answers the services
// give. It is what the fuzz target demands of any reply.
func checkReply(p *PortInfo, reply []byte) error {
	eth, err := packet.ParseEthernet(reply)
	if err != nil {
		return err
	}
	if eth.Src() != p.GatewayMAC || eth.HasVLAN() {
		return fmt.Errorf("ethernet source %v (vlan %v), want %v untagged", eth.Src(), eth.HasVLAN(), p.GatewayMAC)
	}
	switch eth.EtherType() {
	case packet.EtherTypeARP:
		return checkARPReply(p, eth)
	case packet.EtherTypeIPv6:
		return checkNDReply(p, eth)
	case packet.EtherTypeIPv4:
		return checkDHCPReply(p, eth)
	}
	return fmt.Errorf("ethertype %#x", eth.EtherType())
}

func checkARPReply(p *PortInfo, eth packet.Ethernet) error {
	if len(eth.Bytes()) != minFrameLen {
		return fmt.Errorf("arp reply of %d bytes, want %d", len(eth.Bytes()), minFrameLen)
	}
	a, err := packet.ParseARP(eth.Payload())
	if err != nil {
		return err
	}
	if a.Op() != packet.ARPReply || a.SenderMAC() != p.GatewayMAC || a.TargetMAC() != p.MAC || eth.Dst() != p.MAC {
		return fmt.Errorf("arp reply op %d sha %v tha %v to %v", a.Op(), a.SenderMAC(), a.TargetMAC(), eth.Dst())
	}
	if !answerable(a.SenderIP()) || p.isOwn(a.SenderIP()) || a.TargetIP().IsUnspecified() {
		return fmt.Errorf("arp reply for %v to %v", a.SenderIP(), a.TargetIP())
	}
	return nil
}

func checkNDReply(p *PortInfo, eth packet.Ethernet) error {
	ip, err := packet.ParseIPv6(eth.Payload())
	if err != nil {
		return err
	}
	if len(ip.Bytes()) != len(eth.Payload()) {
		return fmt.Errorf("ipv6 of %d bytes in %d", len(ip.Bytes()), len(eth.Payload()))
	}
	if ip.NextHeader() != packet.ProtoICMPv6 || ip.HopLimit() != 255 || ip.Src() != p.gatewayLL() {
		return fmt.Errorf("ipv6 next header %d hop limit %d from %v", ip.NextHeader(), ip.HopLimit(), ip.Src())
	}
	wantMAC := p.MAC
	if ip.Dst() == allNodes {
		wantMAC = allNodesMAC
	}
	if eth.Dst() != wantMAC || ip.Dst().IsUnspecified() {
		return fmt.Errorf("to %v at %v", ip.Dst(), eth.Dst())
	}
	m, err := packet.ParseICMPv6(ip.Payload())
	if err != nil {
		return err
	}
	switch m.Type() {
	case packet.ICMPv6NeighborAdvert:
		na, err := packet.ParseNeighborAdvert(ip, m)
		if err != nil {
			return err
		}
		if mac, ok := na.TargetLinkAddr(); !ok || mac != p.GatewayMAC || !na.Router() || !na.Solicited() || !na.Override() {
			return fmt.Errorf("neighbor advertisement for %v: %v %v, R %v S %v O %v", na.Target(), mac, ok, na.Router(), na.Solicited(), na.Override())
		}
		if p.isOwn(na.Target()) {
			return fmt.Errorf("neighbor advertisement for the endpoint's own %v", na.Target())
		}
	case packet.ICMPv6RouterAdvert:
		ra, err := packet.ParseRouterAdvert(ip, m)
		if err != nil {
			return err
		}
		if mac, ok := ra.SourceLinkAddr(); !ok || mac != p.GatewayMAC || ra.RouterLifetime() != uint16(RouterLifetime/time.Second) {
			return fmt.Errorf("router advertisement: %v %v lifetime %d", mac, ok, ra.RouterLifetime())
		}
		if _, ok := ra.Option(packet.NDOptPrefixInfo); ok {
			return fmt.Errorf("router advertisement carries prefix information")
		}
	default:
		return fmt.Errorf("icmpv6 type %d", m.Type())
	}
	return nil
}

func checkDHCPReply(p *PortInfo, eth packet.Ethernet) error {
	ip, err := packet.ParseIPv4(eth.Payload())
	if err != nil {
		return err
	}
	if len(ip.Bytes()) != len(eth.Payload()) || !ip.ChecksumValid() || ip.Protocol() != packet.ProtoUDP || ip.IsFragment() {
		return fmt.Errorf("ipv4 %d of %d bytes, checksum %v, protocol %d", len(ip.Bytes()), len(eth.Payload()), ip.ChecksumValid(), ip.Protocol())
	}
	if gw, _ := p.gateway4(); ip.Src() != gw {
		return fmt.Errorf("ipv4 source %v, want %v", ip.Src(), gw)
	}
	if (ip.Dst() == bcast) != (eth.Dst() == packet.BroadcastMAC) || (eth.Dst() != packet.BroadcastMAC && eth.Dst() != p.MAC) {
		return fmt.Errorf("ipv4 to %v at %v", ip.Dst(), eth.Dst())
	}
	u, err := packet.ParseUDP(ip.Payload())
	if err != nil {
		return err
	}
	if len(u.Bytes()) != len(ip.Payload()) || u.Checksum() == 0 || !u.ChecksumValid(ip.Src(), ip.Dst()) || u.SrcPort() != 67 || u.DstPort() != 68 {
		return fmt.Errorf("udp %d->%d checksum %#x", u.SrcPort(), u.DstPort(), u.Checksum())
	}
	d, err := dhcpv4.FromBytes(u.Payload())
	if err != nil {
		return err
	}
	if d.OpCode != dhcpv4.OpcodeBootReply || !equalMAC(d.ClientHWAddr, p.MAC) {
		return fmt.Errorf("dhcp op %v chaddr %v", d.OpCode, d.ClientHWAddr)
	}
	switch d.MessageType() {
	case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
	default:
		return fmt.Errorf("dhcp message type %v", d.MessageType())
	}
	if gw, _ := p.gateway4(); !d.ServerIdentifier().Equal(gw.AsSlice()) {
		return fmt.Errorf("dhcp server identifier %v", d.ServerIdentifier())
	}
	return nil
}

func equalMAC(hw net.HardwareAddr, m packet.MAC) bool { return len(hw) == 6 && packet.MAC(hw) == m }

// fragHeader is an IPv6 Fragment header (first fragment, more to come)
// followed by ICMPv6.
func fragHeader() []byte {
	b := make([]byte, 8)
	b[0] = packet.ProtoICMPv6
	binary.BigEndian.PutUint16(b[2:4], 1) // offset 0, M
	return b
}
