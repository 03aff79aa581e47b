package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IPv4 header sizes.
const (
	IPv4MinHeaderLen = 20
	IPv4MaxHeaderLen = 60
	IPv4MaxLen       = 65535
)

// IP protocol numbers the vRouter handles.
const (
	ProtoHopByHop = 0
	ProtoICMPv4   = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoGRE      = 47
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDstOpts  = 60
)

// DefaultTTL is the TTL (or hop limit) of packets the builders originate
// when the caller gives none.
const DefaultTTL = 64

// IPv4 is a view of one IPv4 datagram: the header, options and payload up
// to Total Length. Bytes past Total Length (link padding) are not part of it.
type IPv4 struct{ b []byte }

// ParseIPv4 checks version, header length and total length against b.
func ParseIPv4(b []byte) (IPv4, error) {
	if len(b) < IPv4MinHeaderLen {
		return IPv4{}, errShort("ipv4", "header", 0, len(b), IPv4MinHeaderLen)
	}
	if v := b[0] >> 4; v != 4 {
		return IPv4{}, errField("ipv4", "version", 0, int(v), 4, fmtWant)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < IPv4MinHeaderLen {
		return IPv4{}, errField("ipv4", "header length", 0, ihl, IPv4MinHeaderLen, fmtBelow)
	}
	tl := int(binary.BigEndian.Uint16(b[2:4]))
	if tl < ihl {
		return IPv4{}, errField("ipv4", "total length", 2, tl, ihl, "%d below header length %d")
	}
	if tl > len(b) {
		return IPv4{}, errField("ipv4", "total length", 2, tl, len(b), fmtExceeds)
	}
	return IPv4{b: b[:tl]}, nil
}

// Bytes is the datagram, Total Length bytes.
func (p IPv4) Bytes() []byte { return p.b }

// HeaderLen is the header length including options, 20 to 60.
func (p IPv4) HeaderLen() int { return int(p.b[0]&0x0f) * 4 }

// TOS is the DSCP and ECN byte.
func (p IPv4) TOS() uint8 { return p.b[1] }

// TotalLen is the Total Length field, equal to len(Bytes()).
func (p IPv4) TotalLen() int { return len(p.b) }

// ID is the Identification field.
func (p IPv4) ID() uint16 { return binary.BigEndian.Uint16(p.b[4:6]) }

// DF reports the Don't Fragment flag.
func (p IPv4) DF() bool { return p.b[6]&0x40 != 0 }

// MF reports the More Fragments flag.
func (p IPv4) MF() bool { return p.b[6]&0x20 != 0 }

// FragmentOffset is the offset of this fragment's data, in bytes.
func (p IPv4) FragmentOffset() int { return int(binary.BigEndian.Uint16(p.b[6:8])&0x1fff) * 8 }

// IsFragment reports whether the datagram is a fragment (MF set or a
// non-zero offset). Only the first fragment carries the transport header.
func (p IPv4) IsFragment() bool { return binary.BigEndian.Uint16(p.b[6:8])&0x3fff != 0 }

// TTL is the time to live.
func (p IPv4) TTL() uint8 { return p.b[8] }

// Protocol is the payload's IP protocol number.
func (p IPv4) Protocol() uint8 { return p.b[9] }

// Checksum is the header checksum field.
func (p IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(p.b[10:12]) }

// Src is the source address.
func (p IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(p.b[12:16])) }

// Dst is the destination address.
func (p IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(p.b[16:20])) }

// Options are the header options, possibly empty.
func (p IPv4) Options() []byte { return p.b[IPv4MinHeaderLen:p.HeaderLen()] }

// Payload is what follows the header, up to Total Length.
func (p IPv4) Payload() []byte { return p.b[p.HeaderLen():] }

// ChecksumValid verifies the header checksum.
func (p IPv4) ChecksumValid() bool { return valid(p.b[:p.HeaderLen()], 0) }

// ComputeChecksum is the header checksum the header should carry.
func (p IPv4) ComputeChecksum() uint16 { return checksumSkip(p.b[:p.HeaderLen()], 10, 0) }

// SetChecksum writes the computed header checksum.
func (p IPv4) SetChecksum() { binary.BigEndian.PutUint16(p.b[10:12], p.ComputeChecksum()) }

// DecTTL decrements the TTL and patches the checksum incrementally
// (RFC 1624), as a router does on forwarding. It returns false, leaving the
// packet untouched, when the TTL is 0 or 1: the packet must not be
// forwarded (RFC 1812 section 5.3.1).
func (p IPv4) DecTTL() bool {
	ttl := p.b[8]
	if ttl <= 1 {
		return false
	}
	old := binary.BigEndian.Uint16(p.b[8:10]) // TTL and Protocol share a word
	p.b[8] = ttl - 1
	hc := csumUpdate16(binary.BigEndian.Uint16(p.b[10:12]), old, binary.BigEndian.Uint16(p.b[8:10]))
	binary.BigEndian.PutUint16(p.b[10:12], hc)
	return true
}

// IPv4Header holds the fields PutIPv4Header writes.
type IPv4Header struct {
	TOS      uint8
	ID       uint16
	DF       bool
	TTL      uint8 // 0 means DefaultTTL
	Protocol uint8
	Src, Dst netip.Addr
	Options  []byte // a multiple of 4 bytes, at most 40
}

// PutIPv4Header writes h at the start of b for a payload of payloadLen
// bytes (which the caller places after the header), with Total Length and
// checksum filled in, and returns the header length.
func PutIPv4Header(b []byte, h *IPv4Header, payloadLen int) (int, error) {
	if !h.Src.Is4() || !h.Dst.Is4() {
		return 0, fmt.Errorf("ipv4: addresses %v and %v must be IPv4", h.Src, h.Dst)
	}
	if len(h.Options)%4 != 0 || len(h.Options) > IPv4MaxHeaderLen-IPv4MinHeaderLen {
		return 0, fmt.Errorf("ipv4: options of %d bytes, want a multiple of 4 up to 40", len(h.Options))
	}
	hl := IPv4MinHeaderLen + len(h.Options)
	if payloadLen < 0 || hl+payloadLen > IPv4MaxLen {
		return 0, fmt.Errorf("ipv4: total length %d out of range", hl+payloadLen)
	}
	if len(b) < hl {
		return 0, errBuf("ipv4", len(b), hl)
	}
	ttl := h.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	copy(b[IPv4MinHeaderLen:hl], h.Options)
	putIPv4(b, hl, h.TOS, hl+payloadLen, h.ID, h.DF, ttl, h.Protocol, h.Src.As4(), h.Dst.As4())
	return hl, nil
}

// putIPv4 writes a header of hl bytes (options already in place) and its
// checksum. The caller has checked every bound.
func putIPv4(b []byte, hl int, tos uint8, totalLen int, id uint16, df bool, ttl, proto uint8, src, dst [4]byte) {
	_ = b[19]
	b[0] = 0x40 | uint8(hl/4)
	b[1] = tos
	binary.BigEndian.PutUint16(b[2:4], uint16(totalLen))
	binary.BigEndian.PutUint16(b[4:6], id)
	var flags uint16
	if df {
		flags = 0x4000
	}
	binary.BigEndian.PutUint16(b[6:8], flags)
	b[8] = ttl
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:12], checksum(b[:hl], 0))
}
