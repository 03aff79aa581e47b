package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// quoteCases are datagrams an ICMP error may quote, whole.
func quoteCases(t testing.TB) []struct {
	name string
	pkt  []byte
	want FiveTuple
} {
	tcp := make([]byte, 40)
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 8000)
	tcp[12] = 5 << 4
	udp := make([]byte, 30)
	binary.BigEndian.PutUint16(udp[0:2], 5353)
	binary.BigEndian.PutUint16(udp[2:4], 53)
	binary.BigEndian.PutUint16(udp[4:6], 30)
	echo := []byte{ICMPv4Echo, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g'}
	echo6 := []byte{ICMPv6EchoRequest, 0, 0, 0, 0x43, 0x21, 0, 1, 'p', 'i', 'n', 'g'}
	// A destination options header (8 bytes) in front of UDP.
	dstOpts := append([]byte{ProtoUDP, 0, 1, 4, 0, 0, 0, 0}, udp...)
	frag := ipv4Packet(t, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B}, udp)
	binary.BigEndian.PutUint16(frag[6:8], 0x2000) // more fragments: the first
	return []struct {
		name string
		pkt  []byte
		want FiveTuple
	}{
		{"ipv4 tcp", ipv4Packet(t, IPv4Header{Protocol: ProtoTCP, Src: v4A, Dst: v4B, DF: true}, tcp), FiveTuple{Src: v4A, Dst: v4B, SrcPort: 40000, DstPort: 8000, Proto: ProtoTCP}},
		{"ipv4 options udp", ipv4Packet(t, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B, Options: []byte{1, 1, 1, 0}}, udp), FiveTuple{Src: v4A, Dst: v4B, SrcPort: 5353, DstPort: 53, Proto: ProtoUDP}},
		{"ipv4 echo", ipv4Packet(t, IPv4Header{Protocol: ProtoICMPv4, Src: v4A, Dst: v4B}, echo), FiveTuple{Src: v4A, Dst: v4B, SrcPort: 0x1234, DstPort: 0x1234, Proto: ProtoICMPv4}},
		{"ipv4 fragment", frag, FiveTuple{Src: v4A, Dst: v4B, Proto: ProtoUDP}},
		{"ipv6 tcp", ipv6Packet(t, IPv6Header{NextHeader: ProtoTCP, Src: v6A, Dst: v6B}, tcp), FiveTuple{Src: v6A, Dst: v6B, SrcPort: 40000, DstPort: 8000, Proto: ProtoTCP}},
		{"ipv6 dstopts udp", ipv6Packet(t, IPv6Header{NextHeader: ProtoDstOpts, Src: v6A, Dst: v6B}, dstOpts), FiveTuple{Src: v6A, Dst: v6B, SrcPort: 5353, DstPort: 53, Proto: ProtoUDP}},
		{"ipv6 echo", ipv6Packet(t, IPv6Header{NextHeader: ProtoICMPv6, Src: v6A, Dst: v6B}, echo6), FiveTuple{Src: v6A, Dst: v6B, SrcPort: 0x4321, DstPort: 0x4321, Proto: ProtoICMPv6}},
	}
}

func TestParseQuotedFiveTuple(t *testing.T) {
	for _, c := range quoteCases(t) {
		t.Run(c.name, func(t *testing.T) {
			// Whole, it agrees with ParseFiveTuple.
			if whole, err := ParseFiveTuple(c.pkt); err != nil || whole != c.want {
				t.Fatalf("ParseFiveTuple: %+v, %v; want %+v", whole, err, c.want)
			}
			// The shortest quote that still has the tuple.
			var hdr int
			switch c.want.Proto {
			case ProtoTCP, ProtoUDP:
				hdr = len(c.pkt) - tailLen(t, c.pkt) + 4
			default:
				hdr = len(c.pkt) - tailLen(t, c.pkt) + 8
			}
			if c.want.SrcPort == 0 && c.want.DstPort == 0 { // a fragment: the IP header does
				hdr = len(c.pkt) - tailLen(t, c.pkt)
			}
			for n := len(c.pkt); n >= hdr; n-- {
				got, err := ParseQuotedFiveTuple(c.pkt[:n])
				if err != nil || got != c.want {
					t.Fatalf("quote of %d bytes: %+v, %v; want %+v", n, got, err, c.want)
				}
				if n < len(c.pkt) {
					if _, err := ParseFiveTuple(c.pkt[:n]); err == nil {
						t.Fatalf("ParseFiveTuple took a quote of %d bytes", n)
					}
				}
			}
			for n := hdr - 1; n >= 0; n-- {
				if got, err := ParseQuotedFiveTuple(c.pkt[:n]); err == nil {
					t.Fatalf("quote of %d bytes, too short for the tuple: %+v", n, got)
				}
			}
		})
	}
	bad := ipv4Packet(t, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B}, make([]byte, 8))
	bad[0] = 0x44 // header length 16
	if _, err := ParseQuotedFiveTuple(bad); err == nil {
		t.Error("header length 16 accepted")
	}
	if _, err := ParseQuotedFiveTuple([]byte{0x50, 0, 0, 0}); err == nil {
		t.Error("version 5 accepted")
	}
}

// tailLen is the length of what follows the last IP-layer header of pkt.
func tailLen(t testing.TB, pkt []byte) int {
	if pkt[0]>>4 == 4 {
		ip, _ := ParseIPv4(pkt)
		return len(ip.Payload())
	}
	ip, _ := ParseIPv6(pkt)
	tr, err := ip.Transport()
	if err != nil {
		t.Fatal(err)
	}
	return len(pkt) - tr.Offset
}

func TestICMPErrorQuote(t *testing.T) {
	orig, _ := ParseIPv4(quoteCases(t)[0].pkt)
	b := make([]byte, 200)
	te, err := BuildICMPv4TimeExceeded(b, v4B, orig)
	if err != nil {
		t.Fatal(err)
	}
	q, ok := te.ICMPError()
	if !ok || !bytes.Equal(q, orig.Bytes()[:len(q)]) || len(q) != orig.HeaderLen()+8 {
		t.Fatalf("time exceeded: quote %x, %v", q, ok)
	}
	if tu, err := ParseQuotedFiveTuple(q); err != nil || tu != quoteCases(t)[0].want {
		t.Fatalf("quoted tuple %+v, %v", tu, err)
	}
	echo, _ := ParseIPv4(quoteCases(t)[2].pkt)
	if _, ok := echo.ICMPError(); ok {
		t.Error("an echo request is an error")
	}
	if _, ok := orig.ICMPError(); ok {
		t.Error("tcp is an icmp error")
	}
	o6, _ := ParseIPv6(quoteCases(t)[4].pkt)
	b6 := make([]byte, 1280)
	for _, build := range []func() (IPv6, error){
		func() (IPv6, error) { return BuildICMPv6PacketTooBig(b6, v6B, o6, 1400) },
		func() (IPv6, error) { return BuildICMPv6TimeExceeded(b6, v6B, o6) },
	} {
		p, err := build()
		if err != nil {
			t.Fatal(err)
		}
		q, ok := p.ICMPError()
		if !ok || !bytes.Equal(q, o6.Bytes()) {
			t.Fatalf("icmpv6 error: quote %x, %v", q, ok)
		}
	}
	e6, _ := ParseIPv6(quoteCases(t)[6].pkt)
	if _, ok := e6.ICMPError(); ok {
		t.Error("an echo request is an icmpv6 error")
	}
}

func TestICMPv6TimeExceeded(t *testing.T) {
	gw := netip.MustParseAddr("fe80::1")
	for _, size := range []int{100, 1400} {
		orig, err := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: v6A, Dst: v6B, HopLimit: 1}, bytes.Repeat([]byte{0x3c}, size)))
		if err != nil {
			t.Fatal(err)
		}
		if !ICMPv6TimeExceededAllowed(orig) {
			t.Fatal("not allowed for unicast UDP")
		}
		n := ICMPv6PacketTooBigLen(orig)
		b := make([]byte, 1500)
		if _, err := BuildICMPv6TimeExceeded(b[:n-1], gw, orig); err == nil {
			t.Fatal("short buffer accepted")
		}
		if _, err := BuildICMPv6TimeExceeded(b, v4A, orig); err == nil {
			t.Fatal("an IPv4 source accepted")
		}
		p, err := BuildICMPv6TimeExceeded(b, gw, orig)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Bytes()) != n || n > IPv6MinMTU || p.Src() != gw || p.Dst() != v6A {
			t.Fatalf("outer %x", p.Bytes()[:40])
		}
		m, _ := ParseICMPv6(p.Payload())
		if m.Type() != ICMPv6TimeExceeded || m.Code() != 0 || !m.ChecksumValid(gw, v6A) {
			t.Fatalf("icmpv6 %x", m.Bytes()[:8])
		}
		want := xnet(t, icmp.Message{Type: ipv6.ICMPTypeTimeExceeded, Body: &icmp.TimeExceeded{Data: orig.Bytes()[:n-48]}}, gw, v6A)
		if !bytes.Equal(m.Bytes(), want) {
			t.Fatalf("size %d: differs from x/net/icmp", size)
		}
	}
	mc, _ := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: v6A, Dst: netip.MustParseAddr("ff02::1")}, make([]byte, 8)))
	if ICMPv6TimeExceededAllowed(mc) || !ICMPv6ErrorAllowed(mc) {
		t.Error("time exceeded for a multicast destination (packet too big may)")
	}
}

func FuzzQuotedFiveTuple(f *testing.F) {
	seedPackets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		q, qerr := ParseQuotedFiveTuple(b)
		w, werr := ParseFiveTuple(b)
		if werr == nil && (qerr != nil || q != w) {
			// Whatever a whole packet gives, its quote gives too.
			t.Fatalf("whole %+v, quoted %+v, %v", w, q, qerr)
		}
	})
}
