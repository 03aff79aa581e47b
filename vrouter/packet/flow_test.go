package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestFiveTuple(t *testing.T) {
	tcp := tcpSegment(t, v4A, v4B, TCPFlagSYN, nil, "").Bytes()
	echo4 := make([]byte, 8)
	echo4[0] = ICMPv4Echo
	binary.BigEndian.PutUint16(echo4[4:], 0x4242)
	unreach := make([]byte, 8)
	unreach[0] = ICMPv4DestUnreach
	echo6 := make([]byte, 8)
	echo6[0] = ICMPv6EchoReply
	binary.BigEndian.PutUint16(echo6[4:], 0x77)
	udp := make([]byte, 12)
	putUDP(udp, 5000, 6000, 12)
	frag := ipv4Packet(t, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B}, udp)
	binary.BigEndian.PutUint16(frag[6:], 0x2000) // first fragment: MF
	gre := make([]byte, 4)

	tests := []struct {
		name string
		pkt  []byte
		want FiveTuple
	}{
		{"tcp4", ipv4Packet(t, IPv4Header{Protocol: ProtoTCP, Src: v4A, Dst: v4B}, tcp), FiveTuple{v4A, v4B, 40000, 8000, ProtoTCP}},
		{"udp6", ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: v6A, Dst: v6B}, udp), FiveTuple{v6A, v6B, 5000, 6000, ProtoUDP}},
		{"echo4", ipv4Packet(t, IPv4Header{Protocol: ProtoICMPv4, Src: v4A, Dst: v4B}, echo4), FiveTuple{v4A, v4B, 0x4242, 0x4242, ProtoICMPv4}},
		{"unreach4", ipv4Packet(t, IPv4Header{Protocol: ProtoICMPv4, Src: v4A, Dst: v4B}, unreach), FiveTuple{v4A, v4B, 0, 0, ProtoICMPv4}},
		{"echo6", ipv6Packet(t, IPv6Header{NextHeader: ProtoICMPv6, Src: v6A, Dst: v6B}, echo6), FiveTuple{v6A, v6B, 0x77, 0x77, ProtoICMPv6}},
		{"fragment", frag, FiveTuple{v4A, v4B, 0, 0, ProtoUDP}},
		{"gre", ipv4Packet(t, IPv4Header{Protocol: ProtoGRE, Src: v4A, Dst: v4B}, gre), FiveTuple{v4A, v4B, 0, 0, ProtoGRE}},
	}
	for _, tc := range tests {
		got, err := ParseFiveTuple(tc.pkt)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if got.Reverse().Reverse() != got || got.Reverse().Src != got.Dst || got.Reverse().SrcPort != got.DstPort {
			t.Errorf("%s: Reverse", tc.name)
		}
	}
	if _, err := ParseFiveTuple(nil); err == nil {
		t.Error("empty packet accepted")
	}
}

// TestFlowHashStable pins the hash: a change moves every flow to another
// ECMP member and UDP source port when a vRouter is upgraded.
func TestFlowHashStable(t *testing.T) {
	ft := FiveTuple{v4A, v4B, 40000, 8000, ProtoTCP}
	if h := ft.Hash(); h != ft.Hash() || h != 0xf2e8963463830b86 {
		t.Fatalf("hash %#x changed", h)
	}
	if ft.Hash() == ft.Reverse().Hash() {
		t.Error("hash is symmetric; it need not be, but a collision here is suspicious")
	}
}

func TestFlowSrcPort(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	seen := make(map[uint16]bool)
	for i := 0; i < 400000; i++ {
		ft := FiveTuple{
			Src:     netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))}),
			Dst:     netip.AddrFrom4([4]byte{10, 1, 0, byte(r.IntN(8))}),
			SrcPort: uint16(32768 + r.IntN(28000)), DstPort: 443, Proto: ProtoTCP,
		}
		p := FlowSrcPort(ft.Hash())
		if p < 49152 {
			t.Fatalf("port %d below 49152", p)
		}
		seen[p] = true
	}
	if len(seen) < 16384*99/100 {
		t.Fatalf("only %d of 16384 source ports used", len(seen))
	}
}

func TestHotPathAllocs(t *testing.T) {
	pkt4 := ipv4Packet(t, IPv4Header{Protocol: ProtoTCP, TTL: 200, Src: v4A, Dst: v4B}, tcpSegment(t, v4A, v4B, TCPFlagSYN, []byte{2, 4, 5, 0xb4}, "").Bytes())
	udp := make([]byte, 8)
	putUDP(udp, 1, 2, 8)
	pkt6 := ipv6Packet(t, IPv6Header{NextHeader: ProtoDstOpts, Src: v6A, Dst: v6B}, append(extHeader(ProtoUDP, 1), udp...))
	var sink uint64
	for name, f := range map[string]func(){
		"fivetuple4": func() { ft, _ := ParseFiveTuple(pkt4); sink += ft.Hash() },
		"fivetuple6": func() { ft, _ := ParseFiveTuple(pkt6); sink += uint64(FlowSrcPort(ft.Hash())) },
		"decttl": func() {
			ip, _ := ParseIPv4(pkt4)
			if !ip.DecTTL() {
				pkt4[8] = 200
				ip.SetChecksum()
			}
		},
		"mss": func() {
			ip, _ := ParseIPv4(pkt4)
			seg, _ := ParseTCP(ip.Payload())
			seg.ClampMSS(1400)
			_, _ = seg.MSS()
			sink += uint64(seg.Checksum())
		},
		"ethernet": func() {
			e, _ := ParseEthernet(make([]byte, 64))
			e.SetDst(macA)
			sink += uint64(e.EtherType())
		},
	} {
		if a := testing.AllocsPerRun(200, f); a != 0 {
			t.Errorf("%s: %v allocs", name, a)
		}
	}
	_ = sink
}
