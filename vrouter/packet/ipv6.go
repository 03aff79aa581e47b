package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IPv6HeaderLen is the length of the fixed IPv6 header.
const IPv6HeaderLen = 40

// MaxIPv6ExtHeaders bounds the extension-header walk, so that a packet of
// tiny extension headers cannot make one lookup walk thousands of them.
const MaxIPv6ExtHeaders = 8

// IPv6 is a view of one IPv6 packet: the fixed header and Payload Length
// bytes after it. Jumbograms (Payload Length 0 with a Jumbo option) are not
// supported: such a packet parses as one with an empty payload.
type IPv6 struct{ b []byte }

// ParseIPv6 checks version and payload length against b.
func ParseIPv6(b []byte) (IPv6, error) {
	if len(b) < IPv6HeaderLen {
		return IPv6{}, errShort("ipv6", "header", 0, len(b), IPv6HeaderLen)
	}
	if v := b[0] >> 4; v != 6 {
		return IPv6{}, errField("ipv6", "version", 0, int(v), 6, fmtWant)
	}
	pl := int(binary.BigEndian.Uint16(b[4:6]))
	if pl > len(b)-IPv6HeaderLen {
		return IPv6{}, errField("ipv6", "payload length", 4, pl, len(b)-IPv6HeaderLen, fmtExceeds)
	}
	return IPv6{b: b[:IPv6HeaderLen+pl]}, nil
}

// Bytes is the packet, header and payload.
func (p IPv6) Bytes() []byte { return p.b }

// TrafficClass is the DSCP and ECN byte.
func (p IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(p.b[0:2]) >> 4) }

// FlowLabel is the 20-bit flow label.
func (p IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(p.b[0:4]) & 0xfffff }

// PayloadLen is the Payload Length field, len(Bytes())-40.
func (p IPv6) PayloadLen() int { return len(p.b) - IPv6HeaderLen }

// NextHeader is the type of the header after the fixed header.
func (p IPv6) NextHeader() uint8 { return p.b[6] }

// HopLimit is the hop limit.
func (p IPv6) HopLimit() uint8 { return p.b[7] }

// Src is the source address.
func (p IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(p.b[8:24])) }

// Dst is the destination address.
func (p IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(p.b[24:40])) }

// Payload is what follows the fixed header: extension headers, then the
// upper-layer header and data.
func (p IPv6) Payload() []byte { return p.b[IPv6HeaderLen:] }

// DecHopLimit decrements the hop limit (IPv6 has no header checksum). It
// returns false, leaving the packet untouched, when the hop limit is 0 or 1.
func (p IPv6) DecHopLimit() bool {
	if p.b[7] <= 1 {
		return false
	}
	p.b[7]--
	return true
}

// Transport locates the upper-layer header after the extension headers.
type Transport struct {
	// Proto is the upper-layer protocol: TCP, UDP, ICMPv6, ..., or ESP or
	// No Next Header, where the walk has to stop.
	Proto uint8
	// Offset is where that header starts, from the start of the IPv6
	// header: Bytes()[Offset:] is the upper-layer segment.
	Offset int
	// Fragment reports a Fragment header; FragmentOffset is its offset in
	// bytes. With a non-zero offset there is no upper-layer header here,
	// only a piece of its data.
	Fragment       bool
	FragmentOffset int
	MoreFragments  bool
}

// Transport walks the extension headers (Hop-by-Hop, Routing, Fragment,
// Destination Options, Authentication, and other RFC 8200-format headers)
// to the upper-layer header. It stops at a non-first fragment, at ESP and at
// No Next Header, and fails on a truncated header, a Hop-by-Hop header not
// first, or more than MaxIPv6ExtHeaders headers.
func (p IPv6) Transport() (Transport, error) {
	t := Transport{Proto: p.b[6], Offset: IPv6HeaderLen}
	for n := 0; ; n++ {
		if !isIPv6Ext(t.Proto) {
			return t, nil
		}
		if n == MaxIPv6ExtHeaders {
			return t, errField("ipv6", "extension headers", t.Offset, n+1, MaxIPv6ExtHeaders, fmtTooMany)
		}
		if t.Proto == ProtoHopByHop && n != 0 {
			return t, errField("ipv6", "hop-by-hop header", t.Offset, t.Offset, IPv6HeaderLen, "at offset %d, must be first at %d")
		}
		h := p.b[t.Offset:]
		if len(h) < 8 {
			return t, errShort("ipv6", "extension header", t.Offset, len(h), 8)
		}
		var l int
		switch t.Proto {
		case ProtoFragment:
			l = 8
			t.Fragment = true
			fo := binary.BigEndian.Uint16(h[2:4])
			t.FragmentOffset = int(fo>>3) * 8
			t.MoreFragments = fo&1 != 0
		case ProtoAH:
			l = (int(h[1]) + 2) * 4
		default:
			l = (int(h[1]) + 1) * 8
		}
		if l > len(h) {
			return t, errField("ipv6", "extension header length", t.Offset+1, l, len(h), fmtExceeds)
		}
		t.Proto = h[0]
		t.Offset += l
		if t.Fragment && t.FragmentOffset != 0 {
			return t, nil
		}
	}
}

// isIPv6Ext reports whether proto is an extension header the walk can step
// over (RFC 8200 section 4 and the IANA list: Mobility, HIP, Shim6 and the
// experimental 253/254 share the generic format).
func isIPv6Ext(proto uint8) bool {
	switch proto {
	case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDstOpts, ProtoAH, 135, 139, 140, 253, 254:
		return true
	}
	return false
}

// IPv6Header holds the fields PutIPv6Header writes.
type IPv6Header struct {
	TrafficClass uint8
	FlowLabel    uint32 // 20 bits
	NextHeader   uint8
	HopLimit     uint8 // 0 means DefaultTTL
	Src, Dst     netip.Addr
}

// PutIPv6Header writes h at the start of b for a payload of payloadLen
// bytes and returns 40.
func PutIPv6Header(b []byte, h *IPv6Header, payloadLen int) (int, error) {
	if !h.Src.Is6() || !h.Dst.Is6() {
		return 0, fmt.Errorf("ipv6: addresses %v and %v must be IPv6", h.Src, h.Dst)
	}
	if payloadLen < 0 || payloadLen > 0xffff {
		return 0, fmt.Errorf("ipv6: payload length %d out of range", payloadLen)
	}
	if h.FlowLabel > 0xfffff {
		return 0, fmt.Errorf("ipv6: flow label %#x exceeds 20 bits", h.FlowLabel)
	}
	if len(b) < IPv6HeaderLen {
		return 0, errBuf("ipv6", len(b), IPv6HeaderLen)
	}
	hl := h.HopLimit
	if hl == 0 {
		hl = DefaultTTL
	}
	s, d := h.Src.As16(), h.Dst.As16()
	putIPv6(b, h.TrafficClass, h.FlowLabel, payloadLen, h.NextHeader, hl, &s, &d)
	return IPv6HeaderLen, nil
}

// putIPv6 writes the fixed header; the caller has checked every bound.
func putIPv6(b []byte, tc uint8, flow uint32, payloadLen int, next, hopLimit uint8, src, dst *[16]byte) {
	_ = b[39]
	binary.BigEndian.PutUint32(b[0:4], 6<<28|uint32(tc)<<20|flow&0xfffff)
	binary.BigEndian.PutUint16(b[4:6], uint16(payloadLen))
	b[6] = next
	b[7] = hopLimit
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
}
