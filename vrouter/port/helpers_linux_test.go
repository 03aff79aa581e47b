package port

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// The test stands in for the vRouter on the far side of a port: it owns a
// gateway MAC and address, answers ARP and ICMP echo for it, and plays the
// peer of TCP connections, all by reading and writing frames.
var (
	gwMAC  = packet.MAC{0x02, 0x77, 0x74, 0x70, 0x00, 0x01}
	gw4    = netip.MustParseAddr("10.0.100.1")
	ep4    = netip.MustParseAddr("10.0.100.3")
	ep4Net = netip.MustParsePrefix("10.0.100.3/24")
	ep6Net = netip.MustParsePrefix("2001:db8:100::3/64")
)

// rxFrame is a copy of a frame the peer read.
type rxFrame struct {
	data []byte
	off  frame.Offload
}

// peer serves a port in a goroutine until the port is closed.
type peer struct {
	t    testing.TB
	p    Port
	mac  packet.MAC
	ip   netip.Addr
	arp  chan rxFrame // ARP requests for ip (after they were answered)
	icmp chan rxFrame // echo requests to ip (after they were answered)
	tcp  chan rxFrame // TCP to ip
	udp  chan rxFrame // UDP to ip
	done chan struct{}

	txMu sync.Mutex
	tx   *frame.Frame
	// writes counts the peer's own replies (ARP, echo), which the port
	// counts among its sent frames.
	writes atomic.Uint64
	// gather: write frames with their tail in Frags.
	gather atomic.Bool
	// noHeadroom: build replies at offset 0 of the buffer.
	noHeadroom atomic.Bool
}

// startPeer serves p; the port is closed when the test ends.
func startPeer(t testing.TB, p Port, mac packet.MAC, ip netip.Addr) *peer {
	pr := &peer{
		t: t, p: p, mac: mac, ip: ip,
		arp: make(chan rxFrame, 64), icmp: make(chan rxFrame, 64),
		tcp: make(chan rxFrame, 4096), udp: make(chan rxFrame, 1024),
		done: make(chan struct{}), tx: frame.New(),
	}
	go pr.serve()
	t.Cleanup(func() {
		p.Close()
		<-pr.done
	})
	return pr
}

func (pr *peer) serve() {
	defer close(pr.done)
	frames := frame.Batch(8)
	for {
		n, err := pr.p.Read(frames)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				pr.t.Errorf("peer read: %v", err)
			}
			return
		}
		for _, f := range frames[:n] {
			pr.handle(f)
		}
	}
}

func copyFrame(f *frame.Frame) rxFrame {
	return rxFrame{data: append([]byte(nil), f.Data()...), off: f.Offload}
}

func push(c chan rxFrame, f rxFrame) {
	select {
	case c <- f:
	default:
	}
}

func (pr *peer) handle(f *frame.Frame) {
	eth, err := packet.ParseEthernet(f.Data())
	if err != nil {
		return
	}
	switch eth.EtherType() {
	case packet.EtherTypeARP:
		a, err := packet.ParseARP(eth.Payload())
		if err != nil || a.Op() != packet.ARPRequest || a.TargetIP() != pr.ip {
			return
		}
		pr.send(func(b []byte) int {
			packet.PutEthernet(b, a.SenderMAC(), pr.mac, packet.EtherTypeARP)
			packet.PutARP(b[14:], packet.ARPReply, pr.mac, pr.ip, a.SenderMAC(), a.SenderIP())
			return 14 + packet.ARPLen
		})
		push(pr.arp, copyFrame(f))
	case packet.EtherTypeIPv4:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil || ip.Dst() != pr.ip {
			return
		}
		switch ip.Protocol() {
		case packet.ProtoICMPv4:
			m, err := packet.ParseICMPv4(ip.Payload())
			if err != nil || m.Type() != packet.ICMPv4Echo {
				return
			}
			d := f.Data()
			pr.send(func(b []byte) int {
				n := copy(b, d)
				e, _ := packet.ParseEthernet(b[:n])
				e.SetDst(eth.Src())
				e.SetSrc(pr.mac)
				h := e.Payload()
				var s, t [4]byte
				copy(s[:], h[12:16])
				copy(t[:], h[16:20])
				copy(h[12:16], t[:])
				copy(h[16:20], s[:])
				r, _ := packet.ParseIPv4(h)
				rm, _ := packet.ParseICMPv4(r.Payload())
				rm.Bytes()[0] = packet.ICMPv4EchoReply
				rm.SetChecksum()
				return n
			})
			push(pr.icmp, copyFrame(f))
		case packet.ProtoTCP:
			push(pr.tcp, copyFrame(f))
		case packet.ProtoUDP:
			push(pr.udp, copyFrame(f))
		}
	}
}

// send builds one frame with build (which returns its length) and writes it.
func (pr *peer) send(build func(b []byte) int) {
	pr.txMu.Lock()
	defer pr.txMu.Unlock()
	f := pr.tx
	f.Reset()
	if pr.noHeadroom.Load() {
		f.Off = 0
	}
	f.Len = build(f.Buf[f.Off:])
	pr.write(f)
}

func (pr *peer) write(f *frame.Frame) {
	if pr.gather.Load() && f.Len > 80 {
		// The same bytes as a gathered frame: the headers (and a little)
		// in Data, the rest in Frags of up to 1000 bytes, as the
		// Coalescer points them at a train's payloads.
		g := *f
		head := max(80, int(f.HdrLen))
		rest := f.Buf[f.Off+head : f.Off+f.Len]
		g.Len = head
		g.Frags = nil
		for len(rest) > 0 {
			n := min(1000, len(rest))
			if len(g.Frags) == frame.MaxFrags-1 {
				n = len(rest)
			}
			g.Frags = append(g.Frags, rest[:n])
			rest = rest[n:]
		}
		f = &g
	}
	n, err := pr.p.Write([]*frame.Frame{f})
	pr.writes.Add(uint64(n))
	if err != nil && !errors.Is(err, ErrClosed) {
		pr.t.Errorf("peer write: %v", err)
	}
}

// tcpSeg is what buildTCP4 writes.
type tcpSeg struct {
	srcMAC, dstMAC packet.MAC
	src, dst       netip.AddrPort
	seq, ack       uint32
	flags          uint8
	window         uint16
	opts           []byte
	payload        []byte
	gsoSize        int // > 0: a GSO super-frame with a partial checksum
}

// buildTCP4 writes s into f at the standard headroom.
func buildTCP4(f *frame.Frame, s *tcpSeg) {
	f.Reset()
	b := f.Buf[f.Off:]
	packet.PutEthernet(b, s.dstMAC, s.srcMAC, packet.EtherTypeIPv4)
	thl := packet.TCPMinHeaderLen + len(s.opts)
	tcpLen := thl + len(s.payload)
	ihl, err := packet.PutIPv4Header(b[14:], &packet.IPv4Header{
		ID: uint16(s.seq), DF: true, Protocol: packet.ProtoTCP, Src: s.src.Addr(), Dst: s.dst.Addr(),
	}, tcpLen)
	if err != nil {
		panic(err)
	}
	l4 := b[14+ihl:]
	if _, err := packet.PutTCPHeader(l4, &packet.TCPHeader{
		SrcPort: s.src.Port(), DstPort: s.dst.Port(), Seq: s.seq, Ack: s.ack,
		Flags: s.flags, Window: s.window, Options: s.opts,
	}); err != nil {
		panic(err)
	}
	copy(l4[thl:], s.payload)
	f.Len = 14 + ihl + tcpLen
	if s.gsoSize > 0 {
		f.Offload = frame.Offload{
			GSO: frame.GSOTCPv4, GSOSize: uint16(s.gsoSize), HdrLen: uint16(14 + ihl + thl),
			NeedsCsum: true, CsumStart: uint16(14 + ihl), CsumOffset: 16,
		}
		binary.BigEndian.PutUint16(l4[16:18], pseudoSum4(s.src.Addr(), s.dst.Addr(), packet.ProtoTCP, tcpLen))
		return
	}
	t, err := packet.ParseTCP(l4[:tcpLen])
	if err != nil {
		panic(err)
	}
	t.SetChecksum(s.src.Addr(), s.dst.Addr())
}

// pseudoSum4 is the folded, not complemented, IPv4 pseudo-header sum: what
// a partial checksum's field holds.
func pseudoSum4(src, dst netip.Addr, proto uint8, length int) uint16 {
	s, d := src.As4(), dst.As4()
	var acc uint32
	acc += uint32(s[0])<<8 | uint32(s[1])
	acc += uint32(s[2])<<8 | uint32(s[3])
	acc += uint32(d[0])<<8 | uint32(d[1])
	acc += uint32(d[2])<<8 | uint32(d[3])
	acc += uint32(proto) + uint32(length)
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// tcpView parses a TCP-over-IPv4 frame.
func tcpView(t testing.TB, d []byte) (packet.IPv4, packet.TCP) {
	t.Helper()
	eth, err := packet.ParseEthernet(d)
	if err != nil {
		t.Fatalf("ethernet: %v", err)
	}
	ip, err := packet.ParseIPv4(eth.Payload())
	if err != nil {
		t.Fatalf("ipv4: %v", err)
	}
	tcp, err := packet.ParseTCP(ip.Payload())
	if err != nil {
		t.Fatalf("tcp: %v", err)
	}
	return ip, tcp
}

// synOpts are the options of our SYN and SYN-ACK: MSS 1460, window scale 7.
var synOpts = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 7}

const wscale = 7

// wscaleOf finds the window scale option, 0 if absent.
func wscaleOf(tcp packet.TCP) uint {
	o := tcp.Options()
	for i := 0; i < len(o); {
		switch o[i] {
		case 0:
			return 0
		case 1:
			i++
			continue
		}
		if i+1 >= len(o) || o[i+1] < 2 {
			return 0
		}
		if o[i] == 3 && o[i+1] == 3 && i+2 < len(o) {
			return uint(o[i+2])
		}
		i += int(o[i+1])
	}
	return 0
}

// pattern is the byte at offset i of the test streams.
func pattern(i int) byte { return byte(i*7 + i>>8 + 3) }

func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern(i)
	}
	return b
}

// nextTCP returns the next TCP frame the peer saw, or fails after timeout.
func (pr *peer) nextTCP(t testing.TB, timeout time.Duration) rxFrame {
	t.Helper()
	select {
	case f := <-pr.tcp:
		return f
	case <-time.After(timeout):
		t.Fatalf("no TCP frame within %v", timeout)
	}
	return rxFrame{}
}

// linkNames lists the links of ns.
func linkNames(t testing.TB, ns *nettest.NS) []string {
	t.Helper()
	links, err := ns.NL.LinkList()
	if err != nil {
		t.Fatalf("links in %s: %v", ns.Name, err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

func hw(m packet.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }
