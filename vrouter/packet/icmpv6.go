package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ICMPv6 types the vRouter handles (RFC 4443, RFC 4861).
const (
	ICMPv6DestUnreach     = 1
	ICMPv6PacketTooBig    = 2
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4
	ICMPv6EchoRequest     = 128
	ICMPv6EchoReply       = 129
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvert    = 134
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
	ICMPv6Redirect        = 137
)

// ICMPv6HeaderLen is the length of the ICMPv6 header with its 4-byte
// type-specific word, which every message the vRouter reads has.
const ICMPv6HeaderLen = 8

// IPv6MinMTU is the minimum link MTU of IPv6 (RFC 8200), the size an ICMPv6
// error may not exceed.
const IPv6MinMTU = 1280

// ICMPv6 is a view of an ICMPv6 message: header and body.
type ICMPv6 struct{ b []byte }

// ParseICMPv6 checks that b (the upper-layer segment) holds the 8-byte
// header.
func ParseICMPv6(b []byte) (ICMPv6, error) {
	if len(b) < ICMPv6HeaderLen {
		return ICMPv6{}, errShort("icmpv6", "header", 0, len(b), ICMPv6HeaderLen)
	}
	return ICMPv6{b: b}, nil
}

// Bytes is the message.
func (m ICMPv6) Bytes() []byte { return m.b }

// Type is the message type.
func (m ICMPv6) Type() uint8 { return m.b[0] }

// Code is the message code.
func (m ICMPv6) Code() uint8 { return m.b[1] }

// Checksum is the checksum field.
func (m ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(m.b[2:4]) }

// IsEcho reports an echo request or reply, whose ID and Seq are meaningful.
func (m ICMPv6) IsEcho() bool {
	return m.b[0] == ICMPv6EchoRequest || m.b[0] == ICMPv6EchoReply
}

// IsError reports an error message (types below 128).
func (m ICMPv6) IsError() bool { return m.b[0] < 128 }

// ID is the echo identifier.
func (m ICMPv6) ID() uint16 { return binary.BigEndian.Uint16(m.b[4:6]) }

// Seq is the echo sequence number.
func (m ICMPv6) Seq() uint16 { return binary.BigEndian.Uint16(m.b[6:8]) }

// MTU is the MTU of a packet-too-big message.
func (m ICMPv6) MTU() uint32 { return binary.BigEndian.Uint32(m.b[4:8]) }

// Body is what follows the 8-byte header.
func (m ICMPv6) Body() []byte { return m.b[ICMPv6HeaderLen:] }

// ChecksumValid verifies the checksum under the pseudo-header of src and
// dst (IPv6 addresses).
func (m ICMPv6) ChecksumValid(src, dst netip.Addr) bool {
	return valid(m.b, pseudoSum(src, dst, ProtoICMPv6, len(m.b)))
}

// ComputeChecksum is the checksum the message should carry.
func (m ICMPv6) ComputeChecksum(src, dst netip.Addr) uint16 {
	return checksumSkip(m.b, 2, pseudoSum(src, dst, ProtoICMPv6, len(m.b)))
}

// SetChecksum writes the computed checksum.
func (m ICMPv6) SetChecksum(src, dst netip.Addr) {
	binary.BigEndian.PutUint16(m.b[2:4], m.ComputeChecksum(src, dst))
}

// ICMPv6ErrorAllowed reports whether a packet-too-big message may be sent
// about orig (RFC 4443 section 2.4 (e)): not about an ICMPv6 error, nor
// from an unspecified or multicast source. Unlike other errors,
// packet-too-big is sent for multicast destinations too.
func ICMPv6ErrorAllowed(orig IPv6) bool {
	src := orig.Src()
	if src.IsUnspecified() || src.IsMulticast() || src.IsLoopback() {
		return false
	}
	t, err := orig.Transport()
	if err != nil {
		return true // still worth telling the sender about its size
	}
	if t.Proto == ProtoICMPv6 && t.FragmentOffset == 0 {
		m, err := ParseICMPv6(orig.b[t.Offset:])
		if err != nil || m.IsError() {
			return false
		}
	}
	return true
}

// ICMPv6TimeExceededAllowed reports whether a time exceeded message may be
// sent about orig: as ICMPv6ErrorAllowed, and not for a multicast
// destination (RFC 4443 section 2.4 (e.3)), which only packet too big may
// answer.
func ICMPv6TimeExceededAllowed(orig IPv6) bool {
	return !orig.Dst().IsMulticast() && ICMPv6ErrorAllowed(orig)
}

// ICMPv6PacketTooBigLen is the length of the packet BuildICMPv6PacketTooBig
// (or BuildICMPv6TimeExceeded) writes for orig: as much of orig as fits in
// 1280 bytes.
func ICMPv6PacketTooBigLen(orig IPv6) int {
	return min(IPv6MinMTU, IPv6HeaderLen+ICMPv6HeaderLen+len(orig.b))
}

// BuildICMPv6PacketTooBig writes at the start of b a whole IPv6 packet from
// src to orig's source: packet too big with mtu, carrying as much of orig as
// fits in the minimum MTU (RFC 4443 section 3.2). b needs
// ICMPv6PacketTooBigLen(orig) bytes and must not overlap orig. The caller
// checks ICMPv6ErrorAllowed first.
func BuildICMPv6PacketTooBig(b []byte, src netip.Addr, orig IPv6, mtu uint32) (IPv6, error) {
	return buildICMPv6Error(b, src, orig, ICMPv6PacketTooBig, 0, mtu)
}

// BuildICMPv6TimeExceeded is BuildICMPv6PacketTooBig for time exceeded,
// hop limit exceeded in transit (type 3 code 0, RFC 4443 section 3.3),
// sent when DecHopLimit refuses a packet. The caller checks
// ICMPv6TimeExceededAllowed first.
func BuildICMPv6TimeExceeded(b []byte, src netip.Addr, orig IPv6) (IPv6, error) {
	return buildICMPv6Error(b, src, orig, ICMPv6TimeExceeded, 0, 0)
}

func buildICMPv6Error(b []byte, src netip.Addr, orig IPv6, typ, code uint8, word uint32) (IPv6, error) {
	if !src.Is6() {
		return IPv6{}, fmt.Errorf("icmpv6: source %v must be IPv6", src)
	}
	n := ICMPv6PacketTooBigLen(orig)
	if len(b) < n {
		return IPv6{}, errBuf("icmpv6", len(b), n)
	}
	m := b[IPv6HeaderLen:n]
	m[0], m[1], m[2], m[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(m[4:8], word)
	copy(m[ICMPv6HeaderLen:], orig.b)
	s, d := src.As16(), [16]byte(orig.b[8:24])
	binary.BigEndian.PutUint16(m[2:4], checksum(m, pseudoSum16(&s, &d, ProtoICMPv6, len(m))))
	putIPv6(b, 0, 0, len(m), ProtoICMPv6, DefaultTTL, &s, &d)
	return IPv6{b: b[:n]}, nil
}

// PutICMPv6Echo writes an echo request (or reply, with typ) header with
// checksum between src and dst over the header and the payloadLen bytes of
// data already after it in b.
func PutICMPv6Echo(b []byte, src, dst netip.Addr, typ uint8, id, seq uint16, payloadLen int) (ICMPv6, error) {
	n := ICMPv6HeaderLen + payloadLen
	if payloadLen < 0 || len(b) < n {
		return ICMPv6{}, errBuf("icmpv6", len(b), n)
	}
	b[0], b[1], b[2], b[3] = typ, 0, 0, 0
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], seq)
	m := ICMPv6{b: b[:n]}
	m.SetChecksum(src, dst)
	return m, nil
}
