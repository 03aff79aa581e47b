package gso

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/weftnet/weft/vrouter/frame"
)

// The Internet checksum (RFC 1071) is a ones'-complement sum of 16-bit
// words. Two properties make it fast in Go:
//
//   - it is byte-order independent (RFC 1071 section 2(B)): summing the
//     words byte-swapped gives the byte-swapped sum, so sum loads
//     little-endian words (no BSWAP on amd64/arm64) and fold swaps the
//     16-bit result back once;
//   - 2^64 ≡ 1 (mod 2^16-1), so 64-bit additions with end-around carry
//     sum four words at a time, and the carries are folded in at the end.
//
// sum keeps two independent carry chains (even and odd words of each
// 64-byte block) so that the CPU can retire two ADCs per cycle; one chain
// is bound by the carry flag's latency. It measured 1.7-2x the single
// big-endian chain of package packet (BenchmarkChecksum).
//
// All partial sums in this package are in that little-endian word order;
// only fold's result is a network-order uint16. Chained calls must pass
// even-length pieces except the last.
func sum(b []byte, acc uint64) uint64 {
	var x, y, cx, cy uint64
	n := len(b) &^ 63
	for i := 0; i < n; i += 64 {
		q := b[i : i+64 : i+64]
		x, cx = bits.Add64(x, binary.LittleEndian.Uint64(q[0:8]), cx)
		x, cx = bits.Add64(x, binary.LittleEndian.Uint64(q[16:24]), cx)
		x, cx = bits.Add64(x, binary.LittleEndian.Uint64(q[32:40]), cx)
		x, cx = bits.Add64(x, binary.LittleEndian.Uint64(q[48:56]), cx)
		y, cy = bits.Add64(y, binary.LittleEndian.Uint64(q[8:16]), cy)
		y, cy = bits.Add64(y, binary.LittleEndian.Uint64(q[24:32]), cy)
		y, cy = bits.Add64(y, binary.LittleEndian.Uint64(q[40:48]), cy)
		y, cy = bits.Add64(y, binary.LittleEndian.Uint64(q[56:64]), cy)
	}
	b = b[n:]
	for len(b) >= 8 {
		x, cx = bits.Add64(x, binary.LittleEndian.Uint64(b[:8]), cx)
		b = b[8:]
	}
	if len(b) >= 4 {
		x, cx = bits.Add64(x, uint64(binary.LittleEndian.Uint32(b[:4])), cx)
		b = b[4:]
	}
	if len(b) >= 2 {
		x, cx = bits.Add64(x, uint64(binary.LittleEndian.Uint16(b[:2])), cx)
		b = b[2:]
	}
	if len(b) == 1 {
		// A trailing byte is the high half of a big-endian word padded
		// with zero: the low half of a little-endian one.
		x, cx = bits.Add64(x, uint64(b[0]), cx)
	}
	x, cx = bits.Add64(x, y, cx)
	x, cy = bits.Add64(x, acc, cy)
	// cx+cy is at most 2, so the last end-around carry cannot carry again.
	x, c := bits.Add64(x, cx, cy)
	return x + c
}

// add adds v to the partial sum acc with end-around carry.
func add(acc, v uint64) uint64 {
	s, c := bits.Add64(acc, v, 0)
	return s + c
}

// word is the 16-bit network-order value v as a term of a partial sum.
func word(v uint16) uint64 { return uint64(bits.ReverseBytes16(v)) }

// fold reduces a partial sum to the 16-bit ones'-complement sum, in network
// order.
func fold(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return bits.ReverseBytes16(uint16(acc))
}

// addrSum is the partial sum of the addresses of the TCP/UDP pseudo-header
// (RFC 768, RFC 8200 section 8.1): addrs is source and destination as they
// sit in the IP header (ipv4Addrs, ipv6Addrs). It is taken once per packet
// or super-frame, and pseudo adds the rest per segment.
func addrSum(addrs []byte) uint64 { return sum(addrs, 0) }

// pseudo is the partial sum of the pseudo-header with addresses summing to
// addrs, for a transport length below 64 KiB.
func pseudo(addrs uint64, proto uint8, length int) uint64 {
	return add(addrs, word(uint16(proto))+word(uint16(length)))
}

// Checksum completes a frame with a partial checksum (NeedsCsum) in place,
// as a device does for VIRTIO_NET_HDR_F_NEEDS_CSUM: the field at
// CsumStart+CsumOffset holds the pseudo-header sum; the checksum over
// CsumStart to the end of the frame data is stored there, then NeedsCsum is
// cleared and CsumValid set. A result of 0 is stored as 0xffff, which is the
// same for TCP and required for UDP (RFC 768), as the kernel does. A frame
// without NeedsCsum is left alone; a super-frame is an error (Segment
// computes each segment's checksum).
func Checksum(f *frame.Frame) error {
	if f == nil {
		return errors.New("gso: checksum: nil frame")
	}
	if !f.NeedsCsum {
		return nil
	}
	if f.GSO != frame.GSONone {
		return fmt.Errorf("gso: checksum: frame is a %s super-frame, segment it instead", f.GSO)
	}
	data, err := frameData(f)
	if err != nil {
		return fmt.Errorf("gso: checksum: %w", err)
	}
	start, off := int(f.CsumStart), int(f.CsumOffset)
	if off%2 != 0 {
		// An odd offset would straddle two words of the sum; no protocol
		// puts its checksum there.
		return fmt.Errorf("gso: checksum: csum offset %d is odd", off)
	}
	if start+off+2 > len(data) {
		return fmt.Errorf("gso: checksum: field at csum start %d + offset %d exceeds %d bytes of frame", start, off, len(data))
	}
	region := data[start:]
	c := ^fold(sum(region, 0))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(region[off:off+2], c)
	f.NeedsCsum, f.CsumValid = false, true
	return nil
}

// frameData is f.Data() after checking the bounds Data relies on, so that a
// corrupt Frame is an error rather than a panic.
func frameData(f *frame.Frame) ([]byte, error) {
	if f.Off < 0 || f.Len < 0 || f.Off > len(f.Buf) || f.Len > len(f.Buf)-f.Off {
		return nil, fmt.Errorf("frame data [%d:+%d] outside its %d-byte buffer", f.Off, f.Len, len(f.Buf))
	}
	return f.Data(), nil
}
