package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ICMPv4 types and codes the vRouter handles.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DestUnreach    = 3
	ICMPv4Redirect       = 5
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
	ICMPv4CodeFragNeeded = 4 // with ICMPv4DestUnreach (RFC 1191)
)

// ICMPv4HeaderLen is the length of the common ICMP header: type, code,
// checksum and the 4-byte type-specific word.
const ICMPv4HeaderLen = 8

// ICMPv4 is a view of an ICMP message (RFC 792): header and body.
type ICMPv4 struct{ b []byte }

// ParseICMPv4 checks that b (the IP payload) holds the 8-byte header, which
// every ICMP message has.
func ParseICMPv4(b []byte) (ICMPv4, error) {
	if len(b) < ICMPv4HeaderLen {
		return ICMPv4{}, errShort("icmpv4", "header", 0, len(b), ICMPv4HeaderLen)
	}
	return ICMPv4{b: b}, nil
}

// Bytes is the message.
func (m ICMPv4) Bytes() []byte { return m.b }

// Type is the message type.
func (m ICMPv4) Type() uint8 { return m.b[0] }

// Code is the message code.
func (m ICMPv4) Code() uint8 { return m.b[1] }

// Checksum is the checksum field.
func (m ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(m.b[2:4]) }

// IsEcho reports an echo request or reply, whose ID and Seq are meaningful.
func (m ICMPv4) IsEcho() bool { return m.b[0] == ICMPv4Echo || m.b[0] == ICMPv4EchoReply }

// IsError reports an error message (destination unreachable, redirect,
// time exceeded, parameter problem, source quench), which carries the
// header of the datagram that caused it.
func (m ICMPv4) IsError() bool {
	switch m.b[0] {
	case ICMPv4DestUnreach, 4, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return true
	}
	return false
}

// ID is the echo identifier.
func (m ICMPv4) ID() uint16 { return binary.BigEndian.Uint16(m.b[4:6]) }

// Seq is the echo sequence number.
func (m ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(m.b[6:8]) }

// NextHopMTU is the MTU of a fragmentation-needed message (RFC 1191).
func (m ICMPv4) NextHopMTU() uint16 { return binary.BigEndian.Uint16(m.b[6:8]) }

// Body is what follows the 8-byte header: echo data, or the start of the
// datagram an error message is about.
func (m ICMPv4) Body() []byte { return m.b[ICMPv4HeaderLen:] }

// ChecksumValid verifies the checksum over the whole message.
func (m ICMPv4) ChecksumValid() bool { return valid(m.b, 0) }

// ComputeChecksum is the checksum the message should carry.
func (m ICMPv4) ComputeChecksum() uint16 { return checksumSkip(m.b, 2, 0) }

// SetChecksum writes the computed checksum.
func (m ICMPv4) SetChecksum() { binary.BigEndian.PutUint16(m.b[2:4], m.ComputeChecksum()) }

// ICMPv4ErrorAllowed reports whether a router may answer orig with an ICMP
// error (RFC 1812 section 4.3.2.7): not about an ICMP error, a non-first
// fragment, a broadcast or multicast destination, or a source that does not
// name one host.
func ICMPv4ErrorAllowed(orig IPv4) bool {
	if orig.FragmentOffset() != 0 {
		return false
	}
	src, dst := orig.Src(), orig.Dst()
	if dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	if src.IsUnspecified() || src.IsMulticast() || src.IsLoopback() || src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	if orig.Protocol() == ProtoICMPv4 {
		m, err := ParseICMPv4(orig.Payload())
		if err != nil || m.IsError() {
			return false
		}
	}
	return true
}

// ICMPv4ErrorLen is the length of the packet BuildICMPv4FragNeeded and
// BuildICMPv4TimeExceeded write for orig: IPv4 header, ICMP header, orig's
// header and up to 8 bytes of its payload.
func ICMPv4ErrorLen(orig IPv4) int {
	return IPv4MinHeaderLen + ICMPv4HeaderLen + orig.HeaderLen() + min(8, len(orig.Payload()))
}

// BuildICMPv4FragNeeded writes at the start of b a whole IPv4 packet from
// src to orig's source: destination unreachable, fragmentation needed
// (RFC 1191) with next-hop MTU mtu, carrying orig's header and the first 8
// bytes of its payload. b needs ICMPv4ErrorLen(orig) bytes. The caller
// checks ICMPv4ErrorAllowed first; b must not overlap orig.
func BuildICMPv4FragNeeded(b []byte, src netip.Addr, orig IPv4, mtu uint16) (IPv4, error) {
	return buildICMPv4Error(b, src, orig, ICMPv4DestUnreach, ICMPv4CodeFragNeeded, uint32(mtu))
}

// BuildICMPv4TimeExceeded is BuildICMPv4FragNeeded for time exceeded in
// transit (type 11 code 0), sent when DecTTL refuses a packet.
func BuildICMPv4TimeExceeded(b []byte, src netip.Addr, orig IPv4) (IPv4, error) {
	return buildICMPv4Error(b, src, orig, ICMPv4TimeExceeded, 0, 0)
}

func buildICMPv4Error(b []byte, src netip.Addr, orig IPv4, typ, code uint8, rest uint32) (IPv4, error) {
	if !src.Is4() {
		return IPv4{}, fmt.Errorf("icmpv4: source %v must be IPv4", src)
	}
	n := ICMPv4ErrorLen(orig)
	if len(b) < n {
		return IPv4{}, errBuf("icmpv4", len(b), n)
	}
	m := b[IPv4MinHeaderLen:n]
	m[0], m[1], m[2], m[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(m[4:8], rest)
	copy(m[ICMPv4HeaderLen:], orig.b)
	binary.BigEndian.PutUint16(m[2:4], checksum(m, 0))
	putIPv4(b, IPv4MinHeaderLen, 0, n, 0, true, DefaultTTL, ProtoICMPv4, src.As4(), [4]byte(orig.b[12:16]))
	return IPv4{b: b[:n]}, nil
}

// PutICMPv4Echo writes an echo request (or reply, with typ) header with
// checksum over the header and the data already after it in b; payloadLen
// is the length of that data.
func PutICMPv4Echo(b []byte, typ uint8, id, seq uint16, payloadLen int) (ICMPv4, error) {
	n := ICMPv4HeaderLen + payloadLen
	if payloadLen < 0 || len(b) < n {
		return ICMPv4{}, errBuf("icmpv4", len(b), n)
	}
	b[0], b[1], b[2], b[3] = typ, 0, 0, 0
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], seq)
	binary.BigEndian.PutUint16(b[2:4], checksum(b[:n], 0))
	return ICMPv4{b: b[:n]}, nil
}
