package dataplane

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// A second network on the bed: port C in VRF 2 (network 200) on this
// vRouter, and a remote endpoint of network 300 behind MPLSoUDP. Network
// 100 may reach both on UDP port 53 only.
var (
	macC     = packet.MAC{0x02, 0, 0, 0, 0, 0x0c}
	addrC    = netip.MustParseAddr("10.2.0.9") // port 3, network 200
	addrR    = netip.MustParseAddr("10.3.0.7") // remote, network 300
	addrGW   = netip.MustParseAddr("10.1.0.1") // port A's gateway
	gw6      = netip.MustParseAddr("fe80::1")  // every port's IPv6 gateway
	vrf2     = uint32(2)
	net2     = uint32(200)
	net3     = uint32(300)
	portC    = uint32(3)
	nhC, nhR = nexthop.ID(5), nexthop.ID(6)
)

func (b *bed) twoNetworks(t testing.TB) *portState {
	t.Helper()
	e := b.e
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.SetVRF(vrf2, net2))
	pc := newMemPort("wtd-c")
	pc.keep = true
	ps, err := e.attachPort(PortConfig{ID: portC, Name: "c", VRF: vrf2, MAC: macC,
		Addresses: []netip.Prefix{netip.PrefixFrom(addrC, 24)}, Gateways: []netip.Addr{netip.MustParseAddr("10.2.0.1")}}, pc, false)
	must(err)
	must(e.SetNextHop(nexthop.NextHop{ID: nhC, Kind: nexthop.Port, Port: nexthop.PortID(portC), DstMAC: macC, SrcMAC: gwMAC, Network: net2}))
	must(e.SetNextHop(nexthop.NextHop{ID: nhR, Kind: nexthop.Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: remote, Label: 300, Network: net3}))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrC, 32), nhC))
	must(e.SetRoute(vrf1, netip.PrefixFrom(addrR, 32), nhR))
	must(e.SetRoute(vrf2, netip.PrefixFrom(addrA, 32), nhA))
	dns := []flow.PortRange{{First: 53, Last: 53}}
	must(e.SetPolicy([]flow.Rule{
		{ID: 1, SrcNetwork: net1, DstNetwork: net2, Proto: packet.ProtoUDP, DstPorts: dns},
		{ID: 2, SrcNetwork: net1, DstNetwork: net3, Proto: packet.ProtoUDP, DstPorts: dns},
	}))
	return ps
}

// send runs one frame through the port's receive path, as its loop would.
func (b *bed) send(ps *portState, data []byte) {
	f := frame.New()
	f.SetData(frame.Headroom, copy(f.Buf[frame.Headroom:], data))
	b.e.portBatch(ps, []*frame.Frame{f}, newTxq(b.e))
}

// receive runs one tunnel payload through the tunnel's receive path.
func (b *bed) receive(enc packet.Encap, payload []byte) {
	f := frame.New()
	f.SetData(frame.Headroom, copy(f.Buf[frame.Headroom:], payload))
	b.e.newTunnelRx(enc).batch([]tunnel.Msg{{F: f, Addr: remote}})
}

// ipFrame wraps an IP packet in Ethernet from srcMAC to the gateway.
func ipFrame(srcMAC packet.MAC, pkt []byte) []byte {
	b := make([]byte, packet.EthernetHeaderLen+len(pkt))
	et := uint16(packet.EtherTypeIPv4)
	if pkt[0]>>4 == 6 {
		et = packet.EtherTypeIPv6
	}
	packet.PutEthernet(b, gwMAC, srcMAC, et)
	copy(b[14:], pkt)
	return b
}

// udpTo is an IPv4/UDP packet (no Ethernet).
func udpTo(src, dst netip.Addr, sport, dport uint16) []byte {
	b := udp4(gwMAC, gwMAC, src, dst, 64)[packet.EthernetHeaderLen:]
	u, _ := packet.ParseUDP(b[20:])
	b[20], b[21], b[22], b[23] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
	u.SetChecksum(src, dst)
	return b
}

// unreachable is the ICMP port unreachable that from sends about orig.
func unreachable(t *testing.T, from netip.Addr, orig []byte) []byte {
	t.Helper()
	ip, err := packet.ParseIPv4(orig)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 200)
	// Built as a time exceeded, then made a port unreachable (type 3 code
	// 3): the same layout, and the checksum is redone.
	p, err := packet.BuildICMPv4TimeExceeded(b, from, ip)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := packet.ParseICMPv4(p.Payload())
	m.Bytes()[0], m.Bytes()[1] = packet.ICMPv4DestUnreach, 3
	m.SetChecksum()
	return p.Bytes()
}

func drops(e *Engine) uint64 { return e.Drops(DropPolicy) }

// TestICMPErrorsBetweenNetworks: an ICMP error about a flow that policy
// allowed between two networks reaches the flow's sender, from a local
// port and from the tunnel; one about a flow never allowed does not.
func TestICMPErrorsBetweenNetworks(t *testing.T) {
	b := newBed(t, false)
	psC := b.twoNetworks(t)
	b.pa.keep = true
	pc := psC.io.(*memPort)

	// A asks C (another network, on this vRouter) on UDP 53: allowed.
	query := udpTo(addrA, addrC, 40000, 53)
	b.send(b.psA, ipFrame(macA, query))
	if got := pc.written(); len(got) != 1 {
		t.Fatalf("the allowed query: port C got %d frames, drops %v", len(got), b.e.Counters().Drops)
	}
	// C answers with port unreachable: it relates to the flow, so it passes
	// although no rule allows ICMP from network 200 to 100.
	query[8] = 63 // as it arrived: the TTL was decremented on the way
	b.send(psC, ipFrame(macC, unreachable(t, addrC, query)))
	got := b.pa.written()
	if len(got) != 1 || got[0][14+9] != packet.ProtoICMPv4 {
		t.Fatalf("port unreachable for an allowed flow: port A got %d frames, drops %v", len(got), b.e.Counters().Drops)
	}
	// One about a flow that never was is dropped by policy.
	before := drops(b.e)
	b.send(psC, ipFrame(macC, unreachable(t, addrC, udpTo(addrA, addrC, 40001, 9999))))
	if got := b.pa.written(); len(got) != 0 || drops(b.e) != before+1 {
		t.Fatalf("unrelated port unreachable: port A got %d frames, policy drops %d -> %d", len(got), before, drops(b.e))
	}

	// A asks the remote endpoint of network 300 through the tunnel.
	b.mpls.keep = true
	q2 := udpTo(addrA, addrR, 40002, 53)
	b.send(b.psA, ipFrame(macA, q2))
	if msgs := b.mpls.written(); len(msgs) != 1 {
		t.Fatalf("query to the remote network: %d datagrams sent, drops %v", len(msgs), b.e.Counters().Drops)
	}
	// Its time exceeded comes back over MPLSoUDP and is delivered...
	q2[8] = 63
	b.receive(packet.EncapMPLSoUDP, mplsPayload(labelA, unreachable(t, addrR, q2)))
	if got := b.pa.written(); len(got) != 1 {
		t.Fatalf("error from the tunnel for an allowed flow: port A got %d frames, drops %v", len(got), b.e.Counters().Drops)
	}
	// ... and an unrelated one is not.
	before = drops(b.e)
	b.receive(packet.EncapMPLSoUDP, mplsPayload(labelA, unreachable(t, addrR, udpTo(addrA, addrR, 40003, 53))))
	if got := b.pa.written(); len(got) != 0 || drops(b.e) != before+1 {
		t.Fatalf("unrelated error from the tunnel: port A got %d frames, policy drops %d -> %d", len(got), before, drops(b.e))
	}
	// The local one is decided twice, leaving C and reaching A, as two
	// vRouters would; the one from the tunnel once.
	if st := b.e.Flows().Stats(); st.Related != 3 {
		t.Errorf("flow stats: %d related errors, want 3", st.Related)
	}
}

// TestIPv6TimeExceeded: a packet whose hop limit runs out at the vRouter
// is answered with ICMPv6 time exceeded from the gateway.
func TestIPv6TimeExceeded(t *testing.T) {
	b := newBed(t, false)
	b.pa.keep = true
	pkt := make([]byte, 40+16)
	h := packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 1, Src: addrA6, Dst: addrM6}
	packet.PutIPv6Header(pkt, &h, 16)
	packet.PutUDP(pkt[40:], 33434, 33435, 8)
	b.send(b.psA, ipFrame(macA, pkt))
	got := b.pa.written()
	if len(got) != 1 || b.e.Drops(DropTTL) != 1 {
		t.Fatalf("%d frames back, ttl drops %d", len(got), b.e.Drops(DropTTL))
	}
	eth, _ := packet.ParseEthernet(got[0])
	ip, err := packet.ParseIPv6(eth.Payload())
	if err != nil || eth.Dst() != macA || eth.Src() != gwMAC || ip.Src() != gw6 || ip.Dst() != addrA6 {
		t.Fatalf("reply %x: %v", got[0][:54], err)
	}
	m, _ := packet.ParseICMPv6(ip.Payload())
	if m.Type() != packet.ICMPv6TimeExceeded || m.Code() != 0 || !m.ChecksumValid(ip.Src(), ip.Dst()) || !bytes.Equal(m.Body(), pkt) {
		t.Fatalf("icmpv6 %x", m.Bytes())
	}
	if n, _ := b.mpls.counts(); n != 0 {
		t.Fatal("the expired packet was forwarded")
	}
}

// TestRouterAdverts: a port with an IPv6 address gets a router
// advertisement when attached and then every interval; one without gets
// none; a detached port no more.
func TestRouterAdverts(t *testing.T) {
	e, err := New(Options{GatewayMAC: gwMAC, RouterAdvertInterval: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.SetVRF(vrf1, net1); err != nil {
		t.Fatal(err)
	}
	p6, p4 := newMemPort("wtd-v6"), newMemPort("wtd-v4")
	p6.keep, p4.keep = true, true
	if _, err := e.attachPort(PortConfig{ID: 1, Name: "v6", VRF: vrf1, MAC: macA, MTU: 1450,
		Addresses: []netip.Prefix{netip.PrefixFrom(addrA, 24), netip.PrefixFrom(addrA6, 64)}, Gateways: []netip.Addr{addrGW, gw6}}, p6, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.attachPort(PortConfig{ID: 2, Name: "v4", VRF: vrf1, MAC: macB,
		Addresses: []netip.Prefix{netip.PrefixFrom(addrB, 24)}, Gateways: []netip.Addr{addrGW}}, p4, false); err != nil {
		t.Fatal(err)
	}
	first := p6.written()
	if len(first) != 1 {
		t.Fatalf("%d frames on attach, want one advertisement", len(first))
	}
	checkRA(t, first[0])
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for n < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		for _, f := range p6.written() {
			checkRA(t, f)
			n++
		}
	}
	if n < 3 {
		t.Fatalf("%d periodic advertisements in 5s at a 30ms interval", n)
	}
	if got := p4.written(); len(got) != 0 {
		t.Fatalf("a port without IPv6 got %d frames", len(got))
	}
	// An update that changes nothing advertised sends nothing at once; one
	// that changes the MTU does.
	cfg, _ := e.Port(1)
	if err := e.UpdatePort(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.MTU = 1400
	p6.written()
	if err := e.UpdatePort(cfg); err != nil {
		t.Fatal(err)
	}
	got := p6.written()
	if len(got) == 0 {
		t.Fatal("no advertisement after the MTU changed")
	}
	eth, _ := packet.ParseEthernet(got[0])
	ip, _ := packet.ParseIPv6(eth.Payload())
	m, _ := packet.ParseICMPv6(ip.Payload())
	ra, _ := packet.ParseRouterAdvert(ip, m)
	if mtu, ok := ra.MTU(); !ok || mtu != 1400 {
		t.Fatalf("advertised mtu %d %v after the update", mtu, ok)
	}
	if err := e.DetachPort(1); err != nil {
		t.Fatal(err)
	}
	p6.written()
	time.Sleep(100 * time.Millisecond)
	if got := p6.written(); len(got) != 0 {
		t.Fatalf("%d advertisements after detach", len(got))
	}
}

func checkRA(t *testing.T, f []byte) {
	t.Helper()
	eth, _ := packet.ParseEthernet(f)
	ip, err := packet.ParseIPv6(eth.Payload())
	if err != nil || eth.Src() != gwMAC || ip.Dst() != netip.MustParseAddr("ff02::1") || ip.Src() != gw6 {
		t.Fatalf("not an advertisement to all nodes: %x", f)
	}
	m, _ := packet.ParseICMPv6(ip.Payload())
	ra, err := packet.ParseRouterAdvert(ip, m)
	if err != nil || !m.ChecksumValid(ip.Src(), ip.Dst()) || ra.RouterLifetime() == 0 {
		t.Fatalf("router advertisement: %v", err)
	}
}

// TestGROTrainToPort: a GRO train of one flow leaves for its port as one
// super-frame whose bytes are the segments' merged, whether the Coalescer
// copied or gathered them.
func TestGROTrainToPort(t *testing.T) {
	b := newBed(t, false)
	b.pa.keep = true
	const n = 44
	tm := groTrain(n, mss, addrMPLS, addrA, func(p []byte) []byte { return mplsPayload(labelA, p) })
	f := frame.New()
	f.SetData(frame.Headroom, copy(f.Buf[frame.Headroom:], tm.data))
	c0 := b.e.Counters().Ports[portA] // the router advertisement sent on attach
	b.e.newTunnelRx(packet.EncapMPLSoUDP).batch([]tunnel.Msg{{F: f, SegSize: tm.segSize, Addr: remote}})
	b.pa.mu.Lock()
	got, offs := b.pa.sent, b.pa.offload
	b.pa.mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d frames for one train, drops %v", len(got), b.e.Counters().Drops)
	}
	// What the super-frame must be: the first segment's headers, every payload.
	want := ipFrame(macA, tcp4(addrMPLS, addrA, 1000, n*mss, packet.TCPFlagACK))
	packet.PutEthernet(want, macA, gwMAC, packet.EtherTypeIPv4)
	hl := 14 + 20 + 20 + len(tcpOpts)
	if !bytes.Equal(got[0][hl:], want[hl:]) || len(got[0]) != len(want) {
		t.Fatalf("payload of %d bytes differs (want %d)", len(got[0]), len(want))
	}
	if !bytes.Equal(got[0][:14], want[:14]) {
		t.Fatalf("ethernet %x, want %x", got[0][:14], want[:14])
	}
	ip, err := packet.ParseIPv4(got[0][14:])
	if err != nil || ip.TotalLen() != len(want)-14 || !ip.ChecksumValid() {
		t.Fatalf("ip header: %v", err)
	}
	if o := offs[0]; o.GSO != frame.GSOTCPv4 || int(o.GSOSize) != mss || int(o.HdrLen) != hl || !o.NeedsCsum {
		t.Fatalf("offload %+v", o)
	}
	if c := b.e.Counters().Ports[portA]; c.TxPackets-c0.TxPackets != 1 || c.TxBytes-c0.TxBytes != uint64(len(want)) {
		t.Fatalf("port counters %+v, want 1 frame of %d bytes", c, len(want))
	}
}
