package tunnel

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
)

// BenchmarkUDP blasts datagrams from namespace A to namespace B over the
// veth pair, one op per datagram, and reports what the receiver got:
// pps, Gbit/s of tunnel payload, and the loss (UDP: a sender that outruns
// its receiver loses datagrams). Baselines run beside the Conn cases:
// a plain net.UDPConn loop, and the Conn without GSO/GRO.
//
//	go test -run '^$' -bench UDP -benchtime 2s ./vrouter/tunnel
func BenchmarkUDP(b *testing.B) {
	na, nb := underlay(b, "bench")
	dst := netip.AddrPortFrom(addrB, 6635)

	conn := func(b *testing.B, size, seg, perMsg, batch int, flows int, noOffload bool) {
		tx := listenUDPIn(b, na, UDPConfig{Listen: netip.MustParseAddrPort("0.0.0.0:6635"), NoGSO: noOffload})
		rx := listenUDPIn(b, nb, UDPConfig{Listen: netip.MustParseAddrPort("0.0.0.0:6635"), NoGRO: noOffload})
		out := make([]Msg, batch)
		for i := range out {
			f := frame.New()
			f.SetData(frame.Headroom, size*perMsg)
			out[i] = Msg{F: f, Addr: addrB, Hash: uint64(i%flows) * 0x9e3779b97f4a7c15, SegSize: seg}
		}
		mark := msgOf(nil, addrB, 0, 0)
		var reads atomic.Int64
		in := make([]Msg, rx.BatchSize())
		for i, f := range frame.Batch(len(in)) {
			in[i].F = f
		}
		blast(b,
			func(n int) int {
				sent := 0
				for sent < n {
					if _, err := tx.Write(out); err != nil {
						b.Error(err)
						break
					}
					sent += batch * perMsg
				}
				return sent
			},
			func(round uint32) {
				mark.F.SetData(frame.Headroom, 5)
				markBytes(mark.F.Data(), round)
				tx.Write([]Msg{mark})
			},
			func(round uint32, dgrams, bytes *atomic.Int64) {
				for {
					n, err := rx.Read(in)
					if err != nil {
						b.Error(err)
						return
					}
					reads.Add(1)
					var d, by int64
					for _, m := range in[:n] {
						data := m.F.Data()
						if len(data) == 5 && data[0] == 0xff && !isMark(data, round) {
							continue // a previous round's repeated marker
						}
						last := data
						if m.SegSize > 0 {
							last = data[(len(data)-1)/m.SegSize*m.SegSize:]
							d += int64((len(data) + m.SegSize - 1) / m.SegSize)
						} else {
							d++
						}
						by += int64(len(data))
						if isMark(last, round) {
							dgrams.Add(d - 1)
							bytes.Add(by - int64(len(last)))
							return
						}
					}
					dgrams.Add(d)
					bytes.Add(by)
				}
			})
		b.ReportMetric(float64(rx.Stats().DatagramsIn)/float64(max(reads.Load(), 1)), "dgrams/read")
	}

	plain := func(b *testing.B, size int) {
		tx := plainUDP(b, na, netip.MustParseAddrPort("192.0.2.1:0"))
		rx := plainUDP(b, nb, dst)
		forceBuf(b, rx, unix.SO_RCVBUFFORCE, rcvBufBytes)
		forceBuf(b, tx, unix.SO_SNDBUFFORCE, sndBufBytes)
		buf := make([]byte, size)
		rbuf := make([]byte, 65536)
		blast(b,
			func(n int) int {
				for i := range n {
					if _, err := tx.WriteToUDPAddrPort(buf, dst); err != nil {
						b.Error(err)
						return i
					}
				}
				return n
			},
			func(round uint32) {
				m := make([]byte, 5)
				markBytes(m, round)
				tx.WriteToUDPAddrPort(m, dst)
			},
			func(round uint32, dgrams, bytes *atomic.Int64) {
				for {
					n, _, err := rx.ReadFromUDPAddrPort(rbuf)
					if err != nil {
						b.Error(err)
						return
					}
					if isMark(rbuf[:n], round) {
						return
					}
					if n == 5 && rbuf[0] == 0xff {
						continue // a previous round's repeated marker
					}
					dgrams.Add(1)
					bytes.Add(int64(n))
				}
			})
	}

	b.Run("64B/net.UDPConn", func(b *testing.B) { plain(b, 64) })
	b.Run("64B/Conn", func(b *testing.B) { conn(b, 64, 0, 1, 64, 1, true) })
	b.Run("64B/Conn-16flows", func(b *testing.B) { conn(b, 64, 0, 1, 64, 16, true) })
	b.Run("1400B/net.UDPConn", func(b *testing.B) { plain(b, 1400) })
	b.Run("1400B/Conn-noGSO-noGRO", func(b *testing.B) { conn(b, 1400, 0, 1, 64, 1, true) })
	b.Run("1400B/Conn-GSO-GRO", func(b *testing.B) { conn(b, 1400, 1400, 46, 8, 1, false) })
}

// blast runs one round: the receiver counts until it sees this round's end
// marker, which the sender repeats after its b.N datagrams until then.
func blast(b *testing.B, send func(n int) int, mark func(round uint32), recv func(round uint32, dgrams, bytes *atomic.Int64)) {
	b.Helper()
	b.ReportAllocs()
	round := nextRound.Add(1)
	var dgrams, bytes atomic.Int64
	done := make(chan time.Time)
	go func() {
		recv(round, &dgrams, &bytes)
		done <- time.Now()
	}()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	nsent := send(b.N)
	sent := time.Since(start)
	var end time.Time
	for tick := time.NewTicker(2 * time.Millisecond); end.IsZero(); {
		mark(round)
		select {
		case end = <-done:
			tick.Stop()
		case <-tick.C:
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	el := end.Sub(start).Seconds()
	got := dgrams.Load()
	b.ReportMetric(float64(got)/el, "pps")
	b.ReportMetric(float64(bytes.Load())*8/el/1e9, "Gbit/s")
	b.ReportMetric(float64(nsent)/sent.Seconds(), "sent-pps")
	b.ReportMetric(100*float64(int64(nsent)-got)/float64(nsent), "loss-%")
	// CPU time of the whole process (both ends, and the kernel work done in
	// their syscalls) per datagram received: on a shared machine this is
	// steadier than rates, which measure the share of the CPUs we got.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(got, 1)), "cpu-ns/dgram")
}

var nextRound atomic.Uint32

func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// An end marker is 5 bytes: 0xff and the round; data starts with 0.
func markBytes(b []byte, round uint32) {
	b[0] = 0xff
	binary.BigEndian.PutUint32(b[1:5], round)
}

func isMark(b []byte, round uint32) bool {
	return len(b) == 5 && b[0] == 0xff && binary.BigEndian.Uint32(b[1:5]) == round
}

func forceBuf(b *testing.B, c *net.UDPConn, opt, size int) {
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, size) }); err != nil || serr != nil {
		b.Fatal(errors.Join(err, serr))
	}
}
