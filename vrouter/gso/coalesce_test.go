package gso

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// input is one packet given to Add.
type input struct {
	port uint32
	pkt  []byte
}

// ipPackets cuts sp's super-frame into IP packets, as a tunnel delivers
// them.
func ipPackets(t testing.TB, sp spec) [][]byte {
	t.Helper()
	out, s := segmentAll(t, sp.build(t), Layout{From: 14})
	var ps [][]byte
	for _, p := range pieces(out, s, 0) {
		ps = append(ps, bytes.Clone(p))
	}
	return ps
}

// feed adds the inputs to c, flushing (checking and resetting) whenever it
// is full, and returns every frame it put out, copied, in order.
func feed(t testing.TB, c *Coalescer, in []input) []*frame.Frame {
	t.Helper()
	var out []*frame.Frame
	flush := func() {
		for _, f := range c.Frames() {
			// Flattened: a gathered frame's Frags are the caller's bytes.
			g := *f
			g.Buf = append(make([]byte, f.Off, f.Off+f.Len), f.Data()...)
			for _, b := range f.Frags {
				g.Buf = append(g.Buf, b...)
			}
			g.Len, g.Frags = len(g.Buf)-f.Off, nil
			out = append(out, &g)
		}
		c.Reset()
	}
	for i, p := range in {
		if !c.Add(p.port, macB, macA, p.pkt) {
			flush()
			if !c.Add(p.port, macB, macA, p.pkt) {
				t.Fatalf("input %d: Add refused by an empty Coalescer", i)
			}
		}
	}
	flush()
	return out
}

// groupOf is the flow a packet belongs to for the ordering check: the
// port and 5-tuple where one can be read, else one group for all others
// of the port.
func groupOf(port uint32, pkt []byte) string {
	ft, err := packet.ParseFiveTuple(pkt)
	if err != nil || ft.Proto != packet.ProtoTCP {
		return fmt.Sprint(port, "other")
	}
	return fmt.Sprint(port, ft)
}

// masked is pkt with the fields a merge does not keep per segment zeroed:
// the IPv4 ID and header checksum, and the TCP checksum (0 and 0xffff are
// both right for a zero sum).
func masked(pkt []byte) []byte {
	p := bytes.Clone(pkt)
	var l4 []byte
	if p[0]>>4 == 4 {
		clear(p[4:6])
		clear(p[10:12])
		l4 = p[20:]
	} else {
		l4 = p[40:]
	}
	clear(l4[16:18])
	return p
}

// checkCoalesced checks what a Coalescer put out against what it was fed,
// for any input: every frame is an input as it came (Offload zero) or a
// super-frame that Segment cuts back into consecutive inputs of one flow,
// with valid checksums; no packet is lost, added or changed, and packets of
// one flow (or all non-TCP packets of a port) keep their order. dropped
// inputs (not IP by version, empty) are skipped.
func checkCoalesced(t testing.TB, in []input, out []*frame.Frame) {
	t.Helper()
	type item struct {
		port   uint32
		pkt    []byte
		merged bool
	}
	var got []item
	for fi, f := range out {
		data := f.Data()
		e, err := packet.ParseEthernet(data)
		if err != nil || e.Dst() != macB || e.Src() != macA {
			t.Fatalf("frame %d: ethernet %v", fi, err)
		}
		if f.Off != frame.Headroom {
			t.Fatalf("frame %d: data at %d, want the headroom %d", fi, f.Off, frame.Headroom)
		}
		if f.GSO == frame.GSONone {
			if f.Offload != (frame.Offload{}) {
				t.Fatalf("frame %d: unmerged with offload %+v", fi, f.Offload)
			}
			got = append(got, item{f.Port, data[14:], false})
			continue
		}
		want := frame.GSOTCPv4
		if data[14]>>4 == 6 {
			want = frame.GSOTCPv6
		}
		l4 := int(f.CsumStart)
		if f.GSO != want || !f.NeedsCsum || f.CsumValid || f.CsumOffset != 16 || int(f.HdrLen) != l4+int(data[l4+12]>>4)*4 {
			t.Fatalf("frame %d: offload %+v", fi, f.Offload)
		}
		// The TCP checksum field holds the pseudo-header sum of the whole
		// segment, and the IPv4 header checksum is valid.
		ft, _ := packet.ParseFiveTuple(data[14:])
		if c := binary.BigEndian.Uint16(data[l4+16:]); uint32(c) != refPseudo(ft.Src, ft.Dst, packet.ProtoTCP, len(data)-l4) {
			t.Fatalf("frame %d: tcp checksum field %#04x, not the pseudo-header sum", fi, c)
		}
		segs, s := segmentAll(t, f, Layout{From: 14})
		if s.Total < 2 {
			t.Fatalf("frame %d: a super-frame of %d segment", fi, s.Total)
		}
		for _, p := range pieces(segs, s, 0) {
			checkPacket(t, p)
			got = append(got, item{f.Port, p, true})
		}
	}
	// Per group, the outputs are the inputs in order.
	wantBy := map[string][]input{}
	n := 0
	for _, p := range in {
		if len(p.pkt) == 0 || (p.pkt[0]>>4 != 4 && p.pkt[0]>>4 != 6) {
			continue
		}
		g := groupOf(p.port, p.pkt)
		wantBy[g] = append(wantBy[g], p)
		n++
	}
	if len(got) != n {
		t.Fatalf("%d packets out of %d in", len(got), n)
	}
	for i, g := range got {
		k := groupOf(g.port, g.pkt)
		q := wantBy[k]
		if len(q) == 0 {
			t.Fatalf("output %d (port %d, %s): not among the inputs", i, g.port, k)
		}
		w := q[0]
		wantBy[k] = q[1:]
		if g.merged {
			if !bytes.Equal(masked(g.pkt), masked(w.pkt)) {
				t.Fatalf("output %d (%s): merged segment\n %x\nwant\n %x", i, k, g.pkt, w.pkt)
			}
		} else if !bytes.Equal(g.pkt, w.pkt) {
			t.Fatalf("output %d (%s): passed through changed\n %x\nwant\n %x", i, k, g.pkt, w.pkt)
		}
	}
}

// A super-frame cut by Segment and fed back comes out as that super-frame.
func TestCoalescerRoundTrip(t *testing.T) {
	for _, sp := range segmentSpecs() {
		if sp.udp || sp.vlan || sp.ipOpts != nil || sp.flags&^(packet.TCPFlagACK|packet.TCPFlagPSH) != 0 {
			continue // not mergeable by design; see TestCoalescerPassThrough
		}
		for _, trust := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/trust=%v", sp, trust), func(t *testing.T) {
				orig := sp.build(t)
				var in []input
				for _, p := range ipPackets(t, sp) {
					in = append(in, input{orig.Port, p})
				}
				c := NewCoalescer(4)
				c.TrustChecksums = trust
				out := feed(t, c, in)
				checkCoalesced(t, in, out)
				if len(out) != 1 {
					t.Fatalf("%d frames, want 1", len(out))
				}
				f := out[0]
				if len(in) == 1 {
					if !bytes.Equal(f.Data()[14:], in[0].pkt) || f.Offload != (frame.Offload{}) {
						t.Fatal("a single segment was changed")
					}
					return
				}
				if !bytes.Equal(f.Data(), orig.Data()) {
					t.Fatalf("merged frame differs from the super-frame\n %x\nwant\n %x", f.Data()[:80], orig.Data()[:80])
				}
				if f.Offload != orig.Offload || f.Port != orig.Port {
					t.Fatalf("offload %+v port %d, want %+v port %d", f.Offload, f.Port, orig.Offload, orig.Port)
				}
				if st := c.Stats(); st.Merged != uint64(len(in)-1) || st.Packets != uint64(len(in)) {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	}
}

// A packet that must not be merged goes out as it came, and the flow's
// super-frame is closed before it (so the flow keeps its order).
func TestCoalescerPassThrough(t *testing.T) {
	base := spec{mss: 1000, payload: 4000, seq: 1000, seed: 11}
	ip4 := func(p []byte) packet.IPv4 { ip, _ := packet.ParseIPv4(p); return ip }
	fix := func(p []byte) []byte { // recompute the checksums after a change
		ip := ip4(p)
		ip.SetChecksum()
		tcp, _ := packet.ParseTCP(ip.Payload())
		tcp.SetChecksum(ip.Src(), ip.Dst())
		return p
	}
	tcpOf := func(p []byte) []byte { return p[len(p)-len(ip4(p).Payload()):] }
	withIPOpts := func(p []byte) []byte {
		ip := ip4(p)
		q := append(append(append([]byte{}, p[:20]...), 1, 1, 1, 0), ip.Payload()...)
		q[0] = 0x46
		setIPv4TotalLen(q, len(q))
		return fix(q)
	}
	udp := spec{udp: true, mss: 1000, payload: 500, seed: 12}
	for _, c := range []struct {
		name string
		mod  func(p []byte) []byte // applied to the 2nd segment
		port uint32                // of the 2nd segment, when not 0
		// frames: 3 when the changed packet is of the flow: the first
		// super-frame closes and segments 2, 3 start a new one.
		frames int
		insert bool // insert the changed packet after segment 0
	}{
		{"syn", func(p []byte) []byte { tcpOf(p)[13] |= packet.TCPFlagSYN; return fix(p) }, 0, 3, false},
		{"fin", func(p []byte) []byte { tcpOf(p)[13] |= packet.TCPFlagFIN; return fix(p) }, 0, 3, false},
		{"rst", func(p []byte) []byte { tcpOf(p)[13] |= packet.TCPFlagRST; return fix(p) }, 0, 3, false},
		{"urg", func(p []byte) []byte { tcpOf(p)[13] |= packet.TCPFlagURG; return fix(p) }, 0, 3, false},
		{"ece", func(p []byte) []byte { tcpOf(p)[13] |= packet.TCPFlagECE; return fix(p) }, 0, 3, false},
		{"cwr", func(p []byte) []byte { tcpOf(p)[13] |= packet.TCPFlagCWR; return fix(p) }, 0, 3, false},
		{"no ack", func(p []byte) []byte { tcpOf(p)[13] = packet.TCPFlagPSH; return fix(p) }, 0, 3, false},
		{"ack differs", func(p []byte) []byte { tcpOf(p)[11]++; return fix(p) }, 0, 3, false},
		{"window differs", func(p []byte) []byte { tcpOf(p)[15]++; return fix(p) }, 0, 3, false},
		{"gap in sequence", func(p []byte) []byte { tcpOf(p)[7]++; return fix(p) }, 0, 3, false},
		{"ttl differs", func(p []byte) []byte { p[8]--; return fix(p) }, 0, 3, false},
		{"tos differs", func(p []byte) []byte { p[1] = 0; return fix(p) }, 0, 3, false},
		{"df differs", func(p []byte) []byte { p[6] &^= 0x40; return fix(p) }, 0, 3, false},
		{"ipv4 options", withIPOpts, 0, 3, false},
		{"fragment", func(p []byte) []byte { p[6] |= 0x20; return fix(p) }, 0, 3, false},
		{"padding", func(p []byte) []byte { return append(p, 0, 0) }, 0, 3, false},
		{"bad tcp checksum", func(p []byte) []byte { tcpOf(p)[16]++; return p }, 0, 3, false},
		{"bad ip checksum", func(p []byte) []byte { p[10]++; return p }, 0, 3, false},
		{"pure ack", func(p []byte) []byte {
			q := p[:40]
			setIPv4TotalLen(q, 40)
			return fix(q)
		}, 0, 3, false},
		{"larger payload", func(p []byte) []byte { return nil }, 0, 3, false},
		// Another flow, inserted after segment 0: the first super-frame
		// stays open and takes all four.
		{"other source port", func(p []byte) []byte { tcpOf(p)[1]++; return fix(p) }, 0, 2, true},
		{"other port", func(p []byte) []byte { return p }, 9, 2, true},
		{"udp", func(p []byte) []byte { return ipPackets(t, udp)[0] }, 0, 2, true},
		{"ipv6 same ports", func(p []byte) []byte {
			return ipPackets(t, spec{v6: true, mss: 1000, payload: 1000, seq: 2000, seed: 11})[0]
		}, 0, 2, true},
		// The flow's own pure ACK, inserted: segment 1 must not overtake it.
		{"pure ack inserted", func(p []byte) []byte {
			q := p[:40]
			setIPv4TotalLen(q, 40)
			return fix(q)
		}, 0, 3, true},
		{"not ip", func(p []byte) []byte { p[0] = 0x55; return p }, 0, 3, false}, // dropped: a gap after 0
	} {
		t.Run(c.name, func(t *testing.T) {
			segs := ipPackets(t, base)
			if c.name == "larger payload" {
				// A segment of 1001 bytes after 1000-byte ones.
				sp := base
				sp.mss, sp.payload, sp.seq = 1001, 1001, base.seq+1000
				segs[1] = ipPackets(t, sp)[0]
			} else if c.insert {
				segs = append(segs[:1], append([][]byte{c.mod(bytes.Clone(segs[1]))}, segs[1:]...)...)
			} else {
				segs[1] = c.mod(segs[1])
			}
			var in []input
			for i, p := range segs {
				port := uint32(7)
				if i == 1 && c.port != 0 {
					port = c.port
				}
				in = append(in, input{port, p})
			}
			co := NewCoalescer(8)
			out := feed(t, co, in)
			checkCoalesced(t, in, out)
			want := c.frames
			if c.name == "not ip" {
				want = 2
				if co.Stats().Dropped != 1 {
					t.Fatalf("stats %+v", co.Stats())
				}
			}
			if len(out) != want {
				t.Fatalf("%d frames, want %d", len(out), want)
			}
			if c.name == "not ip" {
				return
			}
			if f := out[1]; !bytes.Equal(f.Data()[14:], segs[1]) || f.Offload != (frame.Offload{}) {
				t.Fatalf("frame 1 is not the changed packet as it came")
			}
			if c.name == "bad tcp checksum" && co.Stats().BadSum != 1 {
				t.Fatalf("stats %+v", co.Stats())
			}
		})
	}
}

// IPv6 packets with extension headers pass through; so do those of a
// different traffic class, flow label or hop limit.
func TestCoalescerPassThroughIPv6(t *testing.T) {
	base := spec{v6: true, mss: 1000, payload: 4000, seed: 13}
	for _, c := range []struct {
		name   string
		mod    func(p []byte) []byte
		frames int
	}{
		{"hop-by-hop header", func(p []byte) []byte {
			q := append(append(append([]byte{}, p[:40]...), packet.ProtoTCP, 0, 1, 4, 0, 0, 0, 0), p[40:]...)
			q[6] = packet.ProtoHopByHop
			setIPv6PayloadLen(q, len(q)-40)
			return q
		}, 3},
		{"flow label", func(p []byte) []byte { p[3]++; return p }, 3},
		{"traffic class", func(p []byte) []byte { p[0] |= 0x0f; return p }, 3},
		{"hop limit", func(p []byte) []byte { p[7]--; return p }, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			segs := ipPackets(t, base)
			segs[1] = c.mod(segs[1])
			var in []input
			for _, p := range segs {
				in = append(in, input{7, p})
			}
			out := feed(t, NewCoalescer(8), in)
			checkCoalesced(t, in, out)
			if len(out) != c.frames || !bytes.Equal(out[1].Data()[14:], segs[1]) {
				t.Fatalf("%d frames, want %d, or frame 1 changed", len(out), c.frames)
			}
		})
	}
}

// PSH and a short segment close a super-frame; what follows starts another.
func TestCoalescerClose(t *testing.T) {
	sp := spec{mss: 1000, payload: 6000, seed: 14}
	segs := ipPackets(t, sp)
	psh := func(p []byte) {
		ip, _ := packet.ParseIPv4(p)
		tcp, _ := packet.ParseTCP(ip.Payload())
		setTCPFlags(tcp.Bytes(), tcp.Flags()|packet.TCPFlagPSH)
		tcp.SetChecksum(ip.Src(), ip.Dst())
	}
	psh(segs[1]) // closes after segment 1: frames {0,1} {2..5}
	psh(segs[2]) // closes at once: {0,1} {2} {3,4,5}
	var in []input
	for _, p := range segs {
		in = append(in, input{7, p})
	}
	out := feed(t, NewCoalescer(8), in)
	checkCoalesced(t, in, out)
	if len(out) != 3 || out[0].GSO == frame.GSONone || out[1].GSO != frame.GSONone || out[2].GSO == frame.GSONone {
		t.Fatalf("%d frames, want {0,1} {2} {3,4,5}", len(out))
	}
	tcp := out[0].Data()[34:]
	if tcp[13] != packet.TCPFlagACK|packet.TCPFlagPSH {
		t.Fatalf("merged flags %#x, want ACK|PSH", tcp[13])
	}
	// A shorter segment closes too: 1000, 500, then 1000 starts anew.
	a, b := spec{mss: 1000, payload: 1500, seq: 0, seed: 15}, spec{mss: 1000, payload: 1000, seq: 1500, seed: 15}
	in = nil
	for _, p := range append(ipPackets(t, a), ipPackets(t, b)...) {
		in = append(in, input{7, p})
	}
	out = feed(t, NewCoalescer(8), in)
	checkCoalesced(t, in, out)
	if len(out) != 2 || out[0].GSOSize != 1000 {
		t.Fatalf("%d frames, want 2", len(out))
	}
}

// Interleaved flows and ports each get their super-frame, in order of
// first arrival; a full Coalescer refuses a new frame without changing.
func TestCoalescerInterleavedAndFull(t *testing.T) {
	var flows [][][]byte
	for i := range 3 {
		sp := spec{v6: i == 1, mss: 1400, payload: 14000, seq: uint32(i) << 20, seed: uint64(16 + i)}
		flows = append(flows, ipPackets(t, sp))
	}
	c := NewCoalescer(3)
	var in []input
	for j := range 10 {
		for i := range 3 {
			in = append(in, input{uint32(i % 2), flows[i][j]})
		}
	}
	// Flows 0 and 2 are alike but for the seq: on port 0 and 0, they are
	// one flow with gaps. Put flow 2 on port 5 instead.
	for k := range in {
		if k%3 == 2 {
			in[k].port = 5
		}
	}
	for k, p := range in {
		if !c.Add(p.port, macB, macA, p.pkt) {
			t.Fatalf("input %d refused", k)
		}
	}
	fs := c.Frames()
	if len(fs) != 3 || fs[0].Port != 0 || fs[1].Port != 1 || fs[2].Port != 5 {
		t.Fatalf("%d frames", len(fs))
	}
	for _, f := range fs {
		if f.GSO == frame.GSONone || f.Len != 14+len(flows[0][0])-1400+14000+map[bool]int{true: 20, false: 0}[f.GSO == frame.GSOTCPv6] {
			t.Fatalf("frame port %d: %s len %d", f.Port, f.GSO, f.Len)
		}
	}
	// Full: another flow's segment is refused and nothing changes; a
	// continuing one still merges.
	other := ipPackets(t, spec{mss: 1400, payload: 2800, seed: 20})
	before := c.Stats()
	if c.Add(9, macB, macA, other[0]) {
		t.Fatal("full Coalescer took a new frame")
	}
	if c.Stats() != before || len(c.Frames()) != 3 {
		t.Fatal("refused Add changed the Coalescer")
	}
	c.Reset()
	if len(c.Frames()) != 0 || !c.Add(9, macB, macA, other[0]) || len(c.Frames()) != 1 {
		t.Fatal("after Reset")
	}
}

// Frames may be called between Adds: a frame finished once and then grown
// is finished again.
func TestCoalescerFramesTwice(t *testing.T) {
	sp := spec{mss: 1000, payload: 5000, seed: 21}
	orig := sp.build(t)
	c := NewCoalescer(2)
	segs := ipPackets(t, sp)
	for i, p := range segs {
		c.Add(7, macB, macA, p)
		if i == 2 {
			c.Frames()
		}
	}
	if fs := c.Frames(); len(fs) != 1 || !bytes.Equal(fs[0].Data(), orig.Data()) {
		t.Fatal("frame differs from the super-frame")
	}
}

// TCP options must match byte for byte: a changed timestamp, or the same
// option padded differently, passes through.
func TestCoalescerOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []byte
	}{
		{"timestamp differs", []byte{1, 1, 8, 10, 0, 0, 0x12, 0x35, 0, 0, 0x56, 0x78}},
		{"padded differently", []byte{8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78, 1, 1}},
		{"longer", append(append([]byte{}, tsOpt...), 1, 1, 1, 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := spec{mss: 1000, payload: 4000, seq: 1000, tcpOpts: tsOpt, seed: 22}
			segs := ipPackets(t, base)
			mod := base
			mod.payload, mod.seq, mod.tcpOpts = 1000, 2000, c.opts
			segs[1] = ipPackets(t, mod)[0]
			var in []input
			for _, p := range segs {
				in = append(in, input{7, p})
			}
			out := feed(t, NewCoalescer(8), in)
			checkCoalesced(t, in, out)
			if len(out) != 3 || !bytes.Equal(out[1].Data()[14:], segs[1]) {
				t.Fatalf("%d frames, want 3 with segment 1 alone", len(out))
			}
		})
	}
}

// A long stream is merged into super-frames within the IP length (65535)
// and frame.MaxLen.
func TestCoalescerSizeLimit(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		sp := spec{v6: v6, mss: 1448, payload: 1448 * 100, seed: 23}
		// Built in pieces: one super-frame cannot hold it.
		var in []input
		for k := range 4 {
			part := sp
			part.payload, part.seq = 1448*25, uint32(k*1448*25)
			part.seed = uint64(k)
			for _, p := range ipPackets(t, part) {
				in = append(in, input{7, p})
			}
		}
		out := feed(t, NewCoalescer(8), in)
		checkCoalesced(t, in, out)
		// 65535-20-20 = 65495 bytes of payload hold 45 segments over
		// IPv4; frame.MaxLen-14-40-20 = 65479 also 45 over IPv6.
		if len(out) != 3 {
			t.Fatalf("v6 %v: %d frames, want 3 (45+45+10)", v6, len(out))
		}
		for _, f := range out {
			if f.Len > frame.MaxLen || f.Len-14 > 65535+map[bool]int{true: 40}[v6] {
				t.Fatalf("frame of %d bytes", f.Len)
			}
		}
	}
}

// At the bounds: two segments merge exactly while the IPv4 total length
// stays within 65535 and an IPv6 frame within frame.MaxLen.
func TestCoalescerSizeBounds(t *testing.T) {
	for _, c := range []struct {
		v6     bool
		mss    int
		frames int
	}{
		{false, 32747, 1}, // 20+20+2*32747 = 65534
		{false, 32748, 2}, // 65536 > 65535, though 14+65536 fits a frame
		{true, 32739, 1},  // 14+40+20+2*32739 = 65552 <= frame.MaxLen
		{true, 32740, 2},  // 65554 > frame.MaxLen
	} {
		in := []input{}
		for k := range 2 { // one by one: a super-frame of both may not fit
			sp := spec{v6: c.v6, mss: c.mss, payload: c.mss, seq: uint32(k * c.mss), seed: 24}
			in = append(in, input{7, ipPackets(t, sp)[0]})
		}
		out := feed(t, NewCoalescer(4), in)
		checkCoalesced(t, in, out)
		if len(out) != c.frames {
			t.Errorf("v6 %v mss %d: %d frames, want %d", c.v6, c.mss, len(out), c.frames)
		}
	}
}

// AddCovered merges what Add would refuse for its checksum alone (the
// caller vouches for it), and nothing else.
func TestCoalescerAddCovered(t *testing.T) {
	base := spec{mss: 1000, payload: 4000, seq: 1000, seed: 21}
	segs := ipPackets(t, base)
	tcp := segs[1][20:]
	tcp[16] ^= 0x5a // a wrong TCP checksum: Add passes it through
	c := NewCoalescer(8)
	for i, p := range segs {
		add := c.Add
		if i == 1 {
			add = c.AddCovered
		}
		if !add(7, macB, macA, p) {
			t.Fatal("full")
		}
	}
	if n := len(c.Frames()); n != 1 {
		t.Fatalf("AddCovered: %d frames, want 1 (merged)", n)
	}
	if st := c.Stats(); st.BadSum != 0 || st.Merged != 3 {
		t.Fatalf("stats %+v", st)
	}
	c.Reset()
	for _, p := range segs {
		c.Add(7, macB, macA, p)
	}
	if n := len(c.Frames()); n != 3 {
		t.Fatalf("Add: %d frames, want 3 (the bad segment alone)", n)
	}
	// Still no merging for what is not a plain data segment.
	c.Reset()
	syn := bytes.Clone(segs[2])
	syn[20+13] |= packet.TCPFlagSYN
	c.AddCovered(7, macB, macA, segs[0])
	c.AddCovered(7, macB, macA, syn)
	if n := len(c.Frames()); n != 2 {
		t.Fatalf("AddCovered of a SYN: %d frames, want 2", n)
	}
}

// With Gather the frames are the same, byte for byte once their Frags are
// appended, and merged segments are not copied.
func TestCoalescerGather(t *testing.T) {
	for _, sp := range segmentSpecs() {
		if sp.udp || sp.vlan || sp.ipOpts != nil || sp.flags&^(packet.TCPFlagACK|packet.TCPFlagPSH) != 0 {
			continue
		}
		orig := sp.build(t)
		var in []input
		for _, p := range ipPackets(t, sp) {
			in = append(in, input{orig.Port, p})
		}
		if len(in) > frame.MaxFrags+1 {
			continue // more segments than one gathered frame takes (see below)
		}
		t.Run(sp.String(), func(t *testing.T) {
			want := feed(t, NewCoalescer(4), in)
			c := NewCoalescer(4)
			c.Gather = true
			for _, p := range in {
				if !c.Add(p.port, macB, macA, p.pkt) {
					t.Fatal("full")
				}
			}
			frames := c.Frames()
			if len(frames) != len(want) {
				t.Fatalf("%d frames, want %d", len(frames), len(want))
			}
			for i, f := range frames {
				if len(in) > 1 && i == 0 && len(f.Frags) != len(in)-1 {
					t.Fatalf("frame 0: %d frags for %d merged segments", len(f.Frags), len(in)-1)
				}
				for k, b := range f.Frags {
					if &b[0] != &in[k+1].pkt[len(in[k+1].pkt)-len(b)] {
						t.Fatalf("frag %d does not point at segment %d's payload", k, k+1)
					}
				}
				flat := append(bytes.Clone(f.Data()), bytes.Join(f.Frags, nil)...)
				if !bytes.Equal(flat, want[i].Data()) || f.Offload != want[i].Offload || f.FullLen() != want[i].Len {
					t.Fatalf("frame %d differs from the copied one", i)
				}
			}
			c.Reset()
			if c.frames[0].Frags == nil || len(c.frames[0].Frags) != 0 {
				t.Fatal("Reset left the frags")
			}
		})
	}
	// No more than frame.MaxFrags.
	sp := spec{mss: 100, payload: 100 * (frame.MaxFrags + 10), seed: 5}
	c := NewCoalescer(4)
	c.Gather = true
	for _, p := range ipPackets(t, sp) {
		c.Add(1, macB, macA, p)
	}
	fs := c.Frames()
	if len(fs) != 2 || len(fs[0].Frags) != frame.MaxFrags {
		t.Fatalf("%d frames, %d frags in the first; want 2 and %d", len(fs), len(fs[0].Frags), frame.MaxFrags)
	}
}
