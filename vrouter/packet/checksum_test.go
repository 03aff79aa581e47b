package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refSum is RFC 1071 taken literally: 16-bit words, end-around carry.
func refSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestChecksumMatchesRFC1071(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if n%7 == 0 {
			for i := range b {
				b[i] = 0xff // long runs of carries
			}
		}
		if got, want := fold(sum(b, 0)), refSum(b); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d: sum %#04x, want %#04x", n, got, want)
		}
	}
}

// The RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
func TestChecksumRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := fold(sum(b, 0)); got != 0xddf2 {
		t.Fatalf("sum %#04x, want 0xddf2", got)
	}
}

func TestChecksumUpdateMatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100000; i++ {
		b := make([]byte, 20)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		b[0] = 0x45 // never all zero, like every header this is used on
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], checksum(b, 0))
		w := 2 * r.IntN(10)
		if w == 10 {
			continue
		}
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(r.Uint32())
		if i%5 == 0 {
			nw = ^old
		}
		binary.BigEndian.PutUint16(b[w:], nw)
		inc := csumUpdate16(binary.BigEndian.Uint16(b[10:]), old, nw)
		full := checksumSkip(b, 10, 0)
		if inc != full {
			t.Fatalf("%x: word %d %#04x->%#04x: incremental %#04x, full %#04x", b, w, old, nw, inc, full)
		}
	}
}
