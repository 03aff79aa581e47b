package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Encap is a tunnel encapsulation the vRouter speaks on the underlay.
type Encap uint8

const (
	EncapNone     Encap = iota
	EncapMPLSoUDP       // RFC 7510: outer IP, UDP to 6635, one MPLS label
	EncapMPLSoGRE       // RFC 4023: outer IP, GRE (0x8847), one MPLS label
	EncapVXLAN          // RFC 7348: outer IP, UDP to 4789, VXLAN, inner Ethernet
)

var encapNames = [...]string{EncapNone: "none", EncapMPLSoUDP: "mplsoudp", EncapMPLSoGRE: "mplsogre", EncapVXLAN: "vxlan"}

func (e Encap) String() string {
	if int(e) < len(encapNames) {
		return encapNames[e]
	}
	return fmt.Sprintf("encap(%d)", uint8(e))
}

// ParseEncap reads the names String gives ("mplsoudp", "mplsogre", "vxlan"),
// as weft.yaml spells them.
func ParseEncap(s string) (Encap, error) {
	for i, n := range encapNames {
		if i != int(EncapNone) && n == s {
			return Encap(i), nil
		}
	}
	return EncapNone, fmt.Errorf("encapsulation %q: want mplsoudp, mplsogre or vxlan", s)
}

// Bytes each encapsulation adds in front of an inner IP packet. The VXLAN
// figures include the inner Ethernet header, which rides inside the tunnel
// too. An endpoint's MTU is the underlay MTU minus the overhead of the
// encapsulation in use; MaxEncapOverhead is the headroom a buffer needs for
// any of them.
const (
	OverheadMPLSoUDP4 = IPv4MinHeaderLen + UDPHeaderLen + MPLSEntryLen                       // 32
	OverheadMPLSoUDP6 = IPv6HeaderLen + UDPHeaderLen + MPLSEntryLen                          // 52
	OverheadMPLSoGRE4 = IPv4MinHeaderLen + GREHeaderLen + MPLSEntryLen                       // 28
	OverheadMPLSoGRE6 = IPv6HeaderLen + GREHeaderLen + MPLSEntryLen                          // 48
	OverheadVXLAN4    = IPv4MinHeaderLen + UDPHeaderLen + VXLANHeaderLen + EthernetHeaderLen // 50
	OverheadVXLAN6    = IPv6HeaderLen + UDPHeaderLen + VXLANHeaderLen + EthernetHeaderLen    // 70
	MaxEncapOverhead  = OverheadVXLAN6
)

// Overhead is the encapsulation's overhead over an IPv6 (ipv6) or IPv4
// underlay; 0 for EncapNone or an unknown kind.
func (e Encap) Overhead(ipv6 bool) int {
	switch e {
	case EncapMPLSoUDP:
		if ipv6 {
			return OverheadMPLSoUDP6
		}
		return OverheadMPLSoUDP4
	case EncapMPLSoGRE:
		if ipv6 {
			return OverheadMPLSoGRE6
		}
		return OverheadMPLSoGRE4
	case EncapVXLAN:
		if ipv6 {
			return OverheadVXLAN6
		}
		return OverheadVXLAN4
	}
	return 0
}

// Outer holds the underlay IP header of a tunnel packet. One Outer per
// tunnel next hop can be kept and reused for every packet.
type Outer struct {
	Src, Dst  netip.Addr // both IPv4 or both IPv6: the two vRouters
	TTL       uint8      // TTL or hop limit; 0 means DefaultTTL
	TOS       uint8      // IPv4 TOS or IPv6 traffic class
	DF        bool       // IPv4 Don't Fragment (set it: PMTU is handled at ingress)
	ID        uint16     // IPv4 Identification; any value when DF (RFC 6864)
	FlowLabel uint32     // IPv6 flow label, e.g. from the inner flow hash (RFC 6438)
	// ZeroUDPChecksum6 sends IPv6 UDP tunnels with a zero checksum
	// (RFC 6935/6936), saving a pass over the packet; the receiver must
	// accept that (Linux: udp6zerocsumrx). Otherwise the checksum is
	// computed. Over IPv4 the UDP checksum is always zero (RFC 7510, 7348).
	ZeroUDPChecksum6 bool
}

// family checks the addresses and reports whether they are IPv6.
func (o *Outer) family(encap string) (bool, error) {
	switch {
	case o.Src.Is4() && o.Dst.Is4():
		return false, nil
	case o.Src.Is6() && o.Dst.Is6() && !o.Src.Is4In6() && !o.Dst.Is4In6():
		return true, nil
	}
	return false, fmt.Errorf("%s: outer addresses %v and %v must be both IPv4 or both IPv6", encap, o.Src, o.Dst)
}

// prepare checks the buffer and returns where the outer header starts and
// whether it is IPv6. overhead4/6 are the bytes written in front of start.
func (o *Outer) prepare(encap string, buf []byte, start, overhead4, overhead6 int) (s int, v6 bool, err error) {
	if start < 0 || start > len(buf) {
		return 0, false, fmt.Errorf("%s: inner packet offset %d outside buffer of %d bytes", encap, start, len(buf))
	}
	v6, err = o.family(encap)
	if err != nil {
		return 0, false, err
	}
	oh := overhead4
	if v6 {
		oh = overhead6
	}
	if start < oh {
		return 0, false, errHeadroom(encap, start, oh)
	}
	// Both length fields are 16 bits: IPv4 total length, IPv6 payload length.
	ipPayload := len(buf) - start + oh - IPv4MinHeaderLen
	if v6 {
		ipPayload = len(buf) - start + oh - IPv6HeaderLen
	}
	if (!v6 && ipPayload+IPv4MinHeaderLen > IPv4MaxLen) || ipPayload > 0xffff {
		return 0, false, fmt.Errorf("%s: inner packet of %d bytes too large to encapsulate", encap, len(buf)-start)
	}
	return start - oh, v6, nil
}

// putOuterIP writes the outer IP header at h for payloadLen bytes after it
// and returns its length.
func (o *Outer) putOuterIP(h []byte, v6 bool, proto uint8, payloadLen int) int {
	ttl := o.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if v6 {
		s, d := o.Src.As16(), o.Dst.As16()
		putIPv6(h, o.TOS, o.FlowLabel&0xfffff, payloadLen, proto, ttl, &s, &d)
		return IPv6HeaderLen
	}
	putIPv4(h, IPv4MinHeaderLen, o.TOS, IPv4MinHeaderLen+payloadLen, o.ID, o.DF, ttl, proto, o.Src.As4(), o.Dst.As4())
	return IPv4MinHeaderLen
}

// udpChecksum6 fills the UDP checksum over IPv6 unless zero is asked for.
func (o *Outer) udpChecksum6(u []byte) {
	if o.ZeroUDPChecksum6 {
		return
	}
	s, d := o.Src.As16(), o.Dst.As16()
	c := checksum(u, pseudoSum16(&s, &d, ProtoUDP, len(u)))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], c)
}

// PushMPLSoUDP encapsulates the inner IP packet buf[start:] in place:
// it writes outer IP, UDP (srcPort to 6635) and the MPLS entry into
// buf[start-overhead:start] and returns that new start, so the tunnel
// packet is buf[newStart:]. The entry's bottom-of-stack bit is set, since
// it is the only label. It allocates nothing and touches nothing outside
// buf[newStart:start] (and the UDP checksum pass over IPv6).
func PushMPLSoUDP(buf []byte, start int, o *Outer, srcPort uint16, e MPLSEntry) (int, error) {
	s, v6, err := o.prepare("mplsoudp", buf, start, OverheadMPLSoUDP4, OverheadMPLSoUDP6)
	if err != nil {
		return 0, err
	}
	h := buf[s:]
	udpLen := len(h) - IPv4MinHeaderLen
	if v6 {
		udpLen = len(h) - IPv6HeaderLen
	}
	ihl := o.putOuterIP(h, v6, ProtoUDP, udpLen)
	u := h[ihl:]
	putUDP(u, srcPort, MPLSoUDPPort, udpLen)
	binary.BigEndian.PutUint32(u[UDPHeaderLen:], uint32(e)|1<<8)
	if v6 {
		o.udpChecksum6(u)
	}
	return s, nil
}

// PushMPLSoGRE is PushMPLSoUDP with a 4-byte GRE header (protocol
// 0x8847) instead of UDP; the outer IP protocol is 47.
func PushMPLSoGRE(buf []byte, start int, o *Outer, e MPLSEntry) (int, error) {
	s, v6, err := o.prepare("mplsogre", buf, start, OverheadMPLSoGRE4, OverheadMPLSoGRE6)
	if err != nil {
		return 0, err
	}
	h := buf[s:]
	greLen := len(h) - IPv4MinHeaderLen
	if v6 {
		greLen = len(h) - IPv6HeaderLen
	}
	ihl := o.putOuterIP(h, v6, ProtoGRE, greLen)
	putGRE(h[ihl:], EtherTypeMPLS)
	binary.BigEndian.PutUint32(h[ihl+GREHeaderLen:], uint32(e)|1<<8)
	return s, nil
}

// PushVXLAN encapsulates the inner IP packet buf[start:] (a routed
// packet: the vRouter is L3) in place: it writes outer IP, UDP (srcPort to
// 4789), the VXLAN header with vni and an inner Ethernet header from
// innerSrc to innerDst, with the EtherType the inner IP version calls for,
// and returns the new start. innerDst is the remote's router MAC (EVPN
// type 5) or any MAC the remote accepts.
func PushVXLAN(buf []byte, start int, o *Outer, srcPort uint16, vni uint32, innerDst, innerSrc MAC) (int, error) {
	if vni > MaxVNI {
		return 0, fmt.Errorf("vxlan: vni %d exceeds 24 bits", vni)
	}
	if start < 0 || start >= len(buf) {
		return 0, fmt.Errorf("vxlan: inner packet offset %d outside buffer of %d bytes", start, len(buf))
	}
	var et uint16
	switch buf[start] >> 4 {
	case 4:
		et = EtherTypeIPv4
	case 6:
		et = EtherTypeIPv6
	default:
		return 0, fmt.Errorf("vxlan: inner packet version %d is not IP", buf[start]>>4)
	}
	s, err := encapVXLAN(buf, start, o, srcPort, vni, EthernetHeaderLen)
	if err != nil {
		return 0, err
	}
	putEthernet(buf[start-EthernetHeaderLen:], innerDst, innerSrc, et)
	// The IPv6 checksum covers the inner Ethernet header: compute it last.
	if buf[s]>>4 == 6 {
		o.udpChecksum6(buf[s+IPv6HeaderLen:])
	}
	return s, nil
}

// PushVXLANFrame encapsulates an inner Ethernet frame buf[start:] as it is
// (bridged traffic), writing outer IP, UDP and VXLAN; the overhead is 14
// bytes less than PushVXLAN's.
func PushVXLANFrame(buf []byte, start int, o *Outer, srcPort uint16, vni uint32) (int, error) {
	if vni > MaxVNI {
		return 0, fmt.Errorf("vxlan: vni %d exceeds 24 bits", vni)
	}
	s, err := encapVXLAN(buf, start, o, srcPort, vni, 0)
	if err != nil {
		return 0, err
	}
	if buf[s]>>4 == 6 {
		o.udpChecksum6(buf[s+IPv6HeaderLen:])
	}
	return s, nil
}

// encapVXLAN writes outer IP, UDP and VXLAN in front of start-eth (eth is
// the inner Ethernet header the caller writes after).
func encapVXLAN(buf []byte, start int, o *Outer, srcPort uint16, vni uint32, eth int) (int, error) {
	s, v6, err := o.prepare("vxlan", buf, start, OverheadVXLAN4-EthernetHeaderLen+eth, OverheadVXLAN6-EthernetHeaderLen+eth)
	if err != nil {
		return 0, err
	}
	h := buf[s:]
	udpLen := len(h) - IPv4MinHeaderLen
	if v6 {
		udpLen = len(h) - IPv6HeaderLen
	}
	ihl := o.putOuterIP(h, v6, ProtoUDP, udpLen)
	putUDP(h[ihl:], srcPort, VXLANPort, udpLen)
	putVXLAN(h[ihl+UDPHeaderLen:], vni)
	return s, nil
}
