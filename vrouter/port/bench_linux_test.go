package port

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// ioBed is a port with a workload behind it that has the gateway as a
// permanent neighbour (no ARP on the measured path), a UDP socket inside
// that never reads (the sink of what the port writes) and one that sends
// to the gateway (the source of what the port reads).
type ioBed struct {
	p      Port
	dstMAC packet.MAC
	ns     *nettest.NS
	sink   *net.UDPConn
	src    *net.UDPConn
}

func neighbour(t testing.TB, ns *nettest.NS, ifname string) packet.MAC {
	t.Helper()
	l, err := ns.NL.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.NL.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: gw4.AsSlice(), HardwareAddr: hw(gwMAC)}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	return packet.MAC(l.Attrs().HardwareAddr)
}

func (bed *ioBed) sockets(t testing.TB) {
	t.Helper()
	if err := bed.ns.Do(func() (err error) {
		if bed.sink, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ep4, 9))); err != nil {
			return err
		}
		bed.src, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw4, 9)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bed.sink.Close(); bed.src.Close() })
}

func tapBed(t testing.TB) *ioBed {
	t.Helper()
	testenv.RequireRoot(t)
	vr := nettest.New(t, "wtp-bvr")
	ep := nettest.New(t, "wtp-bep")
	var tap *TAP
	if err := vr.Do(func() (err error) {
		tap, err = CreateTAP(TAPConfig{Name: "wtp-bench", Netns: ep.Name, Addresses: []netip.Prefix{ep4Net}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	bed := &ioBed{p: tap, ns: ep, dstMAC: tap.MAC()}
	neighbour(t, ep, "eth0")
	bed.sockets(t)
	return bed
}

func afpBed(t testing.TB) *ioBed {
	t.Helper()
	testenv.RequireRoot(t)
	pa := nettest.New(t, "wtp-bpa")
	pb := nettest.New(t, "wtp-bpb")
	nettest.Veth(t, pa, "wtp-bpa0", "", pb, "wtp-bpb0", ep4Net.String())
	var p *AFPacket
	if err := pa.Do(func() (err error) {
		p, err = OpenAFPacket("wtp-bpa0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	bed := &ioBed{p: p, ns: pb}
	bed.dstMAC = neighbour(t, pb, "wtp-bpb0")
	bed.sockets(t)
	return bed
}

// udpFrames are n UDP datagrams of size bytes of payload from the gateway
// to the sink, checksum left to the kernel.
func (bed *ioBed) udpFrames(n, size int) []*frame.Frame {
	fs := frame.Batch(n)
	for _, f := range fs {
		b := f.Buf[f.Off:]
		packet.PutEthernet(b, bed.dstMAC, gwMAC, packet.EtherTypeIPv4)
		packet.PutIPv4Header(b[14:], &packet.IPv4Header{Protocol: packet.ProtoUDP, Src: gw4, Dst: ep4}, 8+size)
		packet.PutUDP(b[34:], 9, 9, size)
		f.Len = 42 + size
		f.Offload = frame.Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 6}
	}
	return fs
}

// queue has the source send n datagrams toward the port and waits until
// the kernel has had time to queue them.
func (bed *ioBed) queue(t testing.TB, n int) {
	t.Helper()
	b := make([]byte, 64)
	for i := 0; i < n; i++ {
		if _, err := bed.src.Write(b); err != nil {
			t.Fatalf("source: %v", err)
		}
	}
	time.Sleep(20 * time.Millisecond)
}

// The fast path allocates nothing per frame, on either kind of port, in
// either direction.
func TestNoAllocs(t *testing.T) {
	for _, kind := range []struct {
		name string
		bed  func(testing.TB) *ioBed
	}{{"tap", tapBed}, {"afpacket", afpBed}} {
		t.Run(kind.name, func(t *testing.T) {
			bed := kind.bed(t)
			w := bed.udpFrames(8, 1000)
			bed.p.Write(w) // warm the pool
			if a := testing.AllocsPerRun(50, func() {
				if n, err := bed.p.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}); a != 0 {
				t.Errorf("Write: %.1f allocations per batch", a)
			}
			const runs, batch = 50, 4
			bed.queue(t, (runs+2)*batch)
			r := frame.Batch(batch)
			if a := testing.AllocsPerRun(runs, func() {
				if _, err := bed.p.Read(r); err != nil {
					t.Fatalf("Read: %v", err)
				}
			}); a != 0 {
				t.Errorf("Read: %.1f allocations per batch", a)
			}
			if s := stats(bed.p); s.Drops[DropTxBadOffload]+s.Drops[DropTxRefused] != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func stats(p Port) Stats {
	switch p := p.(type) {
	case *TAP:
		return p.Stats()
	case *AFPacket:
		return p.Stats()
	}
	return Stats{}
}

func benchWrite(b *testing.B, bed *ioBed, fs []*frame.Frame) {
	b.ReportAllocs()
	bytes := 0
	for _, f := range fs {
		bytes += f.Len
	}
	b.SetBytes(int64(bytes))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := bed.p.Write(fs); err != nil {
			b.Fatal(err)
		}
	}
	report(b, b.N*len(fs))
}

func report(b *testing.B, frames int) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(s*1e9/float64(frames), "ns/frame")
	b.ReportMetric(float64(frames)/s, "frames/s")
}

// gsoFrames are n TCP super-frames of 44 segments of 1460 bytes toward the
// workload (a connection it does not have: it answers with a reset).
func (bed *ioBed) gsoFrames(n int) []*frame.Frame {
	fs := frame.Batch(n)
	payload := make([]byte, 44*1460)
	for i, f := range fs {
		buildTCP4(f, &tcpSeg{srcMAC: gwMAC, dstMAC: bed.dstMAC, src: netip.AddrPortFrom(gw4, 40000),
			dst: netip.AddrPortFrom(ep4, 9), seq: uint32(i * len(payload)), flags: packet.TCPFlagACK,
			window: 1000, payload: payload, gsoSize: 1460})
	}
	return fs
}

func BenchmarkTAPWrite(b *testing.B) {
	bed := tapBed(b)
	b.Run("udp1000x32", func(b *testing.B) { benchWrite(b, bed, bed.udpFrames(32, 1000)) })
	// Baseline: the bare write(2) per frame, headers encoded beforehand.
	b.Run("udp1000x32-bare-write", func(b *testing.B) {
		fs := bed.udpFrames(32, 1000)
		for _, f := range fs {
			encodeVnet(f.Buf[f.Off-vnetHdrLen:f.Off], &f.Offload, f.Data())
		}
		tap := bed.p.(*TAP)
		b.SetBytes(int64(32 * fs[0].Len))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, f := range fs {
				unix.Write(int(tap.file.Fd()), f.Buf[f.Off-vnetHdrLen:f.Off+f.Len])
			}
		}
		report(b, b.N*len(fs))
	})
	b.Run("tcpgso64k", func(b *testing.B) { benchWrite(b, bed, bed.gsoFrames(4)) })
}

func BenchmarkAFPacketWrite(b *testing.B) {
	bed := afpBed(b)
	b.Run("udp1000x32", func(b *testing.B) { benchWrite(b, bed, bed.udpFrames(32, 1000)) })
	b.Run("tcpgso64k", func(b *testing.B) { benchWrite(b, bed, bed.gsoFrames(4)) })
}

// benchRead has the source send small datagrams as fast as it can while
// the port reads b.N frames: what one core of reading costs per frame
// with the kernel's side running on the other.
func benchRead(b *testing.B, bed *ioBed) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			bed.src.Write(buf)
		}
	}()
	defer func() { close(stop); <-done }()
	fs := frame.Batch(BatchSize)
	b.ReportAllocs()
	b.ResetTimer()
	got, calls := 0, 0
	for got < b.N {
		n, err := bed.p.Read(fs)
		if err != nil {
			b.Fatal(err)
		}
		got += n
		calls++
	}
	report(b, got)
	b.ReportMetric(float64(got)/float64(calls), "frames/read")
}

// benchReadQueued times only the reading: rounds of 256 datagrams are
// queued first (the timer stopped), then read in batches.
func benchReadQueued(b *testing.B, bed *ioBed) {
	const round = 256
	fs := frame.Batch(BatchSize)
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	got, calls := 0, 0
	for got < b.N {
		b.StopTimer()
		for i := 0; i < round; i++ {
			bed.src.Write(buf)
		}
		time.Sleep(time.Millisecond) // veth delivers from softirq
		b.StartTimer()
		for r := 0; r < round; {
			n, err := bed.p.Read(fs)
			if err != nil {
				b.Fatal(err)
			}
			r += n
			got += n
			calls++
		}
	}
	report(b, got)
	b.ReportMetric(float64(got)/float64(calls), "frames/read")
}

func BenchmarkTAPRead(b *testing.B) {
	bed := tapBed(b)
	b.Run("live", func(b *testing.B) { benchRead(b, bed) })
	b.Run("queued", func(b *testing.B) { benchReadQueued(b, bed) })
}

func BenchmarkAFPacketRead(b *testing.B) {
	bed := afpBed(b)
	b.Run("live", func(b *testing.B) { benchRead(b, bed) })
	b.Run("queued", func(b *testing.B) { benchReadQueued(b, bed) })
}

func BenchmarkDecodeVnet(b *testing.B) {
	h := hdr(vnetFlagNeedsCsum, vnetGSOTCPv4, 54, 1460, 34, 16)
	data := l4Frame(20, 20, 1000, false)
	var o frame.Offload
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		decodeVnet(h, data, &o)
	}
}

func BenchmarkEncodeVnet(b *testing.B) {
	o := frame.Offload{GSO: frame.GSOTCPv4, GSOSize: 1460, HdrLen: 54, NeedsCsum: true, CsumStart: 34, CsumOffset: 16}
	data := l4Frame(20, 20, 1000, false)
	h := make([]byte, vnetHdrLen)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if checkOffload(&o, len(data)) == nil {
			encodeVnet(h, &o, data)
		}
	}
}

// Frames the kernel drops because nobody reads the port show as
// DropKernel: a TAP's full queue (its tx_dropped, read from the device's
// namespace) and an AF_PACKET socket's full buffer (tp_drops).
func TestKernelDrops(t *testing.T) {
	for _, kind := range []struct {
		name string
		bed  func(testing.TB) *ioBed
		send int
	}{{"tap", tapBed, 3000}, {"afpacket", afpBed, 30000}} {
		t.Run(kind.name, func(t *testing.T) {
			bed := kind.bed(t)
			bed.queue(t, kind.send)
			d1 := stats(bed.p).Drops[DropKernel]
			if d1 == 0 {
				t.Fatalf("no kernel drops after %d frames were sent and none read", kind.send)
			}
			// Counted once, not again on the next look.
			if d2 := stats(bed.p).Drops[DropKernel]; d2 != d1 {
				t.Errorf("drops %d then %d with no traffic between", d1, d2)
			}
			t.Logf("%d of %d dropped by the kernel", d1, kind.send)
		})
	}
}
