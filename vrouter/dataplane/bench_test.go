package dataplane

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// The forwarding-loop benchmarks run the body of a receive loop (portBatch,
// tunnelRx.batch) on batches read from the in-memory doubles, with the
// engine's real tables, next hops, encapsulation, segmentation and
// coalescing. They report the engine's cost per packet (or per super-frame
// or GRO train): no system call is in it, so it is the CPU a real loop
// spends besides the kernel's share of each read and write.
//
//	go test -run '^$' -bench Forward -benchmem ./vrouter/dataplane

// mss is the TCP segment size of the endpoint MTU a 1500-byte IPv4
// underlay gives (1450 - 20 - 32).
const mss = 1500 - packet.OverheadVXLAN4 - 20 - 32

// fastPath is one benchmark and allocation-test case.
type fastPath struct {
	name    string
	batch   int
	bytes   int    // inner IP bytes per unit, for Gbit/s; 0: none reported
	unit    string // "packet", "super-frame", "train"
	packets int    // wire packets per unit (segments of a super-frame or train)
	setup   func(t testing.TB, b *bed)
	dropped Reason // the one drop reason the case counts by design, if any
	port    func(b *bed) (*memPort, *portState)
	tunnel  func(b *bed) (*memConn, packet.Encap)
}

func fastPaths() []fastPath {
	fromA := func(tm template) func(b *bed) (*memPort, *portState) {
		return func(b *bed) (*memPort, *portState) {
			p := newMemPort("src")
			p.gen.tmpl = []template{tm}
			return p, b.psA
		}
	}
	// The engine rewrites all 64 bytes' headers; restoring the whole frame
	// costs next to nothing.
	u64 := func(dst netip.Addr) template {
		return template{data: udp4(gwMAC, macA, addrA, dst, 64), hdr: 64}
	}
	inTun := func(enc packet.Encap, tm template) func(b *bed) (*memConn, packet.Encap) {
		return func(b *bed) (*memConn, packet.Encap) {
			c := newMemConn(true)
			c.gen.tmpl = []template{tm}
			return c, enc
		}
	}
	inner64 := udp4(macA, gwMAC, addrMPLS, addrA, 64)[packet.EthernetHeaderLen:]
	tso := tsoFrame(gwMAC, macA, addrA, addrMPLS, 65535-14, mss)
	tsoVX := tsoFrame(gwMAC, macA, addrA, addrVX, 65535-14, mss)
	const groSegs = 44
	gro := groTrain(groSegs, mss, addrMPLS, addrA, func(p []byte) []byte { return mplsPayload(labelA, p) })
	groVX := groTrain(groSegs, mss, addrVX, addrA, func(p []byte) []byte { return vxlanPayload(vniNet, p) })
	groBytes := groSegs * (mss + 52)
	return []fastPath{
		{name: "udp64-port-to-mplsoudp", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(u64(addrMPLS))},
		{name: "udp64-port-to-vxlan", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(u64(addrVX))},
		{name: "udp64-port-to-port", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(u64(addrB))},
		// Between two networks: the flow table's cached decision.
		{name: "udp64-port-to-port-policy", batch: port.BatchSize, unit: "packet", packets: 1, setup: func(t testing.TB, b *bed) { b.twoNetworks(t).io.(*memPort).keep = false },
			port: fromA(template{data: ipFrame(macA, udpTo(addrA, addrC, 40000, 53)), hdr: 64})},
		{name: "udp64-mplsoudp-to-port", batch: tunnel.DefaultBatch, unit: "packet", packets: 1,
			tunnel: inTun(packet.EncapMPLSoUDP, template{data: mplsPayload(labelA, inner64), addr: remote, hdr: 0})},
		{name: "udp64-vxlan-to-port", batch: tunnel.DefaultBatch, unit: "packet", packets: 1,
			tunnel: inTun(packet.EncapVXLAN, template{data: vxlanPayload(vniNet, inner64), addr: remote, hdr: 0})},
		{name: "tso64k-port-to-mplsoudp", batch: 4, unit: "super-frame", bytes: 65535 - 14, packets: (65535 - 14 - 52 + mss - 1) / mss, port: fromA(tso)},
		{name: "tso64k-port-to-vxlan", batch: 4, unit: "super-frame", bytes: 65535 - 14, packets: (65535 - 14 - 52 + mss - 1) / mss, port: fromA(tsoVX)},
		// Less travelled paths, for TestFastPathAllocs.
		{name: "tso64k-port-to-mplsogre", batch: 4, unit: "super-frame", bytes: 65535 - 14, packets: (65535 - 14 - 52 + mss - 1) / mss, port: fromA(tsoFrame(gwMAC, macA, addrA, addrGRE, 65535-14, mss))},
		{name: "udp64-mplsogre-to-port", batch: tunnel.DefaultBatch, unit: "packet", packets: 1,
			tunnel: inTun(packet.EncapMPLSoGRE, template{data: grePayload(mplsPayload(labelA, inner64)), addr: remote})},
		{name: "udp-v6-port-to-mplsoudp", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(template{data: ipFrame(macA, udp6(addrA6, addrM6, 64)), hdr: 14 + 48})},
		{name: "arp-request", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(template{data: arpRequest(macA, addrA, addrGW), hdr: 42})},
		{name: "ping-gateway", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(template{data: ipFrame(macA, echo4(addrA, addrGW)), hdr: 14 + 28})},
		{name: "df-too-big-frag-needed", batch: port.BatchSize, unit: "packet", packets: 1, port: fromA(template{data: udp4(gwMAC, macA, addrA, addrMPLS, 1514), hdr: 42}), dropped: DropTooBig},
		{name: "gro44-mplsoudp-to-port", batch: 4, unit: "train", bytes: groBytes, packets: groSegs, tunnel: inTun(packet.EncapMPLSoUDP, gro)},
		// A whole recvmmsg batch of trains, as a loaded receive loop reads
		// them: 64 of 64 KiB, far more than the L2 cache holds.
		{name: "gro44-mplsoudp-to-port-batch64", batch: tunnel.DefaultBatch, unit: "train", bytes: groBytes, packets: groSegs, tunnel: inTun(packet.EncapMPLSoUDP, gro)},
		{name: "gro44-vxlan-to-port", batch: 4, unit: "train", bytes: groBytes, packets: groSegs, tunnel: inTun(packet.EncapVXLAN, groVX)},
	}
}

// runner returns one batch's work for case c on bed b.
func (c fastPath) runner(t testing.TB, b *bed) func() {
	if c.setup != nil {
		c.setup(t, b)
	}
	if c.port != nil {
		src, ps := c.port(b)
		frames := frame.Batch(c.batch)
		q := newTxq(b.e)
		return func() {
			n, _ := src.Read(frames)
			b.e.portBatch(ps, frames[:n], q)
		}
	}
	src, enc := c.tunnel(b)
	msgs := make([]tunnel.Msg, c.batch)
	for i := range msgs {
		msgs[i].F = frame.New()
	}
	rx := b.e.newTunnelRx(enc)
	return func() {
		n, _ := src.Read(msgs)
		rx.batch(msgs[:n])
	}
}

// BenchmarkForward measures the forwarding loops per packet: ns/packet
// (or per super-frame, per GRO train), allocs/packet, and Gbit/s of inner
// IP bytes for the TCP cases.
func BenchmarkForward(b *testing.B) {
	for _, c := range fastPaths() {
		b.Run(c.name, func(b *testing.B) {
			bd := newBed(b, false)
			run := c.runner(b, bd)
			run() // warm up: pools, queues, flow entries
			b.ReportAllocs()
			var ms0, ms1 runtimeMem
			ms0.read()
			start := time.Now()
			for b.Loop() {
				run()
			}
			el := time.Since(start)
			ms1.read()
			units := float64(b.N * c.batch)
			ns := float64(el.Nanoseconds()) / units
			b.ReportMetric(ns, "ns/"+c.unit)
			b.ReportMetric(float64(ms1.mallocs-ms0.mallocs)/units, "allocs/"+c.unit)
			if c.packets > 1 {
				b.ReportMetric(ns/float64(c.packets), "ns/packet")
			}
			if c.bytes > 0 {
				b.ReportMetric(float64(c.bytes)*8/ns, "Gbit/s")
			}
			if d := c.unexpectedDrops(bd.e); len(d) != 0 {
				b.Fatalf("drops: %v", d)
			}
		})
	}
}

// runtimeMem reads the allocation count of the whole process.
type runtimeMem struct{ mallocs uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs = ms.Mallocs
}

// TestFastPathAllocs fails when a forwarding path allocates in its steady
// state: every case of BenchmarkForward, after a first batch that fills
// the pools, queues and flow table.
func TestFastPathAllocs(t *testing.T) {
	for _, c := range fastPaths() {
		t.Run(c.name, func(t *testing.T) {
			bd := newBed(t, false)
			run := c.runner(t, bd)
			run()
			if a := testing.AllocsPerRun(50, run); a != 0 {
				t.Errorf("%v allocations per batch of %d", a, c.batch)
			}
			if d := c.unexpectedDrops(bd.e); len(d) != 0 {
				t.Errorf("drops: %v", d)
			}
		})
	}
}

// grePayload is the raw-socket payload of MPLSoGRE: a GRE header, then p.
func grePayload(p []byte) []byte {
	b := make([]byte, packet.GREHeaderLen+len(p))
	packet.PutGRE(b, packet.EtherTypeMPLS)
	copy(b[packet.GREHeaderLen:], p)
	return b
}

// udp6 is an IPv6/UDP packet of n bytes.
func udp6(src, dst netip.Addr, n int) []byte {
	b := make([]byte, n)
	h := packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst}
	packet.PutIPv6Header(b, &h, n-40)
	u, _ := packet.PutUDP(b[40:], 40000, 5201, n-48)
	u.SetChecksum(src, dst)
	return b
}

// arpRequest is a who-has for target from the endpoint.
func arpRequest(mac packet.MAC, sender, target netip.Addr) []byte {
	b := make([]byte, 42)
	packet.PutEthernet(b, packet.BroadcastMAC, mac, packet.EtherTypeARP)
	packet.PutARP(b[14:], packet.ARPRequest, mac, sender, packet.MAC{}, target)
	return b
}

// echo4 is an ICMP echo request (no Ethernet).
func echo4(src, dst netip.Addr) []byte {
	b := make([]byte, 28)
	h := packet.IPv4Header{Src: src, Dst: dst, Protocol: packet.ProtoICMPv4, TTL: 64}
	packet.PutIPv4Header(b, &h, 8)
	packet.PutICMPv4Echo(b[20:], packet.ICMPv4Echo, 7, 1, 0)
	return b
}

func (c fastPath) unexpectedDrops(e *Engine) map[string]uint64 {
	d := e.Counters().Drops
	if c.dropped != 0 {
		delete(d, c.dropped.String())
	}
	return d
}
