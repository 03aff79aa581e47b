package gso

import (
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// The figures people quote: Gbit/s of super-frame through Segment and
// Coalescer.Add, ns per 1448-byte segment, GB/s of checksum; each with a
// baseline in the same process (a plain copy of the same bytes, the
// checksum of package packet).

// superFrame64K is a TCP super-frame of 64 KiB (45 segments of 1448 bytes
// and a shorter one), as a TAP gives it.
func superFrame64K(b *testing.B, v6 bool) *frame.Frame {
	payload := 65535 - 20 - 32
	if v6 {
		payload = frame.MaxLen - 14 - 40 - 32
	}
	return spec{v6: v6, mss: 1448, payload: payload, tcpOpts: tsOpt, seed: 1}.build(b)
}

func BenchmarkSegment(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "tcpv4", true: "tcpv6"}[v6]
		f := superFrame64K(b, v6)
		dst := make([]byte, 2*frame.BufSize)
		l := Layout{Prefix: 4, From: 14} // MPLSoUDP: a label, the IP packet
		b.Run(name, func(b *testing.B) {
			var s Segments
			b.ReportAllocs()
			b.SetBytes(int64(f.Len))
			for b.Loop() {
				var err error
				if s, err = Segment(dst, f, l, 0); err != nil {
					b.Fatal(err)
				}
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(float64(f.Len)*8/ns, "Gbit/s")
			b.ReportMetric(ns/float64(s.N), "ns/segment")
		})
		// Baseline: the copies alone, segment by segment.
		b.Run(name+"/copy-baseline", func(b *testing.B) {
			data := f.Data()
			hdr := 14 + 20 + 32
			if v6 {
				hdr += 20
			}
			b.ReportAllocs()
			b.SetBytes(int64(f.Len))
			n := 0
			for b.Loop() {
				n = 0
				for off, d := hdr, 0; off < len(data); off, d = off+1448, d+1448+hdr {
					end := min(off+1448, len(data))
					copy(dst[d+4:], data[14:hdr])
					copy(dst[d+4+hdr-14:], data[off:end])
					n++
				}
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(float64(f.Len)*8/ns, "Gbit/s")
			b.ReportMetric(ns/float64(n), "ns/segment")
		})
	}
}

func BenchmarkSegmentFrames(b *testing.B) {
	f := superFrame64K(b, false)
	out := frame.Batch(64)
	b.ReportAllocs()
	b.SetBytes(int64(f.Len))
	n := 0
	for b.Loop() {
		var err error
		if n, err = SegmentFrames(f, out, 14); err != nil {
			b.Fatal(err)
		}
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(f.Len)*8/ns, "Gbit/s")
	b.ReportMetric(ns/float64(n), "ns/segment")
}

func BenchmarkCoalescerAdd(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "tcpv4", true: "tcpv6"}[v6]
		sup := superFrame64K(b, v6)
		dst := make([]byte, 2*frame.BufSize)
		out, s, err := func() ([]byte, Segments, error) {
			s, err := Segment(dst, sup, Layout{From: 14}, 0)
			return dst[:s.Len], s, err
		}()
		if err != nil {
			b.Fatal(err)
		}
		segs := pieces(out, s, 0)
		bytesPerRound := 0
		for _, p := range segs {
			bytesPerRound += len(p)
		}
		for _, trust := range []bool{false, true} {
			b.Run(name+map[bool]string{false: "/verify", true: "/trust"}[trust], func(b *testing.B) {
				c := NewCoalescer(64)
				c.TrustChecksums = trust
				b.ReportAllocs()
				b.SetBytes(int64(bytesPerRound))
				rounds := 0
				for b.Loop() {
					for _, p := range segs {
						if !c.Add(7, macB, macA, p) {
							b.Fatal("full")
						}
					}
					rounds++
					if rounds%32 == 0 { // a batch of 32 super-frames
						if len(c.Frames()) != 32 {
							b.Fatal("not merged")
						}
						c.Reset()
					}
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(float64(bytesPerRound)*8/ns, "Gbit/s")
				b.ReportMetric(ns/float64(len(segs)), "ns/segment")
			})
		}
		// Baseline: copying each segment into a frame, no merging.
		b.Run(name+"/copy-baseline", func(b *testing.B) {
			fs := frame.Batch(len(segs))
			b.ReportAllocs()
			b.SetBytes(int64(bytesPerRound))
			for b.Loop() {
				for i, p := range segs {
					copy(fs[i].Buf[frame.Headroom+14:], p)
				}
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(float64(bytesPerRound)*8/ns, "Gbit/s")
			b.ReportMetric(ns/float64(len(segs)), "ns/segment")
		})
	}
}

// BenchmarkChecksum compares sum with the checksum of package packet (the
// baseline, through its TCP view) and with the literal RFC 1071 loop.
func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{1448, 65535} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		size := map[int]string{1448: "1448", 65535: "64KiB"}[n]
		run := func(name string, fn func() uint16) {
			b.Run(size+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(n))
				var sink uint16
				for b.Loop() {
					sink += fn()
				}
				_ = sink
				b.ReportMetric(float64(n)*float64(b.N)/float64(b.Elapsed().Nanoseconds()), "GB/s")
			})
		}
		run("gso", func() uint16 { return ^fold(sum(buf, 0)) })
		tcp, err := packet.ParseTCP(buf)
		if err != nil {
			b.Fatal(err)
		}
		run("packet-baseline", func() uint16 { return tcp.ComputeChecksum(v4A, v4B) })
		run("rfc1071-loop", func() uint16 { return ^uint16(refSum(buf, 0)) })
	}
}
