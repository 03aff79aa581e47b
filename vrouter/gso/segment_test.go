package gso

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// tsOpt is NOP, NOP, Timestamps: what Linux puts on every data segment.
var tsOpt = []byte{1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78}

func segmentSpecs() []spec {
	var specs []spec
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			base := spec{v6: v6, udp: udp, mss: 1448, seq: 0xfffff000, id: 0xfff0, seed: 1}
			max := 65535 - 60 // within the IP length and a frame for every variant
			if v6 {
				max = frame.MaxLen - 14 - 40 - 8 - 40
			}
			for _, p := range []spec{
				{payload: max},
				{payload: 1448 * 45},    // a multiple: the last segment is whole
				{payload: 1448*3 + 1},   // a 1-byte last segment
				{payload: 1000},         // below the MSS: one segment
				{payload: 0},            // headers only
				{payload: 3001, mss: 1}, // the smallest MSS
				{payload: 30000, mss: 1447},
				{payload: 20000, mss: 536, vlan: true},
				{payload: 20000, tcpOpts: tsOpt[:12]},
				{payload: 20000, ipOpts: []byte{1, 1, 1, 0}},
				{payload: 20000, flags: packet.TCPFlagACK | packet.TCPFlagPSH | packet.TCPFlagFIN | packet.TCPFlagCWR | packet.TCPFlagECE},
			} {
				s := base
				s.payload, s.vlan, s.flags = p.payload, p.vlan, p.flags
				if p.mss != 0 {
					s.mss = p.mss
				}
				if !udp {
					s.tcpOpts = p.tcpOpts
				}
				if !v6 {
					s.ipOpts = p.ipOpts
				} else if p.ipOpts != nil {
					continue
				}
				if udp && (p.flags != 0 || p.tcpOpts != nil) {
					continue
				}
				specs = append(specs, s)
			}
		}
	}
	return specs
}

func TestSegmentRoundTrip(t *testing.T) {
	for _, sp := range segmentSpecs() {
		t.Run(sp.String(), func(t *testing.T) {
			f := sp.build(t)
			orig := bytes.Clone(f.Data())
			off := f.Offload
			l3 := 14
			if sp.vlan {
				l3 = 18
			}
			for _, l := range []Layout{{Prefix: 4, From: l3}, {Prefix: 8, From: 0}, {From: l3}} {
				dst := bytes.Repeat([]byte{0xee}, 4*frame.BufSize)
				s, err := Segment(dst, f, l, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(f.Data(), orig) || f.Offload != off {
					t.Fatal("Segment changed the super-frame")
				}
				checkSegments(t, sp, orig, l, dst, s)
			}
		})
	}
}

// checkSegments checks Segment's output against the super-frame it cut.
func checkSegments(t *testing.T, sp spec, orig []byte, l Layout, dst []byte, s Segments) {
	t.Helper()
	l3 := 14
	if sp.vlan {
		l3 = 18
	}
	iphl := 20 + len(sp.ipOpts)
	if sp.v6 {
		iphl = 40
	}
	thl := 20 + len(sp.tcpOpts)
	if sp.udp {
		thl = 8
	}
	hdr := l3 + iphl + thl
	want := max(1, (sp.payload+sp.mss-1)/sp.mss)
	if s.Total != want || s.N != want || s.First != 0 {
		t.Fatalf("segments %+v, want %d", s, want)
	}
	if s.Stride != l.Prefix+hdr-l.From+sp.mss {
		t.Fatalf("stride %d, want %d", s.Stride, l.Prefix+hdr-l.From+sp.mss)
	}
	last := sp.payload - (want-1)*sp.mss
	if s.Len != (want-1)*s.Stride+l.Prefix+hdr-l.From+last {
		t.Fatalf("len %d, want %d", s.Len, (want-1)*s.Stride+l.Prefix+hdr-l.From+last)
	}
	for i := 0; i < s.N; i++ {
		if p := dst[i*s.Stride : i*s.Stride+l.Prefix]; bytes.Count(p, []byte{0xee}) != l.Prefix {
			t.Fatalf("segment %d: prefix written: %x", i, p)
		}
	}
	var payload []byte
	for i, p := range pieces(dst[:s.Len], s, l.Prefix) {
		if !bytes.Equal(p[:l3-l.From], orig[l.From:l3]) {
			t.Fatalf("segment %d: link header %x, want %x", i, p[:l3-l.From], orig[l.From:l3])
		}
		pkt := p[l3-l.From:]
		l4, _, _, _ := checkPacket(t, pkt)
		plen := sp.mss
		if i == s.N-1 {
			plen = last
		}
		if len(pkt) != iphl+thl+plen {
			t.Fatalf("segment %d: %d bytes, want %d", i, len(pkt), iphl+thl+plen)
		}
		// The headers are the super-frame's but for the fields each
		// segment sets, which are checked one by one.
		got, exp := bytes.Clone(pkt[:iphl+thl]), bytes.Clone(orig[l3:hdr])
		ipMask := [][2]int{{4, 6}}         // IPv6 payload length
		l4Mask := [][2]int{{4, 6}, {6, 8}} // UDP length, checksum
		if !sp.v6 {
			ipMask = [][2]int{{2, 4}, {4, 6}, {10, 12}} // total length, ID, checksum
			if id := binary.BigEndian.Uint16(pkt[4:6]); id != sp.id+uint16(i) {
				t.Fatalf("segment %d: ipv4 id %#x, want %#x", i, id, sp.id+uint16(i))
			}
		}
		if !sp.udp {
			l4Mask = [][2]int{{4, 8}, {13, 14}, {16, 18}} // seq, flags, checksum
			tcp, _ := packet.ParseTCP(l4)
			if tcp.Seq() != sp.seq+uint32(i*sp.mss) {
				t.Fatalf("segment %d: seq %#x, want %#x", i, tcp.Seq(), sp.seq+uint32(i*sp.mss))
			}
			fl := sp.flags
			if fl == 0 {
				fl = packet.TCPFlagACK
			}
			if i != s.N-1 {
				fl &^= packet.TCPFlagPSH | packet.TCPFlagFIN
			}
			if i != 0 {
				fl &^= packet.TCPFlagCWR
			}
			if tcp.Flags() != fl {
				t.Fatalf("segment %d: flags %#x, want %#x", i, tcp.Flags(), fl)
			}
		}
		for _, m := range ipMask {
			clear(got[m[0]:m[1]])
			clear(exp[m[0]:m[1]])
		}
		for _, m := range l4Mask {
			clear(got[iphl+m[0] : iphl+m[1]])
			clear(exp[iphl+m[0] : iphl+m[1]])
		}
		if !bytes.Equal(got, exp) {
			t.Fatalf("segment %d: headers\n %x\nwant\n %x", i, got, exp)
		}
		payload = append(payload, pkt[iphl+thl:]...)
	}
	if !bytes.Equal(payload, orig[hdr:]) {
		t.Fatalf("reassembled payload of %d bytes differs from the %d sent", len(payload), len(orig[hdr:]))
	}
}

// Segment in pieces (a segment bound, a small dst) writes what one call
// writes.
func TestSegmentInPieces(t *testing.T) {
	for _, sp := range []spec{{mss: 1448, payload: 60000, seed: 2}, {v6: true, udp: true, mss: 1200, payload: 50001, seed: 3}} {
		f := sp.build(t)
		l := Layout{Prefix: 4, From: 14}
		whole, ws := segmentAll(t, f, l)
		for _, c := range []struct {
			max, dst int
		}{{7, len(whole)}, {0, 5 * ws.Stride}, {3, 5*ws.Stride - 1}, {64, ws.Stride}} {
			l.Max = c.max
			var got []byte
			dst := make([]byte, c.dst)
			for first := 0; first < ws.Total; {
				s, err := Segment(dst, f, l, first)
				if err != nil {
					t.Fatal(err)
				}
				if s.First != first || s.Total != ws.Total || s.Stride != ws.Stride || (c.max > 0 && s.N > c.max) {
					t.Fatalf("max %d dst %d: %+v", c.max, c.dst, s)
				}
				if s.Next() < s.Total && s.Len != s.N*s.Stride {
					t.Fatalf("len %d of a run of %d cut before the last", s.Len, s.N)
				}
				got = append(got, dst[:s.Len]...)
				if s.Next() < s.Total {
					got = append(got, make([]byte, s.N*s.Stride-s.Len)...)
				}
				first = s.Next()
			}
			// The prefixes are not written: compare segments only.
			gs := pieces(got, Segments{Stride: ws.Stride, N: ws.N}, l.Prefix)
			for i, p := range pieces(whole, ws, l.Prefix) {
				if !bytes.Equal(gs[i], p) {
					t.Fatalf("max %d dst %d: segment %d differs", c.max, c.dst, i)
				}
			}
		}
	}
}

func TestSegmentFrames(t *testing.T) {
	for _, sp := range []spec{{mss: 1448, payload: 20000, seed: 4}, {v6: true, udp: true, mss: 1400, payload: 9000, vlan: true, seed: 5}} {
		f := sp.build(t)
		l3 := 14
		if sp.vlan {
			l3 = 18
		}
		whole, ws := segmentAll(t, f, Layout{From: l3})
		out := frame.Batch(ws.Total + 1)
		out[0].Offload.GSO = frame.GSOTCPv4 // stale state a frame may hold
		n, err := SegmentFrames(f, out, l3)
		if err != nil || n != ws.Total {
			t.Fatalf("SegmentFrames: %d, %v; want %d", n, err, ws.Total)
		}
		for i, p := range pieces(whole, ws, 0) {
			o := out[i]
			if o.Off != frame.Headroom || !bytes.Equal(o.Data(), p) || o.Offload != (frame.Offload{}) || o.Port != f.Port {
				t.Fatalf("frame %d: off %d, offload %+v, port %d, data equal %v", i, o.Off, o.Offload, o.Port, bytes.Equal(o.Data(), p))
			}
		}
		if _, err := SegmentFrames(f, out[:ws.Total-1], l3); err == nil || !strings.Contains(err.Error(), "output frames") {
			t.Fatalf("too few frames: %v", err)
		}
		small := []*frame.Frame{{Buf: make([]byte, 100)}}
		if _, err := SegmentFrames(f, append(small, out...), l3); err == nil || !strings.Contains(err.Error(), "output frame 0: buffer") {
			t.Fatalf("small frame: %v", err)
		}
	}
}

func TestSegmentErrors(t *testing.T) {
	tcp4 := spec{mss: 1448, payload: 5000, seed: 6}
	tcp6 := spec{v6: true, mss: 1448, payload: 5000, seed: 6}
	udp4 := spec{udp: true, mss: 1448, payload: 5000, seed: 6}
	l := Layout{Prefix: 4, From: 14}
	for _, c := range []struct {
		name  string
		sp    spec
		mod   func(f *frame.Frame)
		l     Layout
		first int
		dst   int
		want  string
	}{
		{"not a super-frame", tcp4, func(f *frame.Frame) { f.GSO = frame.GSONone }, l, 0, 0, "not a super-frame"},
		{"unknown gso type", tcp4, func(f *frame.Frame) { f.GSO = 9 }, l, 0, 0, "gso type 9 unknown"},
		{"gso size 0", tcp4, func(f *frame.Frame) { f.GSOSize = 0 }, l, 0, 0, "gso size 0"},
		{"frame bounds", tcp4, func(f *frame.Frame) { f.Len = len(f.Buf) }, l, 0, 0, "outside its"},
		{"short frame", tcp4, func(f *frame.Frame) { f.Len = 10 }, l, 0, 0, "ethernet: header needs 14 bytes, have 10"},
		{"tcpv6 on ipv4", tcp4, func(f *frame.Frame) { f.GSO = frame.GSOTCPv6 }, l, 0, 0, "ethernet: type 0x0800 does not match"},
		{"tcpv4 on ipv6", tcp6, func(f *frame.Frame) { f.GSO = frame.GSOTCPv4 }, l, 0, 0, "ethernet: type 0x86dd does not match"},
		{"udp on tcp", tcp4, func(f *frame.Frame) { f.GSO = frame.GSOUDPL4 }, l, 0, 0, "ip: protocol 6 does not match"},
		{"tcp on udp", udp4, func(f *frame.Frame) { f.GSO = frame.GSOTCPv4 }, l, 0, 0, "ip: protocol 17 does not match"},
		{"ipv4 truncated", tcp4, func(f *frame.Frame) { f.Len -= 1 }, l, 0, 0, "ipv4: total length 5040 exceeds 5039"},
		{"ipv4 fragment", tcp4, func(f *frame.Frame) { f.Data()[14+6] |= 0x20 }, l, 0, 0, "ipv4: fragment"},
		{"ipv6 extension header", tcp6, func(f *frame.Frame) { f.Data()[14+6] = packet.ProtoHopByHop }, l, 0, 0, "next header 0: extension headers are not supported"},
		{"syn", tcp4, func(f *frame.Frame) { f.Data()[34+13] |= packet.TCPFlagSYN }, l, 0, 0, "tcp: flags 0x12: SYN or RST"},
		{"rst", tcp4, func(f *frame.Frame) { f.Data()[34+13] |= packet.TCPFlagRST }, l, 0, 0, "SYN or RST"},
		{"tcp data offset", tcp4, func(f *frame.Frame) { f.Data()[34+12] = 0x40 }, l, 0, 0, "tcp: data offset 16 below minimum 20"},
		{"udp length", udp4, func(f *frame.Frame) { binary.BigEndian.PutUint16(f.Data()[34+4:], 100) }, l, 0, 0, "udp: length 100, want the ip payload's 5008"},
		{"hdr len short", tcp4, func(f *frame.Frame) { f.HdrLen = 53 }, l, 0, 0, "hdr len 53 below the 54 bytes of headers"},
		{"hdr len long", tcp4, func(f *frame.Frame) { f.HdrLen = 5055 }, l, 0, 0, "hdr len 5055 exceeds the 5054-byte packet"},
		{"from past ip", tcp4, nil, Layout{From: 15}, 0, 0, "layout from 15 outside 0..14"},
		{"negative prefix", tcp4, nil, Layout{Prefix: -1, From: 14}, 0, 0, "negative"},
		{"first past the end", tcp4, nil, l, 4, 0, "first segment 4 outside 0..3"},
		{"dst too small", tcp4, nil, l, 0, 1491, "dst of 1491 bytes holds no segment of 1492"},
		{"nil frame", tcp4, nil, l, -1, 0, "nil frame"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.sp.build(t)
			if c.mod != nil {
				c.mod(f)
			}
			if c.first < 0 {
				f, c.first = nil, 0
			}
			dst := make([]byte, 1<<17)
			if c.dst != 0 {
				dst = dst[:c.dst]
			}
			_, err := Segment(dst, f, c.l, c.first)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "gso: ") {
				t.Fatalf("error %q does not say gso", err)
			}
		})
	}
}

// HdrLen as Linux's tun may report it (the linear part: here the whole
// first segment, or the whole packet) or leaves it (0) is accepted, and
// only a hint: the segments are cut at the headers the packet has (count,
// lengths, headers and payload as with the exact HdrLen).
func TestSegmentLenientHdrLen(t *testing.T) {
	sp := spec{mss: 1448, payload: 5000, seed: 7}
	for _, h := range []uint16{0, 54, 54 + 1448, 5054} {
		f := sp.build(t)
		f.HdrLen = h
		orig := bytes.Clone(f.Data())
		l := Layout{From: 14}
		dst := bytes.Repeat([]byte{0xee}, 1<<17)
		s, err := Segment(dst, f, l, 0)
		if err != nil {
			t.Fatalf("hdr len %d: %v", h, err)
		}
		checkSegments(t, sp, orig, l, dst, s)
	}
}

func TestChecksum(t *testing.T) {
	for _, sp := range []spec{{mss: 1448, payload: 1000, seed: 8}, {v6: true, udp: true, mss: 1448, payload: 999, seed: 9}, {udp: true, mss: 1448, payload: 0, seed: 10}} {
		f := sp.build(t)
		f.GSO, f.GSOSize = frame.GSONone, 0
		if err := Checksum(f); err != nil {
			t.Fatal(err)
		}
		if f.NeedsCsum || !f.CsumValid {
			t.Fatalf("offload after: %+v", f.Offload)
		}
		checkPacket(t, f.Data()[14:])
		// Idempotent once done.
		before := bytes.Clone(f.Data())
		if err := Checksum(f); err != nil || !bytes.Equal(before, f.Data()) {
			t.Fatalf("second call: %v, changed %v", err, !bytes.Equal(before, f.Data()))
		}
	}
	// A checksum that computes to 0 is sent as 0xffff (UDP needs it).
	f := frame.New()
	f.SetData(frame.Headroom, 8)
	f.NeedsCsum, f.CsumStart, f.CsumOffset = true, 0, 6
	copy(f.Data(), []byte{0xff, 0xff, 0, 0, 0, 0, 0, 0})
	if err := Checksum(f); err != nil || binary.BigEndian.Uint16(f.Data()[6:]) != 0xffff {
		t.Fatalf("zero checksum: %v, %x", err, f.Data())
	}
	for _, c := range []struct {
		name string
		mod  func(f *frame.Frame)
		want string
	}{
		{"super-frame", func(f *frame.Frame) { f.GSO = frame.GSOTCPv4 }, "segment it instead"},
		{"odd offset", func(f *frame.Frame) { f.CsumOffset = 3 }, "csum offset 3 is odd"},
		{"field past the end", func(f *frame.Frame) { f.CsumStart = 7 }, "csum start 7 + offset 6 exceeds 8 bytes"},
		{"bad bounds", func(f *frame.Frame) { f.Off = -1 }, "outside its"},
	} {
		g := *f
		g.NeedsCsum = true
		c.mod(&g)
		if err := Checksum(&g); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := Checksum(nil); err == nil {
		t.Error("nil frame: no error")
	}
}

// sum agrees with the literal RFC 1071 sum for every length and alignment,
// with runs of 0xff that carry in every word.
func TestSumMatchesRFC1071(t *testing.T) {
	buf := make([]byte, 1100)
	for i := range buf {
		buf[i] = byte(i*131 + i>>3)
	}
	ff := bytes.Repeat([]byte{0xff}, 1100)
	for _, b := range [][]byte{buf, ff} {
		for start := 0; start < 8; start++ {
			for n := 0; start+n <= len(b); n += 1 + n/16 {
				p := b[start : start+n]
				got, want := fold(sum(p, 0)), uint16(refSum(p, 0))
				if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
					t.Fatalf("start %d len %d: %#04x, want %#04x", start, n, got, want)
				}
			}
		}
	}
	// Chaining through acc, even pieces then the rest.
	if got, want := fold(sum(buf[600:], sum(buf[:600], sum(ff[:64], 0)))), uint16(refSum(buf, refSum(ff[:64], 0))); got != want {
		t.Fatalf("chained %#04x, want %#04x", got, want)
	}
	// The RFC 1071 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
	if got := fold(sum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0)); got != 0xddf2 {
		t.Fatalf("RFC 1071 example: %#04x", got)
	}
}
