package packet

import "encoding/binary"

// EchoReply turns the ICMPv4 or ICMPv6 echo request ip (a whole IP packet,
// as ParseIPv4/ParseIPv6 accept it) into the echo reply in place: source and
// destination swapped, type changed, TTL reset, checksums recomputed. It is
// how the vRouter answers a ping of its gateway address without a copy. An
// error leaves ip unchanged.
func EchoReply(ip []byte) error {
	if len(ip) == 0 {
		return errShort("ip", "version", 0, 0, 1)
	}
	switch ip[0] >> 4 {
	case 4:
		p, err := ParseIPv4(ip)
		if err != nil {
			return err
		}
		if p.Protocol() != ProtoICMPv4 || p.IsFragment() {
			return errField("ipv4", "protocol", 9, int(p.Protocol()), ProtoICMPv4, "%d, want an unfragmented icmp (%d)")
		}
		m, err := ParseICMPv4(p.Payload())
		if err != nil {
			return err
		}
		if m.Type() != ICMPv4Echo || m.Code() != 0 {
			return errField("icmpv4", "type", 0, int(m.Type()), ICMPv4Echo, "%d, want echo request (%d)")
		}
		b := p.Bytes()
		var a [4]byte
		copy(a[:], b[12:16])
		copy(b[12:16], b[16:20])
		copy(b[16:20], a[:])
		b[8] = DefaultTTL
		p.SetChecksum()
		m.Bytes()[0] = ICMPv4EchoReply
		m.SetChecksum()
		return nil
	case 6:
		p, err := ParseIPv6(ip)
		if err != nil {
			return err
		}
		if p.NextHeader() != ProtoICMPv6 {
			return errField("ipv6", "next header", 6, int(p.NextHeader()), ProtoICMPv6, "%d, want icmpv6 (%d) without extension headers")
		}
		m, err := ParseICMPv6(p.Payload())
		if err != nil {
			return err
		}
		if m.Type() != ICMPv6EchoRequest || m.Code() != 0 {
			return errField("icmpv6", "type", 0, int(m.Type()), ICMPv6EchoRequest, "%d, want echo request (%d)")
		}
		b := p.Bytes()
		var a [16]byte
		copy(a[:], b[8:24])
		copy(b[8:24], b[24:40])
		copy(b[24:40], a[:])
		b[7] = DefaultTTL
		mb := m.Bytes()
		mb[0] = ICMPv6EchoReply
		binary.BigEndian.PutUint16(mb[2:4], 0)
		m.SetChecksum(p.Src(), p.Dst())
		return nil
	}
	return errField("ip", "version", 0, int(ip[0]>>4), 4, "%d, want %d or 6")
}
