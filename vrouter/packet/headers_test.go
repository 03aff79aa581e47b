package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

var (
	macA = MAC{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	macB = MAC{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}
	v4A  = netip.MustParseAddr("10.0.100.3")
	v4B  = netip.MustParseAddr("10.0.10.7")
	v6A  = netip.MustParseAddr("2001:db8::3")
	v6B  = netip.MustParseAddr("2001:db8:1::7")
)

// ipv4Packet builds an IPv4 packet around payload with PutIPv4Header.
func ipv4Packet(t testing.TB, h IPv4Header, payload []byte) []byte {
	t.Helper()
	b := make([]byte, 60+len(payload))
	n, err := PutIPv4Header(b, &h, len(payload))
	if err != nil {
		t.Fatal(err)
	}
	copy(b[n:], payload)
	return b[:n+len(payload)]
}

func ipv6Packet(t testing.TB, h IPv6Header, payload []byte) []byte {
	t.Helper()
	b := make([]byte, IPv6HeaderLen+len(payload))
	if _, err := PutIPv6Header(b, &h, len(payload)); err != nil {
		t.Fatal(err)
	}
	copy(b[IPv6HeaderLen:], payload)
	return b
}

func wantParseError(t *testing.T, err error, msg string, off int) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *ParseError %q", err, err, msg)
	}
	if pe.Error() != msg {
		t.Errorf("error %q, want %q", pe.Error(), msg)
	}
	if pe.Offset != off {
		t.Errorf("%q: offset %d, want %d", msg, pe.Offset, off)
	}
}

func TestParseErrors(t *testing.T) {
	hdr4 := ipv4Packet(t, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B}, make([]byte, 40))
	long := append([]byte(nil), hdr4...)
	binary.BigEndian.PutUint16(long[2:], 1500)
	ihl := append([]byte(nil), hdr4...)
	ihl[0] = 0x44
	tl := append([]byte(nil), hdr4...)
	binary.BigEndian.PutUint16(tl[2:], 16)
	hdr6 := ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: v6A, Dst: v6B}, make([]byte, 8))
	pl6 := append([]byte(nil), hdr6...)
	binary.BigEndian.PutUint16(pl6[4:], 100)

	tests := []struct {
		name  string
		parse func([]byte) error
		in    []byte
		msg   string
		off   int
	}{
		{"ipv4 short", ipv4Err, hdr4[:7], "ipv4: header needs 20 bytes, have 7", 0},
		{"ipv4 version", ipv4Err, hdr6, "ipv4: version 6, want 4", 0},
		{"ipv4 ihl", ipv4Err, ihl, "ipv4: header length 16 below minimum 20", 0},
		{"ipv4 total below header", ipv4Err, tl, "ipv4: total length 16 below header length 20", 2},
		{"ipv4 total exceeds", ipv4Err, long[:60], "ipv4: total length 1500 exceeds 60 bytes of packet", 2},
		{"ipv6 short", ipv6Err, hdr6[:39], "ipv6: header needs 40 bytes, have 39", 0},
		{"ipv6 payload length", ipv6Err, pl6, "ipv6: payload length 100 exceeds 8 bytes of packet", 4},
		{"ethernet short", ethErr, make([]byte, 13), "ethernet: header needs 14 bytes, have 13", 0},
		{"ethernet tag", ethErr, append(make([]byte, 12), 0x81, 0x00, 0, 1), "ethernet: 802.1q tag needs 18 bytes, have 16", 12},
		{"udp length", udpErr, []byte{0, 1, 0, 2, 0, 40, 0, 0, 9}, "udp: length 40 exceeds 9 bytes of packet", 4},
		{"udp length below", udpErr, []byte{0, 1, 0, 2, 0, 4, 0, 0}, "udp: length 4 below minimum 8", 4},
		{"tcp data offset", tcpErr, append(make([]byte, 12), 0xf0, 0, 0, 0, 0, 0, 0, 0), "tcp: data offset 60 exceeds 20 bytes of packet", 12},
		{"tcp data offset below", tcpErr, append(make([]byte, 12), 0x40, 0, 0, 0, 0, 0, 0, 0), "tcp: data offset 16 below minimum 20", 12},
		{"mpls no bottom", mplsErr, []byte{0, 1, 0, 64, 0, 2, 0}, "mpls: label stack entry needs 4 bytes, have 3", 4},
		{"mpls too deep", mplsErr, make([]byte, 64), "mpls: label stack depth 9 exceeds limit 8", 32},
		{"vxlan flags", vxlanErr, make([]byte, 8), "vxlan: flags 0x00 lack the I flag 0x08", 0},
		{"gre version", greErr, []byte{0, 1, 0x88, 0x47}, "gre: version 1, want 0", 1},
		{"gre routing", greErr, []byte{0x40, 0, 0x88, 0x47}, "gre: flags 0x4000 has reserved bits set (mask 0x4800)", 0},
		{"gre key", greErr, []byte{0x20, 0, 0x88, 0x47, 0, 0}, "gre: optional fields needs 8 bytes, have 6", 4},
		{"arp op", arpErr, arpWithOp(3), "arp: operation 3, want 1 or 2", 6},
		{"icmpv4 short", func(b []byte) error { _, err := ParseICMPv4(b); return err }, []byte{8, 0, 0}, "icmpv4: header needs 8 bytes, have 3", 0},
		{"five tuple version", func(b []byte) error { _, err := ParseFiveTuple(b); return err }, []byte{0x50}, "ip: version 5, want 4 or 6", 0},
		{"five tuple truncated tcp", func(b []byte) error { _, err := ParseFiveTuple(b); return err },
			ipv4Packet(t, IPv4Header{Protocol: ProtoTCP, Src: v4A, Dst: v4B}, make([]byte, 10)), "tcp: header needs 20 bytes, have 10", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantParseError(t, tc.parse(tc.in), tc.msg, tc.off)
		})
	}
}

func ipv4Err(b []byte) error  { _, err := ParseIPv4(b); return err }
func ipv6Err(b []byte) error  { _, err := ParseIPv6(b); return err }
func ethErr(b []byte) error   { _, err := ParseEthernet(b); return err }
func udpErr(b []byte) error   { _, err := ParseUDP(b); return err }
func tcpErr(b []byte) error   { _, err := ParseTCP(b); return err }
func mplsErr(b []byte) error  { _, err := ParseMPLS(b); return err }
func vxlanErr(b []byte) error { _, err := ParseVXLAN(b); return err }
func greErr(b []byte) error   { _, err := ParseGRE(b); return err }
func arpErr(b []byte) error   { _, err := ParseARP(b); return err }

func arpWithOp(op uint16) []byte {
	b := make([]byte, ARPLen)
	if _, err := PutARP(b, ARPRequest, macA, v4A, MAC{}, v4B); err != nil {
		panic(err)
	}
	binary.BigEndian.PutUint16(b[6:], op)
	return b
}

func TestEthernetRoundTrip(t *testing.T) {
	b := make([]byte, 64)
	n, err := PutEthernet(b, macB, macA, EtherTypeIPv4)
	if err != nil || n != 14 {
		t.Fatal(n, err)
	}
	e, err := ParseEthernet(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Dst() != macB || e.Src() != macA || e.EtherType() != EtherTypeIPv4 || e.HasVLAN() || e.VLAN() != 0 || e.HeaderLen() != 14 || len(e.Payload()) != 50 {
		t.Fatalf("untagged: dst %v src %v type %#x vlan %d hl %d", e.Dst(), e.Src(), e.EtherType(), e.VLAN(), e.HeaderLen())
	}
	e.SetDst(macA)
	e.SetSrc(macB)
	if e.Dst() != macA || e.Src() != macB {
		t.Fatal("MAC rewrite did not stick")
	}
	n, err = PutEthernetVLAN(b, macB, macA, 100, 5, EtherTypeIPv6)
	if err != nil || n != 18 {
		t.Fatal(n, err)
	}
	e, err = ParseEthernet(b)
	if err != nil {
		t.Fatal(err)
	}
	if !e.HasVLAN() || e.VLAN() != 100 || e.PCP() != 5 || e.EtherType() != EtherTypeIPv6 || e.HeaderLen() != 18 || len(e.Payload()) != 46 {
		t.Fatalf("tagged: vlan %d pcp %d type %#x hl %d", e.VLAN(), e.PCP(), e.EtherType(), e.HeaderLen())
	}
	if _, err := PutEthernetVLAN(b, macB, macA, 4095, 0, EtherTypeIPv4); err == nil {
		t.Error("vlan 4095 accepted")
	}
	if _, err := PutEthernet(b[:13], macB, macA, EtherTypeIPv4); err == nil {
		t.Error("short buffer accepted")
	}
}

func TestMAC(t *testing.T) {
	m, err := ParseMAC("52:54:00:00:00:01")
	if err != nil || m != macA || m.String() != "52:54:00:00:00:01" {
		t.Fatal(m, err)
	}
	if _, err := ParseMAC("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"); err == nil {
		t.Error("20-byte address accepted")
	}
	if !BroadcastMAC.IsBroadcast() || !BroadcastMAC.IsMulticast() || macA.IsMulticast() || !(MAC{}).IsZero() {
		t.Error("MAC predicates")
	}
}

func TestARPRoundTrip(t *testing.T) {
	b := make([]byte, 46) // Ethernet-padded payload
	if _, err := PutARP(b, ARPReply, macA, v4A, macB, v4B); err != nil {
		t.Fatal(err)
	}
	a, err := ParseARP(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Op() != ARPReply || a.SenderMAC() != macA || a.SenderIP() != v4A || a.TargetMAC() != macB || a.TargetIP() != v4B || len(a.Bytes()) != ARPLen || a.IsGratuitous() {
		t.Fatalf("arp %x", a.Bytes())
	}
	if _, err := PutARP(b, ARPRequest, macA, v6A, macB, v4B); err == nil {
		t.Error("IPv6 address accepted in ARP")
	}
}

func TestIPv4RoundTrip(t *testing.T) {
	opts := []byte{1, 1, 1, 0} // NOP NOP NOP EOL
	p := ipv4Packet(t, IPv4Header{TOS: 0xb8, ID: 0x1234, DF: true, TTL: 9, Protocol: ProtoTCP, Src: v4A, Dst: v4B, Options: opts}, []byte("hello"))
	p = append(p, 0, 0, 0) // link padding
	ip, err := ParseIPv4(p)
	if err != nil {
		t.Fatal(err)
	}
	if ip.HeaderLen() != 24 || ip.TOS() != 0xb8 || ip.ID() != 0x1234 || !ip.DF() || ip.MF() || ip.IsFragment() || ip.FragmentOffset() != 0 ||
		ip.TTL() != 9 || ip.Protocol() != ProtoTCP || ip.Src() != v4A || ip.Dst() != v4B || string(ip.Options()) != string(opts) ||
		string(ip.Payload()) != "hello" || ip.TotalLen() != 29 || len(ip.Bytes()) != 29 {
		t.Fatalf("ipv4 %x", ip.Bytes())
	}
	if !ip.ChecksumValid() || ip.ComputeChecksum() != ip.Checksum() {
		t.Fatalf("checksum %#04x, computed %#04x", ip.Checksum(), ip.ComputeChecksum())
	}
	for ttl := 9; ttl > 1; ttl-- {
		if !ip.DecTTL() {
			t.Fatalf("DecTTL refused at %d", ttl)
		}
		if int(ip.TTL()) != ttl-1 || !ip.ChecksumValid() {
			t.Fatalf("after DecTTL: ttl %d checksum valid %v", ip.TTL(), ip.ChecksumValid())
		}
	}
	before := string(ip.Bytes())
	if ip.DecTTL() || string(ip.Bytes()) != before {
		t.Fatal("DecTTL at TTL 1 changed the packet")
	}
	binary.BigEndian.PutUint16(ip.Bytes()[10:], 0)
	ip.SetChecksum()
	if !ip.ChecksumValid() {
		t.Fatal("SetChecksum")
	}
	// Fragments.
	binary.BigEndian.PutUint16(ip.Bytes()[6:], 0x2000|185)
	if !ip.IsFragment() || !ip.MF() || ip.FragmentOffset() != 1480 {
		t.Fatalf("fragment: mf %v offset %d", ip.MF(), ip.FragmentOffset())
	}
	if _, err := PutIPv4Header(make([]byte, 60), &IPv4Header{Src: v4A, Dst: v4B, Options: []byte{1}}, 0); err == nil {
		t.Error("3-byte options accepted")
	}
	if _, err := PutIPv4Header(make([]byte, 60), &IPv4Header{Src: v6A, Dst: v4B}, 0); err == nil {
		t.Error("IPv6 source accepted")
	}
	if _, err := PutIPv4Header(make([]byte, 19), &IPv4Header{Src: v4A, Dst: v4B}, 0); err == nil {
		t.Error("short buffer accepted")
	}
}

// extHeader builds a generic-format extension header of 8*units bytes.
func extHeader(next uint8, units int) []byte {
	h := make([]byte, 8*units)
	h[0] = next
	h[1] = uint8(units - 1)
	return h
}

func TestIPv6ExtensionWalk(t *testing.T) {
	udp := make([]byte, 8)
	putUDP(udp, 1000, 2000, 8)
	frag := func(next uint8, off int, more bool) []byte {
		h := make([]byte, 8)
		h[0] = next
		v := uint16(off/8) << 3
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(h[2:], v)
		return h
	}
	ah := make([]byte, 16)
	ah[0], ah[1] = ProtoUDP, 2 // (2+2)*4 = 16 bytes
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name      string
		next      uint8
		payload   []byte
		proto     uint8
		offset    int
		fragment  bool
		fragOff   int
		ports     bool
		errSubstr string
	}{
		{"plain", ProtoUDP, udp, ProtoUDP, 40, false, 0, true, ""},
		{"hbh dst", ProtoHopByHop, cat(extHeader(ProtoDstOpts, 1), extHeader(ProtoUDP, 2), udp), ProtoUDP, 64, false, 0, true, ""},
		{"routing ah", ProtoRouting, cat(extHeader(ProtoAH, 3), ah, udp), ProtoUDP, 80, false, 0, true, ""},
		{"first fragment", ProtoFragment, cat(frag(ProtoUDP, 0, true), udp), ProtoUDP, 48, true, 0, false, ""},
		{"later fragment", ProtoFragment, cat(frag(ProtoUDP, 1448, false), udp), ProtoUDP, 48, true, 1448, false, ""},
		{"esp stops", ProtoESP, make([]byte, 16), ProtoESP, 40, false, 0, false, ""},
		{"no next", ProtoDstOpts, extHeader(ProtoNoNext, 1), ProtoNoNext, 48, false, 0, false, ""},
		{"truncated", ProtoDstOpts, extHeader(ProtoUDP, 2)[:12], 0, 0, false, 0, false, "ipv6: extension header length 16 exceeds 12 bytes of packet"},
		{"short", ProtoDstOpts, []byte{17, 0, 0}, 0, 0, false, 0, false, "ipv6: extension header needs 8 bytes, have 3"},
		{"hbh not first", ProtoDstOpts, cat(extHeader(ProtoHopByHop, 1), extHeader(ProtoUDP, 1), udp), 0, 0, false, 0, false, "ipv6: hop-by-hop header at offset 48, must be first at 40"},
		{"too many", ProtoDstOpts, cat(extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(ProtoUDP, 1), udp), 0, 0, false, 0, false, "ipv6: extension headers 9 exceeds limit 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip, err := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: tc.next, Src: v6A, Dst: v6B}, tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := ip.Transport()
			if tc.errSubstr != "" {
				if err == nil || err.Error() != tc.errSubstr {
					t.Fatalf("error %v, want %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.Proto != tc.proto || tr.Offset != tc.offset || tr.Fragment != tc.fragment || tr.FragmentOffset != tc.fragOff {
				t.Fatalf("transport %+v", tr)
			}
			ft, err := ip.FiveTuple()
			if err != nil {
				t.Fatal(err)
			}
			if tc.ports != (ft.SrcPort == 1000 && ft.DstPort == 2000) {
				t.Fatalf("five tuple %+v, ports expected %v", ft, tc.ports)
			}
		})
	}
}

func TestIPv6RoundTrip(t *testing.T) {
	p := ipv6Packet(t, IPv6Header{TrafficClass: 0xb8, FlowLabel: 0xabcde, NextHeader: ProtoTCP, HopLimit: 2, Src: v6A, Dst: v6B}, []byte("data"))
	ip, err := ParseIPv6(append(p, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if ip.TrafficClass() != 0xb8 || ip.FlowLabel() != 0xabcde || ip.PayloadLen() != 4 || ip.NextHeader() != ProtoTCP ||
		ip.HopLimit() != 2 || ip.Src() != v6A || ip.Dst() != v6B || string(ip.Payload()) != "data" || len(ip.Bytes()) != 44 {
		t.Fatalf("ipv6 %x", ip.Bytes())
	}
	if !ip.DecHopLimit() || ip.HopLimit() != 1 || ip.DecHopLimit() || ip.HopLimit() != 1 {
		t.Fatal("DecHopLimit")
	}
	if _, err := PutIPv6Header(make([]byte, 40), &IPv6Header{Src: v6A, Dst: v6B, FlowLabel: 1 << 20}, 0); err == nil {
		t.Error("21-bit flow label accepted")
	}
	if _, err := PutIPv6Header(make([]byte, 40), &IPv6Header{Src: v4A, Dst: v6B}, 0); err == nil {
		t.Error("IPv4 source accepted")
	}
}

func TestUDPRoundTrip(t *testing.T) {
	for _, fam := range [][2]netip.Addr{{v4A, v4B}, {v6A, v6B}} {
		b := make([]byte, 8+5+3)
		copy(b[8:], "hello")
		u, err := PutUDP(b, 5353, 53, 5)
		if err != nil {
			t.Fatal(err)
		}
		u.SetChecksum(fam[0], fam[1])
		u, err = ParseUDP(b)
		if err != nil {
			t.Fatal(err)
		}
		if u.SrcPort() != 5353 || u.DstPort() != 53 || u.Len() != 13 || string(u.Payload()) != "hello" {
			t.Fatalf("udp %x", u.Bytes())
		}
		if !u.ChecksumValid(fam[0], fam[1]) || u.ChecksumValid(fam[1], fam[1]) {
			t.Fatal("checksum validity")
		}
		binary.BigEndian.PutUint16(b[6:], 0)
		if u.ChecksumValid(fam[0], fam[1]) != fam[0].Is4() {
			t.Fatal("zero checksum: valid only over IPv4")
		}
	}
}

// tcpSegment builds a TCP segment with options and payload, checksummed
// between src and dst.
func tcpSegment(t testing.TB, src, dst netip.Addr, flags uint8, opts []byte, payload string) TCP {
	t.Helper()
	b := make([]byte, 60+len(payload))
	n, err := PutTCPHeader(b, &TCPHeader{SrcPort: 40000, DstPort: 8000, Seq: 1, Ack: 2, Flags: flags, Window: 65535, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	copy(b[n:], payload)
	seg, err := ParseTCP(b[:n+len(payload)])
	if err != nil {
		t.Fatal(err)
	}
	seg.SetChecksum(src, dst)
	return seg
}

func TestTCPMSSClamp(t *testing.T) {
	mss := func(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name    string
		opts    []byte
		clamp   uint16
		mss     uint16
		has     bool
		changed bool
	}{
		{"even offset", mss(1460), 1400, 1400, true, true},
		{"odd offset", cat([]byte{1}, mss(1460), []byte{1, 1, 1}), 1360, 1360, true, true},
		{"odd after sack-permitted", cat([]byte{4, 2, 1}, mss(9000), []byte{0}), 1410, 1410, true, true},
		{"already small", mss(1200), 1400, 1200, true, false},
		{"none", []byte{1, 1, 1, 0}, 1400, 0, false, false},
		{"after timestamps", cat([]byte{8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1}, mss(65495)), 1448, 1448, true, true},
		{"bad length stops", cat([]byte{3, 0, 1, 1}, mss(1460)), 1400, 0, false, false},
		{"overlong option stops", cat([]byte{3, 40, 1, 1}, mss(1460)), 1400, 0, false, false},
		{"mss wrong length", []byte{2, 3, 5, 1}, 1400, 0, false, false},
	}
	for _, fam := range [][2]netip.Addr{{v4A, v4B}, {v6A, v6B}} {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				seg := tcpSegment(t, fam[0], fam[1], TCPFlagSYN, tc.opts, "x")
				if seg.SrcPort() != 40000 || seg.DstPort() != 8000 || seg.Seq() != 1 || seg.Ack() != 2 || seg.Flags() != TCPFlagSYN ||
					seg.Window() != 65535 || seg.HeaderLen() != 20+len(tc.opts) || string(seg.Options()) != string(tc.opts) || string(seg.Payload()) != "x" {
					t.Fatalf("tcp %x", seg.Bytes())
				}
				if got := seg.ClampMSS(tc.clamp); got != tc.changed {
					t.Fatalf("ClampMSS = %v, want %v", got, tc.changed)
				}
				m, ok := seg.MSS()
				if ok != tc.has || m != tc.mss {
					t.Fatalf("MSS = %d %v, want %d %v", m, ok, tc.mss, tc.has)
				}
				if !seg.ChecksumValid(fam[0], fam[1]) {
					t.Fatalf("checksum %#04x invalid after clamp, want %#04x", seg.Checksum(), seg.ComputeChecksum(fam[0], fam[1]))
				}
			})
		}
	}
}

func TestMPLSRoundTrip(t *testing.T) {
	e := NewMPLSEntry(0xfffff, 5, true, 64)
	if e.Label() != 0xfffff || e.TC() != 5 || !e.Bottom() || e.TTL() != 64 {
		t.Fatalf("entry %#x", uint32(e))
	}
	if NewMPLSEntry(1<<20|17, 9, false, 1).Label() != 17 {
		t.Fatal("label not masked")
	}
	b := make([]byte, 12)
	if _, err := PutMPLS(b, NewMPLSEntry(100, 0, false, 255)); err != nil {
		t.Fatal(err)
	}
	if _, err := PutMPLS(b[4:], NewMPLSEntry(200, 1, true, 7)); err != nil {
		t.Fatal(err)
	}
	b[8] = 0x45
	m, err := ParseMPLS(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Depth() != 2 || m.Top().Label() != 100 || m.Entry(1).Label() != 200 || m.Entry(1).TC() != 1 || m.Entry(1).TTL() != 7 ||
		m.Entry(2) != 0 || m.Entry(-1) != 0 || len(m.Payload()) != 4 || m.Payload()[0] != 0x45 {
		t.Fatalf("mpls %x depth %d", m.Bytes(), m.Depth())
	}
}

func TestVXLANRoundTrip(t *testing.T) {
	b := make([]byte, 22)
	if _, err := PutVXLAN(b, 0xabcdef); err != nil {
		t.Fatal(err)
	}
	v, err := ParseVXLAN(b)
	if err != nil {
		t.Fatal(err)
	}
	if v.VNI() != 0xabcdef || v.Flags() != VXLANFlagI || len(v.Payload()) != 14 {
		t.Fatalf("vxlan %x", v.Bytes())
	}
	if _, err := PutVXLAN(b, 1<<24); err == nil {
		t.Error("25-bit VNI accepted")
	}
}

func TestGRE(t *testing.T) {
	b := make([]byte, 8)
	if _, err := PutGRE(b, EtherTypeMPLS); err != nil {
		t.Fatal(err)
	}
	g, err := ParseGRE(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.Protocol() != EtherTypeMPLS || g.HeaderLen() != 4 || !g.ChecksumValid() || len(g.Payload()) != 4 {
		t.Fatalf("gre %x", g.Bytes())
	}
	if _, ok := g.Key(); ok {
		t.Fatal("key without K flag")
	}
	// Checksum, key and sequence, as a Linux gretap with all options sends.
	full := []byte{0xb0, 0, 0x88, 0x47, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 7, 1, 2, 3}
	binary.BigEndian.PutUint16(full[4:], checksum(full, 0))
	g, err = ParseGRE(full)
	if err != nil {
		t.Fatal(err)
	}
	k, kok := g.Key()
	s, sok := g.Seq()
	if g.HeaderLen() != 16 || k != 42 || !kok || s != 7 || !sok || !g.ChecksumValid() || len(g.Payload()) != 3 {
		t.Fatalf("gre with options: hl %d key %d seq %d csum %v", g.HeaderLen(), k, s, g.ChecksumValid())
	}
	full[18] ^= 0xff
	if g.ChecksumValid() {
		t.Fatal("corrupt payload passed checksum")
	}
}
