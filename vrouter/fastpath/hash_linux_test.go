package fastpath

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
)

// skbIngressIfindex is where struct __sk_buff holds ingress_ifindex; the
// context BPF_PROG_TEST_RUN takes is the whole struct (192 bytes).
const (
	skbIngressIfindex = 36
	skbSize           = 192
	tcActRedirect     = 7
)

// TestECMPAndSourcePortAsTheEngine runs port_ingress (BPF_PROG_TEST_RUN)
// on packets of many flows toward a composite of four MPLSoUDP tunnels and
// checks, packet for packet, that the kernel picks the member (its outer
// destination and label) and the outer UDP source port the engine picks:
// nexthop.NextHop.Select and the send socket of packet.FiveTuple.Hash.
func TestECMPAndSourcePortAsTheEngine(t *testing.T) {
	testenv.RequireRoot(t)
	var objs fpObjects
	if err := loadFpObjects(&objs, nil); err != nil {
		testenv.Unavailable(t, "the kernel does not load the fast path: "+err.Error())
	}
	defer objs.Close()
	gw, pod := packet.MAC{0, 0, 0x5e, 0, 1, 0}, packet.MAC{2, 0, 0, 0, 0, 9}
	sports := []uint16{61000, 61001, 61002, 61003, 61004, 61005, 61006, 61007, 61008, 61009, 61010, 61011, 61012, 61013, 61014, 61015}
	d := &Datapath{objs: objs, cfg: Config{Underlay: netip.MustParseAddr("192.0.2.1"), GatewayMAC: gw, MPLSoUDPPort: 6635,
		VXLANPort: 4789, SourcePorts: map[packet.Encap][]uint16{packet.EncapMPLSoUDP: sports}}}
	if err := d.writeConfig(1500); err != nil {
		t.Fatal(err)
	}
	const veth, vrf, port = 1, 7, 3
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(objs.PortsByIfindex.Put(uint32(veth), fpPortInfo{Id: port, Vrf: vrf, Network: 100, VethIfindex: veth, TapIfindex: 99, Mac: pod}))
	must(objs.Sources.Put(fpLpmKey{Prefixlen: 64, Id: port, Addr: be32(netip.MustParseAddr("10.1.0.2"))}, uint32(1)))
	// Members 11..14: tunnels to 192.0.2.11..14 with labels 1011..1014.
	comp := nexthop.NextHop{ID: 20, Kind: nexthop.Composite, Network: 100}
	var m fpMembers
	for i := range 4 {
		id := nexthop.ID(11 + i)
		remote := netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)})
		must(objs.Nexthops.Put(uint32(id), fpNexthop{Kind: nhTunnel, Encap: uint8(packet.EncapMPLSoUDP), Label: 1000 + uint32(id), Remote: be32(remote), Network: 100}))
		must(objs.Remotes.Put(be32(remote), fpRemote{Oif: 1, NhAddr: be32(remote)}))
		comp.Members = append(comp.Members, id)
		m.Ids[i], m.Seeds[i] = uint32(id), nexthop.Seed(id)
	}
	m.N = 4
	must(objs.Nexthops.Put(uint32(comp.ID), fpNexthop{Kind: nhComposite, Network: 100}))
	must(objs.Composites.Put(uint32(comp.ID), m))
	must(objs.Routes.Put(fpLpmKey{Prefixlen: 32 + 16, Id: vrf, Addr: be32(netip.MustParseAddr("10.9.0.0"))}, uint32(comp.ID)))
	// The engine's view of the same composite.
	nhs := nexthop.NewTable()
	for i, id := range comp.Members {
		must(nhs.Set(nexthop.NextHop{ID: id, Kind: nexthop.Tunnel, Encap: packet.EncapMPLSoUDP, Label: 1011 + uint32(i),
			Underlay: netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)}), Network: 100}))
	}
	must(nhs.Set(comp))

	ctx := make([]byte, skbSize)
	binary.NativeEndian.PutUint32(ctx[skbIngressIfindex:], veth)
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[netip.Addr]int{}
	for range 200 {
		tu := packet.FiveTuple{Src: netip.MustParseAddr("10.1.0.2"), Dst: netip.AddrFrom4([4]byte{10, 9, byte(rng.IntN(256)), byte(rng.IntN(256))}),
			SrcPort: uint16(rng.IntN(65536)), DstPort: uint16(rng.IntN(65536)), Proto: packet.ProtoUDP}
		if rng.IntN(2) == 0 {
			tu.Proto = packet.ProtoTCP
		}
		in := frame(gw, pod, tu)
		out := make([]byte, len(in)+64)
		ret, err := objs.PortIngress.Run(&ebpf.RunOptions{Data: in, DataOut: out, Context: ctx})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		if ret != tcActRedirect {
			t.Fatalf("%v: program returned %d, want a redirect (%d)", tu, ret, tcActRedirect)
		}
		h := tu.Hash()
		want := nhs.Get(nhs.Get(comp.ID).Select(h))
		wantPort := sports[(h>>32*16)>>32]
		outer := out[14:]
		dst := netip.AddrFrom4([4]byte(outer[16:20]))
		sport := binary.BigEndian.Uint16(outer[20:22])
		label := binary.BigEndian.Uint32(outer[28:32]) >> 12
		if dst != want.Underlay || label != want.Label || sport != wantPort {
			t.Fatalf("%v (hash %#x): kernel sent to %v label %d from port %d; the engine to %v label %d from port %d",
				tu, h, dst, label, sport, want.Underlay, want.Label, wantPort)
		}
		seen[dst]++
	}
	if len(seen) != 4 {
		t.Errorf("200 flows used %d of 4 members: %v", len(seen), seen)
	}
}

// frame is an Ethernet frame with an IPv4 packet of tuple tu (TCP with
// only ACK set, or UDP), TTL 64, from the endpoint to the gateway.
func frame(gw, src packet.MAC, tu packet.FiveTuple) []byte {
	l4 := 8
	if tu.Proto == packet.ProtoTCP {
		l4 = 20
	}
	b := make([]byte, 14+20+l4+32)
	copy(b[0:6], gw[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, tu.Proto
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	s, d := tu.Src.As4(), tu.Dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tp := ip[20:]
	binary.BigEndian.PutUint16(tp[0:], tu.SrcPort)
	binary.BigEndian.PutUint16(tp[2:], tu.DstPort)
	if tu.Proto == packet.ProtoTCP {
		tp[12], tp[13] = 5<<4, 0x10 // data offset 5, ACK
	} else {
		binary.BigEndian.PutUint16(tp[4:], uint16(len(tp)))
	}
	return b
}
