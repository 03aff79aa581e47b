package packet

import (
	"encoding/binary"
	"net/netip"
)

// TCPMinHeaderLen is the length of a TCP header without options.
const TCPMinHeaderLen = 20

// TCP flags (the low byte of the flags field).
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// tcpOptMSS is the Maximum Segment Size option kind (RFC 9293).
const tcpOptMSS = 2

// TCP is a view of a TCP segment: header, options and payload.
type TCP struct{ b []byte }

// ParseTCP checks the data offset against b (the IP payload).
func ParseTCP(b []byte) (TCP, error) {
	if len(b) < TCPMinHeaderLen {
		return TCP{}, errShort("tcp", "header", 0, len(b), TCPMinHeaderLen)
	}
	hl := int(b[12]>>4) * 4
	if hl < TCPMinHeaderLen {
		return TCP{}, errField("tcp", "data offset", 12, hl, TCPMinHeaderLen, fmtBelow)
	}
	if hl > len(b) {
		return TCP{}, errField("tcp", "data offset", 12, hl, len(b), fmtExceeds)
	}
	return TCP{b: b}, nil
}

// Bytes is the segment.
func (t TCP) Bytes() []byte { return t.b }

// SrcPort is the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t.b[0:2]) }

// DstPort is the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t.b[2:4]) }

// Seq is the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t.b[4:8]) }

// Ack is the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t.b[8:12]) }

// HeaderLen is the data offset in bytes, 20 to 60.
func (t TCP) HeaderLen() int { return int(t.b[12]>>4) * 4 }

// Flags is the flags byte (TCPFlagSYN, ...).
func (t TCP) Flags() uint8 { return t.b[13] }

// Window is the receive window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t.b[14:16]) }

// Checksum is the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t.b[16:18]) }

// Options are the header options, possibly empty.
func (t TCP) Options() []byte { return t.b[TCPMinHeaderLen:t.HeaderLen()] }

// Payload is the data after the header.
func (t TCP) Payload() []byte { return t.b[t.HeaderLen():] }

// ChecksumValid verifies the checksum under the pseudo-header of src and
// dst (one family); the segment must be the whole IP payload.
func (t TCP) ChecksumValid(src, dst netip.Addr) bool {
	return valid(t.b, pseudoSum(src, dst, ProtoTCP, len(t.b)))
}

// ComputeChecksum is the checksum the segment should carry.
func (t TCP) ComputeChecksum(src, dst netip.Addr) uint16 {
	return checksumSkip(t.b, 16, pseudoSum(src, dst, ProtoTCP, len(t.b)))
}

// SetChecksum writes the computed checksum.
func (t TCP) SetChecksum(src, dst netip.Addr) {
	binary.BigEndian.PutUint16(t.b[16:18], t.ComputeChecksum(src, dst))
}

// mssOffset is the offset of the MSS option's value in the segment, or -1.
// A malformed option list ends the search rather than failing: a segment
// whose options cannot be read is forwarded as it is.
func (t TCP) mssOffset() int {
	opts := t.Options()
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of option list
			return -1
		case 1: // no-operation
			i++
			continue
		}
		if i+1 >= len(opts) {
			return -1
		}
		l := int(opts[i+1])
		if l < 2 || l > len(opts)-i {
			return -1
		}
		if opts[i] == tcpOptMSS {
			if l != 4 {
				return -1
			}
			return TCPMinHeaderLen + i + 2
		}
		i += l
	}
	return -1
}

// MSS is the Maximum Segment Size option's value, if the segment has one
// (normally only SYN segments do).
func (t TCP) MSS() (uint16, bool) {
	off := t.mssOffset()
	if off < 0 {
		return 0, false
	}
	return binary.BigEndian.Uint16(t.b[off : off+2]), true
}

// ClampMSS lowers the MSS option to limit if it is larger, patching the
// checksum incrementally (RFC 1624), and reports whether it changed the
// segment. The caller applies it to SYN segments crossing a tunnel whose
// MTU is below what the endpoints assume. A segment without the option is
// left alone: its implied MSS (536 over IPv4, 1220 over IPv6) is already
// small.
func (t TCP) ClampMSS(limit uint16) bool {
	off := t.mssOffset()
	if off < 0 {
		return false
	}
	old := binary.BigEndian.Uint16(t.b[off : off+2])
	if old <= limit {
		return false
	}
	binary.BigEndian.PutUint16(t.b[off:off+2], limit)
	// The value sits at an even or odd offset; at an odd one its bytes
	// straddle two checksum words, which adds to the sum byte-swapped.
	o, n := old, limit
	if off%2 == 1 {
		o, n = o>>8|o<<8, n>>8|n<<8
	}
	binary.BigEndian.PutUint16(t.b[16:18], csumUpdate16(t.Checksum(), o, n))
	return true
}

// TCPHeader holds the fields PutTCPHeader writes.
type TCPHeader struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Options          []byte // a multiple of 4 bytes, at most 40
}

// PutTCPHeader writes h at the start of b with a zero checksum and returns
// the header length; the caller sets the checksum once the payload is in
// place (TCP.SetChecksum).
func PutTCPHeader(b []byte, h *TCPHeader) (int, error) {
	if len(h.Options)%4 != 0 || len(h.Options) > 40 {
		return 0, errField("tcp", "options", TCPMinHeaderLen, len(h.Options), 40, "length %d not a multiple of 4 up to %d")
	}
	hl := TCPMinHeaderLen + len(h.Options)
	if len(b) < hl {
		return 0, errBuf("tcp", len(b), hl)
	}
	binary.BigEndian.PutUint16(b[0:2], h.SrcPort)
	binary.BigEndian.PutUint16(b[2:4], h.DstPort)
	binary.BigEndian.PutUint32(b[4:8], h.Seq)
	binary.BigEndian.PutUint32(b[8:12], h.Ack)
	b[12] = uint8(hl/4) << 4
	b[13] = h.Flags
	binary.BigEndian.PutUint16(b[14:16], h.Window)
	b[16], b[17], b[18], b[19] = 0, 0, 0, 0
	copy(b[TCPMinHeaderLen:hl], h.Options)
	return hl, nil
}
