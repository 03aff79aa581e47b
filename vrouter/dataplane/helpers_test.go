package dataplane

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// memPort and memConn are in-memory implementations of the engine's I/O
// seams, port.Port and tunnel.Conn: test doubles of the interfaces the
// engine reads and writes through, not of an external system. The real
// TAP, AF_PACKET and UDP/GRE implementations are tested against the kernel
// in their own packages and in vrouter/server; here they would only add
// system calls to what the benchmarks measure and the tests check.
//
// A source of frames (gen) hands out copies of its templates, round robin.
// Only the first use of a buffer copies a template whole; after that only
// the headers the engine rewrites are restored (the engine never writes a
// payload in place), so that a benchmark of 64 KiB super-frames measures
// the engine rather than memmove.

// template is one frame or datagram a double hands out.
type template struct {
	data    []byte
	off     frame.Offload
	segSize int        // tunnel: a GRO train of segSize-byte datagrams
	addr    netip.Addr // tunnel: the sender
	hdr     int        // bytes to restore on reuse
}

type gen struct {
	tmpl []template
	next int
	// What each position of the caller's batch held after the last fill:
	// the frame and the template copied into it whole. Receive loops pass
	// the same frames in the same order every time.
	slots []genSlot
}

type genSlot struct {
	f    *frame.Frame
	tmpl int
}

// fill makes f, the i-th frame of a batch, a copy of the next template and
// returns that template.
func (g *gen) fill(i int, f *frame.Frame) *template {
	k := g.next
	g.next = (g.next + 1) % len(g.tmpl)
	t := &g.tmpl[k]
	for len(g.slots) <= i {
		g.slots = append(g.slots, genSlot{tmpl: -1})
	}
	n := len(t.data)
	if s := &g.slots[i]; s.f == f && s.tmpl == k {
		n = min(t.hdr, n)
	} else {
		*s = genSlot{f: f, tmpl: k}
	}
	copy(f.Buf[frame.Headroom:], t.data[:n])
	f.Off, f.Len, f.Offload = frame.Headroom, len(t.data), t.off
	return t
}

// memPort is a port.Port in memory. Read hands out the generator's frames
// when it has one, else blocks until Close (or until inject gives it one:
// the engine's own loop can then run against it); Write records what the
// engine sent.
type memPort struct {
	name string
	gen  gen
	in   chan []byte

	mu      sync.Mutex
	closed  bool
	done    chan struct{}
	frames  uint64
	bytes   uint64
	keep    bool     // record copies of the written frames in sent
	sent    [][]byte // copies, when keep
	offload []frame.Offload
	notify  chan struct{}
}

var _ port.Port = (*memPort)(nil)

func newMemPort(name string) *memPort {
	return &memPort{name: name, in: make(chan []byte, 64), done: make(chan struct{}), notify: make(chan struct{}, 1)}
}

func (p *memPort) Name() string   { return p.name }
func (p *memPort) BatchSize() int { return port.BatchSize }

func (p *memPort) Read(frames []*frame.Frame) (int, error) {
	if len(p.gen.tmpl) > 0 {
		for i, f := range frames {
			p.gen.fill(i, f)
		}
		return len(frames), nil
	}
	select {
	case b := <-p.in:
		f := frames[0]
		f.Off, f.Len, f.Offload = frame.Headroom, copy(f.Buf[frame.Headroom:], b), frame.Offload{}
		return 1, nil
	case <-p.done:
		return 0, port.ErrClosed
	}
}

// inject queues one frame for the engine's receive loop.
func (p *memPort) Write(frames []*frame.Frame) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, port.ErrClosed
	}
	for _, f := range frames {
		p.frames++
		p.bytes += uint64(f.FullLen())
		if p.keep {
			b := append([]byte(nil), f.Data()...)
			for _, fr := range f.Frags {
				b = append(b, fr...)
			}
			p.sent = append(p.sent, b)
			p.offload = append(p.offload, f.Offload)
		}
	}
	if p.keep {
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
	return len(frames), nil
}

func (p *memPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	return nil
}

// written returns copies of the frames written so far and forgets them.
func (p *memPort) written() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sent
	p.sent, p.offload = nil, nil
	return s
}

// memConn is a tunnel.Conn in memory, like memPort. Write records what
// the engine sent: messages, datagrams (a GSO message counts each
// segment) and bytes.
type memConn struct {
	gen    gen
	gso    bool
	local  netip.AddrPort
	in     chan tunnel.Msg
	done   chan struct{}
	mu     sync.Mutex
	closed bool
	msgs   uint64
	dgrams uint64
	bytes  uint64
	keep   bool
	sent   []tunnel.Msg // copies (F and its data), when keep
}

var _ tunnel.Conn = (*memConn)(nil)

func newMemConn(gso bool) *memConn {
	return &memConn{gso: gso, in: make(chan tunnel.Msg, 64), done: make(chan struct{})}
}

func (c *memConn) Read(msgs []tunnel.Msg) (int, error) {
	if len(c.gen.tmpl) > 0 {
		for i := range msgs {
			t := c.gen.fill(i, msgs[i].F)
			msgs[i].SegSize, msgs[i].Addr = t.segSize, t.addr
			msgs[i].F.Offload = frame.Offload{}
		}
		return len(msgs), nil
	}
	select {
	case m := <-c.in:
		f := msgs[0].F
		f.Off, f.Len = frame.Headroom, copy(f.Buf[frame.Headroom:], m.F.Data())
		msgs[0].SegSize, msgs[0].Addr = m.SegSize, m.Addr
		return 1, nil
	case <-c.done:
		return 0, tunnel.ErrClosed
	}
}

func (c *memConn) Write(msgs []tunnel.Msg) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, tunnel.ErrClosed
	}
	for _, m := range msgs {
		c.msgs++
		c.bytes += uint64(m.F.Len)
		if m.SegSize > 0 {
			c.dgrams += uint64((m.F.Len + m.SegSize - 1) / m.SegSize)
		} else {
			c.dgrams++
		}
		if c.keep {
			f := &frame.Frame{Buf: append([]byte(nil), m.F.Data()...), Len: m.F.Len}
			c.sent = append(c.sent, tunnel.Msg{F: f, SegSize: m.SegSize, Addr: m.Addr, Hash: m.Hash})
		}
	}
	return len(msgs), nil
}

func (c *memConn) BatchSize() int            { return tunnel.DefaultBatch }
func (c *memConn) GSO() bool                 { return c.gso }
func (c *memConn) LocalAddr() netip.AddrPort { return c.local }
func (c *memConn) written() []tunnel.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sent
	c.sent = nil
	return s
}
func (c *memConn) counts() (msgs, dgrams uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs, c.dgrams
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

// The test bed: one VRF (network 100) with two local ports, routes to a
// remote endpoint behind MPLSoUDP and another behind VXLAN, the label and
// VNI that deliver to port 1.
var (
	gwMAC    = packet.MAC{0x00, 0x00, 0x5e, 0x00, 0x01, 0x00}
	macA     = packet.MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB     = packet.MAC{0x02, 0, 0, 0, 0, 0x0b}
	addrA    = netip.MustParseAddr("10.1.0.2") // port 1
	addrB    = netip.MustParseAddr("10.1.0.5") // port 2
	addrMPLS = netip.MustParseAddr("10.1.0.3") // remote, over MPLSoUDP
	addrVX   = netip.MustParseAddr("10.1.0.4") // remote, over VXLAN
	addrGRE  = netip.MustParseAddr("10.1.0.6") // remote, over MPLSoGRE
	addrA6   = netip.MustParseAddr("fd00:1::2")
	addrM6   = netip.MustParseAddr("fd00:1::3")
	under    = netip.MustParseAddr("192.0.2.1")
	remote   = netip.MustParseAddr("192.0.2.2")
)

const (
	vrf1, net1      = 1, 100
	labelA          = 101
	vniNet          = 100
	nhA, nhB        = 1, 2
	nhMPLS, nhVX    = 3, 4
	nhGRE           = 7
	portA, portB    = 1, 2
	testUnderlayMTU = 1500
)

type bed struct {
	e        *Engine
	mpls, vx *memConn
	gre      *memConn // without GSO: super-frames are cut into frames
	pa, pb   *memPort
	psA, psB *portState
}

// newBed builds the engine; loops says whether the ports' and tunnels'
// receive loops run (tests) or the caller drives the batches (benchmarks).
func newBed(t testing.TB, loops bool) *bed {
	t.Helper()
	b := &bed{mpls: newMemConn(true), vx: newMemConn(true), gre: newMemConn(false), pa: newMemPort("wtd-a"), pb: newMemPort("wtd-b")}
	e, err := New(Options{
		GatewayMAC: gwMAC, Underlay: under, UnderlayMTU: testUnderlayMTU,
		Tunnels: map[packet.Encap]tunnel.Conn{packet.EncapMPLSoUDP: b.mpls, packet.EncapVXLAN: b.vx, packet.EncapMPLSoGRE: b.gre},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.e = e
	t.Cleanup(func() { e.Close() })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.SetVRF(vrf1, net1))
	cfgA := PortConfig{ID: portA, Name: "a", VRF: vrf1, MAC: macA,
		Addresses: []netip.Prefix{netip.PrefixFrom(addrA, 24), netip.PrefixFrom(addrA6, 64)},
		Gateways:  []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fe80::1")}}
	cfgB := PortConfig{ID: portB, Name: "b", VRF: vrf1, MAC: macB,
		Addresses: []netip.Prefix{netip.PrefixFrom(addrB, 24)}, Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}
	b.psA, err = e.attachPort(cfgA, b.pa, loops)
	must(err)
	b.psB, err = e.attachPort(cfgB, b.pb, loops)
	must(err)
	must(e.SetNextHop(nexthop.NextHop{ID: nhA, Kind: nexthop.Port, Port: portA, DstMAC: macA, SrcMAC: gwMAC, Network: net1}))
	must(e.SetNextHop(nexthop.NextHop{ID: nhB, Kind: nexthop.Port, Port: portB, DstMAC: macB, SrcMAC: gwMAC, Network: net1}))
	must(e.SetNextHop(nexthop.NextHop{ID: nhMPLS, Kind: nexthop.Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: remote, Label: labelA, Network: net1}))
	must(e.SetNextHop(nexthop.NextHop{ID: nhVX, Kind: nexthop.Tunnel, Encap: packet.EncapVXLAN, Underlay: remote, VNI: vniNet, Network: net1}))
	must(e.SetNextHop(nexthop.NextHop{ID: nhGRE, Kind: nexthop.Tunnel, Encap: packet.EncapMPLSoGRE, Underlay: remote, Label: labelA, Network: net1}))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrA, 32), nhA))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrB, 32), nhB))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrMPLS, 32), nhMPLS))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrVX, 32), nhVX))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrGRE, 32), nhGRE))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrA6, 128), nhA))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrM6, 128), nhMPLS))
	must(e.SetLabel(labelA, nhA))
	must(e.SetVNI(vniNet, vrf1))
	if loops {
		e.Start(t.Context())
	}
	return b
}

// Packet builders. Each returns a whole frame (or tunnel payload) with
// every checksum right.

// udp4 is an Ethernet frame of frameLen bytes carrying IPv4/UDP.
func udp4(dstMAC, srcMAC packet.MAC, src, dst netip.Addr, frameLen int) []byte {
	b := make([]byte, frameLen)
	packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
	ipLen := frameLen - packet.EthernetHeaderLen
	h := packet.IPv4Header{Src: src, Dst: dst, Protocol: packet.ProtoUDP, TTL: 64, DF: true}
	hl, _ := packet.PutIPv4Header(b[14:], &h, ipLen-packet.IPv4MinHeaderLen)
	u, _ := packet.PutUDP(b[14+hl:], 40000, 5201, ipLen-hl-packet.UDPHeaderLen)
	for i := range u.Payload() {
		u.Payload()[i] = byte(i)
	}
	u.SetChecksum(src, dst)
	return b
}

// tcpOpts is the timestamp option Linux sends on every segment.
var tcpOpts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}

// tcp4 is an IPv4/TCP packet (no Ethernet) with payload bytes from seq.
func tcp4(src, dst netip.Addr, seq uint32, payload int, flags uint8) []byte {
	hl := packet.IPv4MinHeaderLen + packet.TCPMinHeaderLen + len(tcpOpts)
	b := make([]byte, hl+payload)
	h := packet.IPv4Header{Src: src, Dst: dst, Protocol: packet.ProtoTCP, TTL: 64, DF: true, ID: uint16(seq)}
	packet.PutIPv4Header(b, &h, len(b)-packet.IPv4MinHeaderLen)
	packet.PutTCPHeader(b[20:], &packet.TCPHeader{SrcPort: 40000, DstPort: 5201, Seq: seq, Ack: 7, Flags: flags, Window: 512, Options: tcpOpts})
	for i := hl; i < len(b); i++ {
		b[i] = byte(seq + uint32(i))
	}
	t, _ := packet.ParseTCP(b[20:])
	t.SetChecksum(src, dst)
	return b
}

// tsoFrame is a TCP super-frame as a TAP delivers it: total bytes of IP
// packet, GSO TCPv4 with mss, a partial checksum.
func tsoFrame(dstMAC, srcMAC packet.MAC, src, dst netip.Addr, ipLen, mss int) template {
	hl := packet.IPv4MinHeaderLen + packet.TCPMinHeaderLen + len(tcpOpts)
	pkt := tcp4(src, dst, 1000, ipLen-hl, packet.TCPFlagACK)
	b := make([]byte, packet.EthernetHeaderLen+len(pkt))
	packet.PutEthernet(b, dstMAC, srcMAC, packet.EtherTypeIPv4)
	copy(b[14:], pkt)
	return template{data: b, hdr: packet.EthernetHeaderLen + hl, off: frame.Offload{
		GSO: frame.GSOTCPv4, GSOSize: uint16(mss), HdrLen: uint16(packet.EthernetHeaderLen + hl),
		NeedsCsum: true, CsumStart: packet.EthernetHeaderLen + packet.IPv4MinHeaderLen, CsumOffset: 16,
	}}
}

// mplsPayload is an MPLSoUDP tunnel payload: label, then pkt.
func mplsPayload(label uint32, pkt []byte) []byte {
	b := make([]byte, packet.MPLSEntryLen+len(pkt))
	packet.PutMPLS(b, packet.NewMPLSEntry(label, 0, true, 64))
	copy(b[4:], pkt)
	return b
}

// vxlanPayload is a VXLAN tunnel payload: header, inner Ethernet to the
// router MAC, then pkt.
func vxlanPayload(vni uint32, pkt []byte) []byte {
	b := make([]byte, packet.VXLANHeaderLen+packet.EthernetHeaderLen+len(pkt))
	packet.PutVXLAN(b, vni)
	et := uint16(packet.EtherTypeIPv4)
	if pkt[0]>>4 == 6 {
		et = packet.EtherTypeIPv6
	}
	packet.PutEthernet(b[8:], gwMAC, packet.MAC{0x02, 0, 0, 0, 0, 0xee}, et)
	copy(b[22:], pkt)
	return b
}

// groTrain is n consecutive TCP segments of mss payload bytes from src to
// dst, each wrapped by wrap, back to back as UDP GRO delivers them.
func groTrain(n, mss int, src, dst netip.Addr, wrap func([]byte) []byte) template {
	var b []byte
	seg := 0
	for i := range n {
		d := wrap(tcp4(src, dst, uint32(1000+i*mss), mss, packet.TCPFlagACK))
		seg = len(d)
		b = append(b, d...)
	}
	return template{data: b, segSize: seg, addr: remote} // the engine writes nothing into what it reads from a tunnel
}
