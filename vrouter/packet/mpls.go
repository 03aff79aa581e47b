package packet

import (
	"encoding/binary"
)

// MPLS sizes and limits.
const (
	MPLSEntryLen = 4
	MaxMPLSLabel = 1<<20 - 1
	// MaxMPLSDepth bounds the label stack walk; the vRouter itself pushes
	// one label.
	MaxMPLSDepth = 8
)

// MPLSEntry is one label stack entry (RFC 3032): label (20 bits), traffic
// class (3), bottom of stack (1), TTL (8), as a host-order value.
type MPLSEntry uint32

// NewMPLSEntry packs an entry; label is masked to 20 bits and tc to 3 (the
// control API validates ranges before they get here).
func NewMPLSEntry(label uint32, tc uint8, bottom bool, ttl uint8) MPLSEntry {
	e := (label&MaxMPLSLabel)<<12 | uint32(tc&7)<<9 | uint32(ttl)
	if bottom {
		e |= 1 << 8
	}
	return MPLSEntry(e)
}

// Label is the 20-bit label.
func (e MPLSEntry) Label() uint32 { return uint32(e) >> 12 }

// TC is the 3-bit traffic class.
func (e MPLSEntry) TC() uint8 { return uint8(e>>9) & 7 }

// Bottom reports the S bit: the last entry of the stack.
func (e MPLSEntry) Bottom() bool { return e&(1<<8) != 0 }

// TTL is the entry's time to live.
func (e MPLSEntry) TTL() uint8 { return uint8(e) }

// MPLS is a view of an MPLS label stack and the payload after it.
type MPLS struct {
	b     []byte
	depth int
}

// ParseMPLS walks the stack in b to the entry with the bottom-of-stack bit.
func ParseMPLS(b []byte) (MPLS, error) {
	for i := 0; ; i++ {
		off := i * MPLSEntryLen
		if i == MaxMPLSDepth {
			return MPLS{}, errField("mpls", "label stack", off, i+1, MaxMPLSDepth, "depth %d exceeds limit %d")
		}
		if len(b)-off < MPLSEntryLen {
			return MPLS{}, errShort("mpls", "label stack entry", off, len(b)-off, MPLSEntryLen)
		}
		if b[off+2]&1 != 0 {
			return MPLS{b: b, depth: i + 1}, nil
		}
	}
}

// Bytes is the stack and payload.
func (m MPLS) Bytes() []byte { return m.b }

// Depth is the number of entries, at least 1.
func (m MPLS) Depth() int { return m.depth }

// Entry is the i-th entry from the top; 0 when i is out of range.
func (m MPLS) Entry(i int) MPLSEntry {
	if i < 0 || i >= m.depth {
		return 0
	}
	return MPLSEntry(binary.BigEndian.Uint32(m.b[i*MPLSEntryLen:]))
}

// Top is the first (outermost) entry.
func (m MPLS) Top() MPLSEntry { return MPLSEntry(binary.BigEndian.Uint32(m.b[0:4])) }

// Payload is what follows the bottom entry.
func (m MPLS) Payload() []byte { return m.b[m.depth*MPLSEntryLen:] }

// PutMPLS writes one entry at the start of b and returns 4.
func PutMPLS(b []byte, e MPLSEntry) (int, error) {
	if len(b) < MPLSEntryLen {
		return 0, errBuf("mpls", len(b), MPLSEntryLen)
	}
	binary.BigEndian.PutUint32(b, uint32(e))
	return MPLSEntryLen, nil
}
