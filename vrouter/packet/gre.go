package packet

import (
	"encoding/binary"
)

// GRE sizes and flags (RFC 2784, keys and sequence numbers RFC 2890).
const (
	GREHeaderLen = 4 // without optional fields
	GREFlagC     = 0x8000
	GREFlagR     = 0x4000 // routing present (RFC 1701, deprecated)
	GREFlagK     = 0x2000
	GREFlagS     = 0x1000
	GREFlagSSR   = 0x0800 // strict source route (RFC 1701, deprecated)
	greVersion   = 0x0007
)

// GRE is a view of a GRE header, its optional fields and the payload.
type GRE struct{ b []byte }

// ParseGRE checks version 0, the absence of the RFC 1701 routing bits (a
// receiver must discard those, RFC 2784 section 2.3) and room for the
// optional checksum, key and sequence fields the flags announce.
func ParseGRE(b []byte) (GRE, error) {
	if len(b) < GREHeaderLen {
		return GRE{}, errShort("gre", "header", 0, len(b), GREHeaderLen)
	}
	f := binary.BigEndian.Uint16(b[0:2])
	if v := f & greVersion; v != 0 {
		return GRE{}, errField("gre", "version", 1, int(v), 0, fmtWant)
	}
	if f&(GREFlagR|GREFlagSSR) != 0 {
		return GRE{}, errField("gre", "flags", 0, int(f), GREFlagR|GREFlagSSR, fmtReserved)
	}
	g := GRE{b: b}
	if hl := g.HeaderLen(); hl > len(b) {
		return GRE{}, errShort("gre", "optional fields", GREHeaderLen, len(b), hl)
	}
	return g, nil
}

// Bytes is the header and payload.
func (g GRE) Bytes() []byte { return g.b }

// Flags is the first 16 bits: flags and version.
func (g GRE) Flags() uint16 { return binary.BigEndian.Uint16(g.b[0:2]) }

// Protocol is the payload's EtherType (EtherTypeMPLS for MPLSoGRE).
func (g GRE) Protocol() uint16 { return binary.BigEndian.Uint16(g.b[2:4]) }

// HeaderLen is 4 plus 4 for each of checksum, key and sequence present.
func (g GRE) HeaderLen() int {
	f := g.Flags()
	n := GREHeaderLen
	if f&GREFlagC != 0 {
		n += 4
	}
	if f&GREFlagK != 0 {
		n += 4
	}
	if f&GREFlagS != 0 {
		n += 4
	}
	return n
}

// Key is the key field, if present.
func (g GRE) Key() (uint32, bool) {
	f := g.Flags()
	if f&GREFlagK == 0 {
		return 0, false
	}
	off := GREHeaderLen
	if f&GREFlagC != 0 {
		off += 4
	}
	return binary.BigEndian.Uint32(g.b[off : off+4]), true
}

// Seq is the sequence number, if present.
func (g GRE) Seq() (uint32, bool) {
	f := g.Flags()
	if f&GREFlagS == 0 {
		return 0, false
	}
	off := GREHeaderLen
	if f&GREFlagC != 0 {
		off += 4
	}
	if f&GREFlagK != 0 {
		off += 4
	}
	return binary.BigEndian.Uint32(g.b[off : off+4]), true
}

// ChecksumValid verifies the checksum over header and payload when the C
// flag is set; without it there is nothing to verify.
func (g GRE) ChecksumValid() bool {
	if g.Flags()&GREFlagC == 0 {
		return true
	}
	return valid(g.b, 0)
}

// Payload is what follows the header.
func (g GRE) Payload() []byte { return g.b[g.HeaderLen():] }

// PutGRE writes a 4-byte header without optional fields at the start of b
// and returns 4.
func PutGRE(b []byte, proto uint16) (int, error) {
	if len(b) < GREHeaderLen {
		return 0, errBuf("gre", len(b), GREHeaderLen)
	}
	putGRE(b, proto)
	return GREHeaderLen, nil
}

func putGRE(b []byte, proto uint16) {
	binary.BigEndian.PutUint16(b[0:2], 0)
	binary.BigEndian.PutUint16(b[2:4], proto)
}
