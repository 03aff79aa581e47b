package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// The Internet checksum (RFC 1071) is a ones'-complement sum of 16-bit
// words. sum adds whole 64-bit big-endian words with end-around carry,
// which is the same sum taken four words at a time; fold reduces it to 16
// bits. Chained calls must pass even-length pieces except the last.
func sum(b []byte, acc uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b[0:4])), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b[0:2])), c)
		b = b[2:]
	}
	if len(b) == 1 {
		acc, c = bits.Add64(acc, uint64(b[0])<<8, c)
	}
	acc, c = bits.Add64(acc, c, 0)
	return acc + c
}

// fold reduces a 64-bit partial sum to the 16-bit ones'-complement sum.
// 2^16 ≡ 1 modulo 0xffff, so adding the halves preserves the sum.
func fold(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// checksum is the Internet checksum of b: the complement of its sum.
func checksum(b []byte, initial uint64) uint16 { return ^fold(sum(b, initial)) }

// csumUpdate16 is RFC 1624 equation 3, HC' = ~(~HC + ~m + m'): the checksum
// after one 16-bit word changes from old to new, without reading the rest.
// It yields exactly what a full recomputation would.
func csumUpdate16(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// pseudoSum is the partial sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 768,
// RFC 8200 section 8.1). src and dst must be of one family.
func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint64 {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return uint64(binary.BigEndian.Uint32(s[:])) + uint64(binary.BigEndian.Uint32(d[:])) +
			uint64(proto) + uint64(length)
	}
	s, d := src.As16(), dst.As16()
	acc := sum(s[:], uint64(proto)+uint64(uint32(length)))
	return sum(d[:], acc)
}

// pseudoSum16 is pseudoSum for raw 16-byte IPv6 addresses.
func pseudoSum16(src, dst *[16]byte, proto uint8, length int) uint64 {
	acc := sum(src[:], uint64(proto)+uint64(uint32(length)))
	return sum(dst[:], acc)
}

// checksumSkip is the checksum of b computed as if the 16-bit field at the
// even offset off were zero, without writing to b.
func checksumSkip(b []byte, off int, initial uint64) uint16 {
	return ^fold(sum(b[off+2:], sum(b[:off], initial)))
}

// valid reports whether b, checksum field included, sums to all ones.
func valid(b []byte, initial uint64) bool { return fold(sum(b, initial)) == 0xffff }
