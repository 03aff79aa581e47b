package gso

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// The fuzz targets feed arbitrary bytes and offload metadata: nothing may
// panic, and whatever is accepted must satisfy the invariants the unit
// tests check on built input.

func FuzzSegment(f *testing.F) {
	for _, sp := range []spec{
		{mss: 100, payload: 1000, tcpOpts: tsOpt, seed: 1},
		{v6: true, mss: 77, payload: 500, seed: 2},
		{udp: true, mss: 64, payload: 300, ipOpts: []byte{1, 1, 1, 0}, seed: 3},
		{v6: true, udp: true, vlan: true, mss: 1, payload: 20, seed: 4},
	} {
		fr := sp.build(f)
		f.Add(bytes.Clone(fr.Data()), uint8(fr.GSO), fr.GSOSize, fr.HdrLen, uint8(4), uint8(14), uint8(0), uint16(0), uint16(4000))
	}
	f.Fuzz(func(t *testing.T, data []byte, gso uint8, mss, hdrLen uint16, prefix, from, max uint8, first, dstLen uint16) {
		if len(data) > frame.MaxLen {
			return
		}
		fr := frame.New()
		fr.SetData(frame.Headroom, copy(fr.Buf[frame.Headroom:], data))
		fr.Offload = frame.Offload{GSO: frame.GSOType(gso % 5), GSOSize: mss, HdrLen: hdrLen, NeedsCsum: true}
		orig := bytes.Clone(fr.Data())
		dst := make([]byte, int(dstLen)*4)
		l := Layout{Prefix: int(prefix % 32), From: int(from % 20), Max: int(max)}
		s, err := Segment(dst, fr, l, int(first))
		if !bytes.Equal(orig, fr.Data()) {
			t.Fatal("Segment changed the super-frame")
		}
		if err != nil {
			return
		}
		if s.N < 1 || s.First != int(first) || s.Next() > s.Total || s.Len > len(dst) || (l.Max > 0 && s.N > l.Max) {
			t.Fatalf("segments %+v for dst %d", s, len(dst))
		}
		e, _ := packet.ParseEthernet(orig)
		l3 := e.HeaderLen()
		var payload []byte
		for i, p := range pieces(dst[:s.Len], s, l.Prefix) {
			if !bytes.Equal(p[:l3-l.From], orig[l.From:l3]) {
				t.Fatalf("segment %d: link header", i)
			}
			l4, proto, _, _ := checkPacket(t, p[l3-l.From:])
			hl := 8
			if proto == packet.ProtoTCP {
				hl = int(l4[12]>>4) * 4
			}
			if len(l4)-hl > int(mss) {
				t.Fatalf("segment %d: payload %d exceeds the mss %d", i, len(l4)-hl, mss)
			}
			payload = append(payload, l4[hl:]...)
		}
		// The payload written is the super-frame's, from segment first on.
		hdr := s.Stride - l.Prefix - int(mss) + l.From
		start := hdr + int(first)*int(mss)
		if start+len(payload) > len(orig) || !bytes.Equal(payload, orig[start:start+len(payload)]) {
			t.Fatal("segment payloads are not the super-frame's")
		}
		// SegmentFrames agrees with Segment.
		if first == 0 && s.Total <= 64 {
			out := frame.Batch(s.Total)
			n, err := SegmentFrames(fr, out, l.From)
			if err != nil || n != s.Total {
				t.Fatalf("SegmentFrames: %d, %v", n, err)
			}
			for i, p := range pieces(dst[:s.Len], s, l.Prefix) {
				if !bytes.Equal(out[i].Data(), p) {
					t.Fatalf("SegmentFrames: frame %d differs", i)
				}
			}
		}
	})
}

func FuzzChecksum(f *testing.F) {
	fr := spec{mss: 1448, payload: 100, seed: 5}.build(f)
	f.Add(bytes.Clone(fr.Data()), fr.CsumStart, fr.CsumOffset)
	f.Add([]byte{0xff, 0xff, 0, 0}, uint16(0), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, start, off uint16) {
		if len(data) > frame.MaxLen {
			return
		}
		fr := frame.New()
		fr.SetData(frame.Headroom, copy(fr.Buf[frame.Headroom:], data))
		fr.NeedsCsum, fr.CsumStart, fr.CsumOffset = true, start, off
		if int(start)+int(off)+2 > len(data) || off%2 != 0 {
			if Checksum(fr) == nil {
				t.Fatal("bad offsets accepted")
			}
			return
		}
		p := uint32(binary.BigEndian.Uint16(data[int(start)+int(off):])) // the pseudo-header sum
		if err := Checksum(fr); err != nil {
			t.Fatal(err)
		}
		region := fr.Data()[start:]
		if s := refSum(region, p); s != 0xffff {
			t.Fatalf("sum with the pseudo-header %#04x", s)
		}
		if bytes.Equal(fr.Data()[start+off:start+off+2], []byte{0, 0}) {
			t.Fatal("checksum 0 stored")
		}
	})
}

// fuzzCoalescer is reused across runs: its 64 KiB frames would otherwise
// be most of a run's time.
var fuzzCoalescer = NewCoalescer(3)

// FuzzCoalescerAdd decodes a run of packets ([port byte][length uint16]
// [bytes]) and feeds them to a small Coalescer.
func FuzzCoalescerAdd(f *testing.F) {
	enc := func(in []input) []byte {
		var b []byte
		for _, p := range in {
			b = append(b, byte(p.port))
			b = binary.BigEndian.AppendUint16(b, uint16(len(p.pkt)))
			b = append(b, p.pkt...)
		}
		return b
	}
	var in []input
	for i, sp := range []spec{
		{mss: 200, payload: 1000, tcpOpts: tsOpt, seed: 1},
		{v6: true, mss: 150, payload: 600, seed: 2},
		{mss: 200, payload: 400, seq: 1000, seed: 1},
		{udp: true, mss: 100, payload: 200, seed: 3},
	} {
		for _, p := range ipPackets(f, sp) {
			in = append(in, input{uint32(i % 2), p})
		}
	}
	f.Add(enc(in), false)
	f.Add(enc(in[:7]), true)
	f.Fuzz(func(t *testing.T, b []byte, trust bool) {
		var in []input
		for len(b) >= 3 {
			port, n := uint32(b[0]%4), int(binary.BigEndian.Uint16(b[1:3]))
			b = b[3:]
			n = min(n, len(b))
			in = append(in, input{port, b[:n]})
			b = b[n:]
		}
		c := fuzzCoalescer
		c.Reset()
		c.TrustChecksums = trust
		// Gathering or copying gives the same frames (feed flattens them).
		c.Gather = len(in)%2 == 1
		out := feed(t, c, in)
		if !trust {
			// With trust a corrupt segment may be merged: its bytes are
			// kept, but its checksum comes out recomputed.
			checkCoalesced(t, in, out)
		}
	})
}
