package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// UDP header size and the tunnel ports.
const (
	UDPHeaderLen = 8
	MPLSoUDPPort = 6635 // RFC 7510
	VXLANPort    = 4789 // RFC 7348
)

// UDP is a view of a UDP datagram: header and Length-8 bytes of payload.
type UDP struct{ b []byte }

// ParseUDP checks the Length field against b (the IP payload).
func ParseUDP(b []byte) (UDP, error) {
	if len(b) < UDPHeaderLen {
		return UDP{}, errShort("udp", "header", 0, len(b), UDPHeaderLen)
	}
	l := int(binary.BigEndian.Uint16(b[4:6]))
	if l < UDPHeaderLen {
		return UDP{}, errField("udp", "length", 4, l, UDPHeaderLen, fmtBelow)
	}
	if l > len(b) {
		return UDP{}, errField("udp", "length", 4, l, len(b), fmtExceeds)
	}
	return UDP{b: b[:l]}, nil
}

// Bytes is the datagram, Length bytes.
func (u UDP) Bytes() []byte { return u.b }

// SrcPort is the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u.b[0:2]) }

// DstPort is the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u.b[2:4]) }

// Len is the Length field, len(Bytes()).
func (u UDP) Len() int { return len(u.b) }

// Checksum is the checksum field; 0 over IPv4 means none was sent.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u.b[6:8]) }

// Payload is the data after the header.
func (u UDP) Payload() []byte { return u.b[UDPHeaderLen:] }

// ChecksumValid verifies the checksum under the pseudo-header of src and
// dst (one family). A zero checksum over IPv4 means none and is valid; over
// IPv6 it is valid only where the receiver allows it (RFC 6935), which the
// caller decides, so here it is invalid.
func (u UDP) ChecksumValid(src, dst netip.Addr) bool {
	if u.Checksum() == 0 {
		return src.Is4()
	}
	return valid(u.b, pseudoSum(src, dst, ProtoUDP, len(u.b)))
}

// ComputeChecksum is the checksum the datagram should carry between src and
// dst; a computed 0 is sent as 0xffff (RFC 768).
func (u UDP) ComputeChecksum(src, dst netip.Addr) uint16 {
	c := checksumSkip(u.b, 6, pseudoSum(src, dst, ProtoUDP, len(u.b)))
	if c == 0 {
		c = 0xffff
	}
	return c
}

// SetChecksum writes the computed checksum.
func (u UDP) SetChecksum(src, dst netip.Addr) {
	binary.BigEndian.PutUint16(u.b[6:8], u.ComputeChecksum(src, dst))
}

// PutUDP writes a header with a zero checksum at the start of b for a
// payload of payloadLen bytes, which must already follow it in b.
func PutUDP(b []byte, srcPort, dstPort uint16, payloadLen int) (UDP, error) {
	l := UDPHeaderLen + payloadLen
	if payloadLen < 0 || l > 0xffff {
		return UDP{}, fmt.Errorf("udp: length %d out of range", l)
	}
	if len(b) < l {
		return UDP{}, errBuf("udp", len(b), l)
	}
	putUDP(b, srcPort, dstPort, l)
	return UDP{b: b[:l]}, nil
}

func putUDP(b []byte, srcPort, dstPort uint16, length int) {
	_ = b[7]
	binary.BigEndian.PutUint16(b[0:2], srcPort)
	binary.BigEndian.PutUint16(b[2:4], dstPort)
	binary.BigEndian.PutUint16(b[4:6], uint16(length))
	b[6], b[7] = 0, 0
}
