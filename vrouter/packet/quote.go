package packet

import "encoding/binary"

// ICMP errors quote the start of the datagram they are about: its IP
// header and at least 8 bytes after it (RFC 792, RFC 1812 section 4.3.2.3),
// or as much of it as fits in 1280 bytes for ICMPv6 (RFC 4443 section 2.4).
// A policy that lets such an error through when it relates to an allowed
// flow needs that datagram's five-tuple from a quote that is cut short, and
// ParseFiveTuple, which insists on whole packets, refuses those.

// ICMPError returns the quote of an ICMP error message p carries, if p is
// one: destination unreachable (fragmentation needed included), time
// exceeded or parameter problem, in an unfragmented datagram. Other ICMP
// messages (echo, redirect, source quench) and everything else return false.
func (p IPv4) ICMPError() (quote []byte, ok bool) {
	if p.Protocol() != ProtoICMPv4 || p.IsFragment() {
		return nil, false
	}
	m, err := ParseICMPv4(p.Payload())
	if err != nil {
		return nil, false
	}
	switch m.Type() {
	case ICMPv4DestUnreach, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return m.Body(), true
	}
	return nil, false
}

// ICMPError returns the quote of an ICMPv6 error message p carries, if p
// is one: destination unreachable, packet too big, time exceeded or
// parameter problem (after any extension headers, not in a non-first
// fragment).
func (p IPv6) ICMPError() (quote []byte, ok bool) {
	tr, err := p.Transport()
	if err != nil || tr.Proto != ProtoICMPv6 || tr.FragmentOffset != 0 {
		return nil, false
	}
	m, err := ParseICMPv6(p.b[tr.Offset:])
	if err != nil {
		return nil, false
	}
	switch m.Type() {
	case ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded, ICMPv6ParamProblem:
		return m.Body(), true
	}
	return nil, false
}

// ParseQuotedFiveTuple is ParseFiveTuple for the datagram an ICMP error
// quotes, which may be cut short: the IP header must be whole (and, for
// IPv6, the extension headers up to the transport header), its length
// fields may promise more than b holds, and of the transport header only
// what the tuple needs must be there (the ports, the first 4 bytes of TCP
// and UDP; the 8-byte header of ICMP, for the echo identifier). Fragments
// give ports 0, as in FiveTuple. It allocates nothing but its error.
func ParseQuotedFiveTuple(b []byte) (FiveTuple, error) {
	if len(b) == 0 {
		return FiveTuple{}, errShort("quoted ip", "version", 0, 0, 1)
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < IPv4MinHeaderLen {
			return FiveTuple{}, errShort("quoted ipv4", "header", 0, len(b), IPv4MinHeaderLen)
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < IPv4MinHeaderLen || ihl > len(b) {
			return FiveTuple{}, errField("quoted ipv4", "header length", 0, ihl, len(b), "%d outside 20..%d")
		}
		tl := int(binary.BigEndian.Uint16(b[2:4]))
		if tl < ihl {
			return FiveTuple{}, errField("quoted ipv4", "total length", 2, tl, ihl, "%d below header length %d")
		}
		p := IPv4{b: b[:min(tl, len(b))]}
		t := FiveTuple{Src: p.Src(), Dst: p.Dst(), Proto: p.Protocol()}
		if p.IsFragment() {
			return t, nil
		}
		var err error
		t.SrcPort, t.DstPort, err = quotedPorts(t.Proto, p.b[ihl:])
		return t, err
	case 6:
		if len(b) < IPv6HeaderLen {
			return FiveTuple{}, errShort("quoted ipv6", "header", 0, len(b), IPv6HeaderLen)
		}
		pl := int(binary.BigEndian.Uint16(b[4:6]))
		p := IPv6{b: b[:min(IPv6HeaderLen+pl, len(b))]}
		return p.fiveTuple(quotedPorts)
	}
	return FiveTuple{}, errField("quoted ip", "version", 0, int(b[0]>>4), 4, "%d, want %d or 6")
}

// quotedPorts is ports for a transport header of which only the start may
// be there.
func quotedPorts(proto uint8, seg []byte) (src, dst uint16, err error) {
	switch proto {
	case ProtoTCP, ProtoUDP:
		if len(seg) < 4 {
			return 0, 0, errShort("quoted transport", "ports", 0, len(seg), 4)
		}
		return binary.BigEndian.Uint16(seg[0:2]), binary.BigEndian.Uint16(seg[2:4]), nil
	case ProtoICMPv4, ProtoICMPv6:
		if len(seg) < ICMPv4HeaderLen {
			return 0, 0, errShort("quoted icmp", "header", 0, len(seg), ICMPv4HeaderLen)
		}
		echo := seg[0] == ICMPv4Echo || seg[0] == ICMPv4EchoReply
		if proto == ProtoICMPv6 {
			echo = seg[0] == ICMPv6EchoRequest || seg[0] == ICMPv6EchoReply
		}
		if echo {
			id := binary.BigEndian.Uint16(seg[4:6])
			return id, id, nil
		}
	}
	return 0, 0, nil
}
