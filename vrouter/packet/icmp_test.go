package packet

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// xnet marshals m with golang.org/x/net/icmp, an independent implementation
// to check our bytes and checksums against.
func xnet(t *testing.T, m icmp.Message, src, dst netip.Addr) []byte {
	t.Helper()
	var psh []byte
	if src.Is6() {
		psh = icmp.IPv6PseudoHeader(net.IP(src.AsSlice()), net.IP(dst.AsSlice()))
	}
	b, err := m.Marshal(psh)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestICMPv4FragNeeded(t *testing.T) {
	gw := netip.MustParseAddr("10.0.100.1")
	payload := bytes.Repeat([]byte{0xaa}, 1400)
	copy(payload, []byte{0x9c, 0x40, 0x1f, 0x40, 0x05, 0x80, 0x12, 0x34, 0xff})
	orig, err := ParseIPv4(ipv4Packet(t, IPv4Header{DF: true, TTL: 63, Protocol: ProtoUDP, Src: v4A, Dst: v4B, Options: []byte{1, 1, 1, 0}}, payload))
	if err != nil {
		t.Fatal(err)
	}
	if !ICMPv4ErrorAllowed(orig) {
		t.Fatal("error not allowed for a unicast UDP packet")
	}
	b := make([]byte, 200)
	if _, err := BuildICMPv4FragNeeded(b[:ICMPv4ErrorLen(orig)-1], gw, orig, 1418); err == nil {
		t.Fatal("short buffer accepted")
	}
	p, err := BuildICMPv4FragNeeded(b, gw, orig, 1418)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := ParseIPv4(p.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !ip.ChecksumValid() || ip.Src() != gw || ip.Dst() != v4A || ip.Protocol() != ProtoICMPv4 || ip.TotalLen() != 20+8+24+8 {
		t.Fatalf("outer %x", ip.Bytes())
	}
	m, err := ParseICMPv4(ip.Payload())
	if err != nil {
		t.Fatal(err)
	}
	if m.Type() != ICMPv4DestUnreach || m.Code() != ICMPv4CodeFragNeeded || m.NextHopMTU() != 1418 || !m.ChecksumValid() || !m.IsError() || m.IsEcho() {
		t.Fatalf("icmp %x", m.Bytes())
	}
	if !bytes.Equal(m.Body(), orig.Bytes()[:24+8]) {
		t.Fatalf("body %x, want original header and 8 bytes", m.Body())
	}
	want := xnet(t, icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 4,
		Body: &icmp.RawBody{Data: append([]byte{0, 0, 0x05, 0x8a}, orig.Bytes()[:32]...)}}, gw, v4A)
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatalf("icmp\n %x, x/net/icmp\n %x", m.Bytes(), want)
	}
	// An error about that error is not allowed.
	if ICMPv4ErrorAllowed(ip) {
		t.Fatal("error allowed about an ICMP error")
	}
	te, err := BuildICMPv4TimeExceeded(b, gw, orig)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := ParseICMPv4(te.Payload()); m.Type() != ICMPv4TimeExceeded || !m.ChecksumValid() {
		t.Fatal("time exceeded")
	}
	if _, err := BuildICMPv4FragNeeded(b, v6A, orig, 1400); err == nil {
		t.Fatal("IPv6 source accepted")
	}
}

func TestICMPv4ErrorAllowed(t *testing.T) {
	mk := func(src, dst string, proto uint8, payload []byte, frag uint16) IPv4 {
		b := ipv4Packet(t, IPv4Header{Protocol: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst)}, payload)
		binary.BigEndian.PutUint16(b[6:], frag)
		p, err := ParseIPv4(b)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	echo := make([]byte, 8)
	echo[0] = ICMPv4Echo
	unreach := make([]byte, 8)
	unreach[0] = ICMPv4DestUnreach
	tests := []struct {
		name string
		p    IPv4
		want bool
	}{
		{"unicast udp", mk("10.0.0.1", "10.0.0.2", ProtoUDP, make([]byte, 8), 0), true},
		{"echo", mk("10.0.0.1", "10.0.0.2", ProtoICMPv4, echo, 0), true},
		{"first fragment", mk("10.0.0.1", "10.0.0.2", ProtoUDP, make([]byte, 8), 0x2000), true},
		{"later fragment", mk("10.0.0.1", "10.0.0.2", ProtoUDP, make([]byte, 8), 0x0010), false},
		{"icmp error", mk("10.0.0.1", "10.0.0.2", ProtoICMPv4, unreach, 0), false},
		{"truncated icmp", mk("10.0.0.1", "10.0.0.2", ProtoICMPv4, echo[:3], 0), false},
		{"multicast dst", mk("10.0.0.1", "224.0.0.5", ProtoUDP, nil, 0), false},
		{"broadcast dst", mk("10.0.0.1", "255.255.255.255", ProtoUDP, nil, 0), false},
		{"unspecified src", mk("0.0.0.0", "10.0.0.2", ProtoUDP, nil, 0), false},
		{"loopback src", mk("127.0.0.1", "10.0.0.2", ProtoUDP, nil, 0), false},
	}
	for _, tc := range tests {
		if got := ICMPv4ErrorAllowed(tc.p); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestICMPv4Echo(t *testing.T) {
	b := make([]byte, 8+5)
	copy(b[8:], "hello")
	m, err := PutICMPv4Echo(b, ICMPv4Echo, 0x1234, 7, 5)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID() != 0x1234 || m.Seq() != 7 || !m.IsEcho() || m.IsError() || !m.ChecksumValid() || string(m.Body()) != "hello" {
		t.Fatalf("echo %x", m.Bytes())
	}
	want := xnet(t, icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x1234, Seq: 7, Data: []byte("hello")}}, v4A, v4B)
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatalf("echo\n %x, x/net/icmp\n %x", m.Bytes(), want)
	}
	m.Bytes()[2] = 0
	m.SetChecksum()
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatal("SetChecksum")
	}
}

func TestICMPv6PacketTooBig(t *testing.T) {
	gw := netip.MustParseAddr("fe80::1")
	for _, size := range []int{100, 1232 - 40, 1400} {
		payload := bytes.Repeat([]byte{0x5a}, size)
		orig, err := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: v6A, Dst: v6B}, payload))
		if err != nil {
			t.Fatal(err)
		}
		if !ICMPv6ErrorAllowed(orig) {
			t.Fatal("not allowed for unicast UDP")
		}
		n := ICMPv6PacketTooBigLen(orig)
		if n != min(1280, 48+40+size) {
			t.Fatalf("size %d: len %d", size, n)
		}
		b := make([]byte, 1500)
		if _, err := BuildICMPv6PacketTooBig(b[:n-1], gw, orig, 1430); err == nil {
			t.Fatal("short buffer accepted")
		}
		p, err := BuildICMPv6PacketTooBig(b, gw, orig, 1430)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := ParseIPv6(p.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if len(ip.Bytes()) != n || ip.Src() != gw || ip.Dst() != v6A || ip.NextHeader() != ProtoICMPv6 {
			t.Fatalf("outer %x", ip.Bytes()[:40])
		}
		m, err := ParseICMPv6(ip.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if m.Type() != ICMPv6PacketTooBig || m.MTU() != 1430 || !m.ChecksumValid(gw, v6A) || !m.IsError() {
			t.Fatalf("icmpv6 %x", m.Bytes()[:8])
		}
		want := xnet(t, icmp.Message{Type: ipv6.ICMPTypePacketTooBig, Body: &icmp.PacketTooBig{MTU: 1430, Data: orig.Bytes()[:n-48]}}, gw, v6A)
		if !bytes.Equal(m.Bytes(), want) {
			t.Fatalf("size %d: differs from x/net/icmp", size)
		}
		if ICMPv6ErrorAllowed(ip) {
			t.Fatal("allowed about an ICMPv6 error")
		}
	}
	echo := make([]byte, 8)
	echo[0] = ICMPv6EchoRequest
	req, _ := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: ProtoICMPv6, Src: v6A, Dst: netip.MustParseAddr("ff02::1")}, echo))
	if !ICMPv6ErrorAllowed(req) {
		t.Error("packet too big not allowed for a multicast echo")
	}
	uns, _ := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: netip.IPv6Unspecified(), Dst: v6B}, make([]byte, 8)))
	if ICMPv6ErrorAllowed(uns) {
		t.Error("allowed from the unspecified address")
	}
}

func TestICMPv6Echo(t *testing.T) {
	b := make([]byte, 12)
	copy(b[8:], "ping")
	m, err := PutICMPv6Echo(b, v6A, v6B, ICMPv6EchoRequest, 9, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID() != 9 || m.Seq() != 10 || !m.IsEcho() || !m.ChecksumValid(v6A, v6B) || m.ChecksumValid(v6B, v6B) {
		t.Fatal("echo")
	}
	want := xnet(t, icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: 9, Seq: 10, Data: []byte("ping")}}, v6A, v6B)
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatalf("echo\n %x, x/net/icmp\n %x", m.Bytes(), want)
	}
}

// ndPacket builds an IPv6 packet carrying an ND message of type typ whose
// body (after the 4-byte ICMPv6 header) is body, checksummed by x/net.
func ndPacket(t *testing.T, src, dst netip.Addr, hopLimit uint8, typ ipv6.ICMPType, body []byte) (IPv6, ICMPv6) {
	t.Helper()
	m := xnet(t, icmp.Message{Type: typ, Body: &icmp.RawBody{Data: body}}, src, dst)
	ip, err := ParseIPv6(ipv6Packet(t, IPv6Header{NextHeader: ProtoICMPv6, HopLimit: hopLimit, Src: src, Dst: dst}, m))
	if err != nil {
		t.Fatal(err)
	}
	im, err := ParseICMPv6(ip.Payload())
	if err != nil {
		t.Fatal(err)
	}
	return ip, im
}

func nsBody(target netip.Addr, opts ...byte) []byte {
	b := make([]byte, 4, 20+len(opts))
	b = append(b, target.AsSlice()...)
	return append(b, opts...)
}

func TestNeighborSolicit(t *testing.T) {
	host := netip.MustParseAddr("fe80::5054:ff:fe00:1")
	gw := netip.MustParseAddr("fe80::1")
	slla := append([]byte{NDOptSourceLinkAddr, 1}, macA[:]...)
	ip, m := ndPacket(t, host, SolicitedNodeMulticast(gw), 255, ipv6.ICMPTypeNeighborSolicitation, nsBody(gw, slla...))
	ns, err := ParseNeighborSolicit(ip, m)
	if err != nil {
		t.Fatal(err)
	}
	if mac, ok := ns.SourceLinkAddr(); ns.Target() != gw || !ok || mac != macA || ns.IsDAD(ip) {
		t.Fatalf("ns target %v mac %v", ns.Target(), mac)
	}
	if SolicitedNodeMulticast(gw) != netip.MustParseAddr("ff02::1:ff00:1") {
		t.Fatalf("solicited-node %v", SolicitedNodeMulticast(gw))
	}
	// DAD probe: unspecified source, to the solicited-node group, no SLLA.
	ip, m = ndPacket(t, netip.IPv6Unspecified(), SolicitedNodeMulticast(host), 255, ipv6.ICMPTypeNeighborSolicitation, nsBody(host))
	if ns, err := ParseNeighborSolicit(ip, m); err != nil || !ns.IsDAD(ip) {
		t.Fatalf("dad: %v", err)
	}
	bad := []struct {
		name     string
		src, dst netip.Addr
		hop      uint8
		body     []byte
		corrupt  bool
		contains string
	}{
		{"hop limit", host, gw, 64, nsBody(gw), false, "neighbor solicitation: hop limit 64, want 255"},
		{"checksum", host, gw, 255, nsBody(gw), true, "neighbor solicitation: checksum"},
		{"short", host, gw, 255, nsBody(gw)[:12], false, "neighbor solicitation: message needs 24 bytes, have 16"},
		{"zero option", host, gw, 255, nsBody(gw, 1, 0, 0, 0, 0, 0, 0, 0), false, "neighbor solicitation: option length 0 below minimum 1"},
		{"long option", host, gw, 255, nsBody(gw, 1, 2, 0, 0, 0, 0, 0, 0), false, "neighbor solicitation: option length 16 exceeds 8 bytes of packet"},
		{"multicast target", host, gw, 255, nsBody(netip.MustParseAddr("ff02::1")), false, "neighbor solicitation: target is multicast"},
		{"dad with slla", netip.IPv6Unspecified(), SolicitedNodeMulticast(gw), 255, nsBody(gw, slla...), false, "source link-layer address option in a DAD probe"},
		{"dad to unicast", netip.IPv6Unspecified(), gw, 255, nsBody(gw), false, "not the target's solicited-node group"},
	}
	for _, tc := range bad {
		ip, m := ndPacket(t, tc.src, tc.dst, tc.hop, ipv6.ICMPTypeNeighborSolicitation, tc.body)
		if tc.corrupt {
			m.Bytes()[len(m.Bytes())-1] ^= 1
		}
		if _, err := ParseNeighborSolicit(ip, m); err == nil || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.contains)
		}
	}
	if _, err := ParseNeighborAdvert(ip, m); err == nil {
		t.Error("solicitation parsed as advertisement")
	}
}

func TestNeighborAdvertBuild(t *testing.T) {
	gw := netip.MustParseAddr("fe80::1")
	host := netip.MustParseAddr("fe80::5054:ff:fe00:1")
	b := make([]byte, NeighborAdvertLen)
	if _, err := BuildNeighborAdvert(b[:NeighborAdvertLen-1], &NeighborAdvertFields{Src: gw, Dst: host, Target: gw}); err == nil {
		t.Fatal("short buffer accepted")
	}
	p, err := BuildNeighborAdvert(b, &NeighborAdvertFields{Src: gw, Dst: host, Target: gw, TargetMAC: macB, Router: true, Solicited: true, Override: true})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := ParseIPv6(p.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseICMPv6(ip.Payload())
	if err != nil {
		t.Fatal(err)
	}
	na, err := ParseNeighborAdvert(ip, m)
	if err != nil {
		t.Fatal(err)
	}
	mac, ok := na.TargetLinkAddr()
	if na.Target() != gw || !na.Router() || !na.Solicited() || !na.Override() || !ok || mac != macB || ip.HopLimit() != 255 {
		t.Fatalf("na %x", m.Bytes())
	}
	body := append([]byte{0xe0, 0, 0, 0}, gw.AsSlice()...)
	body = append(body, NDOptTargetLinkAddr, 1)
	body = append(body, macB[:]...)
	want := xnet(t, icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}, gw, host)
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatalf("na\n %x, x/net/icmp\n %x", m.Bytes(), want)
	}
	// Solicited flag on a multicast advertisement is invalid.
	p, _ = BuildNeighborAdvert(b, &NeighborAdvertFields{Src: gw, Dst: netip.MustParseAddr("ff02::1"), Target: gw, TargetMAC: macB, Solicited: true})
	ip, _ = ParseIPv6(p.Bytes())
	m, _ = ParseICMPv6(ip.Payload())
	if _, err := ParseNeighborAdvert(ip, m); err == nil {
		t.Fatal("solicited multicast advertisement accepted")
	}
}

func TestRouterSolicitAdvert(t *testing.T) {
	host := netip.MustParseAddr("fe80::5054:ff:fe00:1")
	gw := netip.MustParseAddr("fe80::1")
	slla := append([]byte{NDOptSourceLinkAddr, 1}, macA[:]...)
	ip, m := ndPacket(t, host, netip.MustParseAddr("ff02::2"), 255, ipv6.ICMPTypeRouterSolicitation, append(make([]byte, 4), slla...))
	rs, err := ParseRouterSolicit(ip, m)
	if err != nil {
		t.Fatal(err)
	}
	if mac, ok := rs.SourceLinkAddr(); !ok || mac != macA {
		t.Fatal("rs slla")
	}
	ip, m = ndPacket(t, netip.IPv6Unspecified(), netip.MustParseAddr("ff02::2"), 255, ipv6.ICMPTypeRouterSolicitation, append(make([]byte, 4), slla...))
	if _, err := ParseRouterSolicit(ip, m); err == nil {
		t.Fatal("rs with unspecified source and slla accepted")
	}

	ra := []byte{64, 0xc0, 0x07, 0x08, 0, 0, 0x75, 0x30, 0, 0, 0x03, 0xe8}
	ra = append(ra, slla...)
	ra = append(ra, NDOptMTU, 1, 0, 0, 0, 0, 0x05, 0x8a)
	ra = append(ra, NDOptPrefixInfo, 4)
	ra = append(ra, make([]byte, 30)...)
	ip, m = ndPacket(t, gw, netip.MustParseAddr("ff02::1"), 255, ipv6.ICMPTypeRouterAdvertisement, ra)
	adv, err := ParseRouterAdvert(ip, m)
	if err != nil {
		t.Fatal(err)
	}
	mtu, ok := adv.MTU()
	mac, mok := adv.SourceLinkAddr()
	pi, pok := adv.Option(NDOptPrefixInfo)
	if adv.CurHopLimit() != 64 || !adv.Managed() || !adv.Other() || adv.RouterLifetime() != 1800 || adv.ReachableTime() != 30000 ||
		adv.RetransTimer() != 1000 || !ok || mtu != 1418 || !mok || mac != macA || !pok || len(pi) != 30 {
		t.Fatalf("ra %x", m.Bytes())
	}
	ip, m = ndPacket(t, v6A, netip.MustParseAddr("ff02::1"), 255, ipv6.ICMPTypeRouterAdvertisement, ra)
	if _, err := ParseRouterAdvert(ip, m); err == nil || !strings.Contains(err.Error(), "not link-local") {
		t.Fatalf("ra from global source: %v", err)
	}
}
