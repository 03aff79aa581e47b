package packet

import (
	"bytes"
	"net/netip"
	"testing"
)

// The fuzz targets parse arbitrary bytes and call every accessor of what
// parsed: a view that passed its Parse must never panic. Where a property
// holds for any input (a checksum stays valid across DecTTL and ClampMSS, a
// built packet parses back) they check it too.

func seedPackets(f *testing.F) {
	f.Helper()
	tcp := tcpSegment(f, v4A, v4B, TCPFlagSYN, []byte{1, 2, 4, 5, 0xb4, 1, 1, 0}, "x").Bytes()
	f.Add(ipv4Packet(f, IPv4Header{Protocol: ProtoTCP, Src: v4A, Dst: v4B, Options: []byte{1, 1, 1, 0}}, tcp))
	udp := make([]byte, 12)
	putUDP(udp, 1, 2, 12)
	f.Add(ipv6Packet(f, IPv6Header{NextHeader: ProtoHopByHop, Src: v6A, Dst: v6B}, append(extHeader(ProtoUDP, 1), udp...)))
	echo := make([]byte, 8)
	echo[0] = ICMPv6EchoRequest
	f.Add(ipv6Packet(f, IPv6Header{NextHeader: ProtoICMPv6, Src: v6A, Dst: v6B}, echo))
	na := make([]byte, NeighborAdvertLen)
	_, _ = BuildNeighborAdvert(na, &NeighborAdvertFields{Src: v6A, Dst: v6B, Target: v6A, TargetMAC: macA, Solicited: true})
	f.Add(na)
	f.Add([]byte{})
}

func FuzzEthernet(f *testing.F) {
	f.Add(append(make([]byte, 12), 0x81, 0x00, 0x20, 0x64, 0x08, 0x00, 0x45))
	f.Add(append(make([]byte, 12), 0x08, 0x06))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEthernet(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = e.Dst(), e.Src(), e.HasVLAN(), e.VLAN(), e.PCP()
		_, _ = e.EtherType(), e.Bytes()
		if len(e.Payload()) != len(b)-e.HeaderLen() {
			t.Fatal("payload length")
		}
		e.SetDst(macA)
		e.SetSrc(macB)
		if e.Dst() != macA || e.Src() != macB {
			t.Fatal("MAC rewrite")
		}
	})
}

func FuzzARP(f *testing.F) {
	f.Add(arpWithOp(ARPRequest))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseARP(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP()
		_, _ = a.IsGratuitous(), a.Bytes()
		c := make([]byte, ARPLen)
		if _, err := PutARP(c, a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP()); err != nil || !bytes.Equal(c, a.Bytes()) {
			t.Fatalf("rebuild: %v\n %x\n %x", err, c, a.Bytes())
		}
	})
}

func FuzzIPv4(f *testing.F) {
	seedPackets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseIPv4(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = p.HeaderLen(), p.TOS(), p.TotalLen(), p.ID(), p.DF()
		_, _, _, _, _ = p.MF(), p.FragmentOffset(), p.IsFragment(), p.TTL(), p.Protocol()
		_, _, _, _, _ = p.Checksum(), p.Src(), p.Dst(), p.Options(), p.Payload()
		_, _ = p.FiveTuple()
		_ = ICMPv4ErrorAllowed(p)
		wasValid := p.ChecksumValid()
		if p.DecTTL() && wasValid != p.ChecksumValid() {
			t.Fatal("DecTTL broke the checksum")
		}
		p.SetChecksum()
		if !p.ChecksumValid() {
			t.Fatal("SetChecksum")
		}
		out := make([]byte, ICMPv4ErrorLen(p))
		m, err := BuildICMPv4FragNeeded(out, v4A, p, 1400)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := ParseIPv4(m.Bytes()); err != nil || !q.ChecksumValid() {
			t.Fatalf("frag-needed does not parse: %v", err)
		}
		if ic, err := ParseICMPv4(m.Payload()); err != nil || !ic.ChecksumValid() || ic.NextHopMTU() != 1400 {
			t.Fatalf("frag-needed icmp: %v", err)
		}
	})
}

func FuzzIPv6(f *testing.F) {
	seedPackets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseIPv6(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = p.TrafficClass(), p.FlowLabel(), p.PayloadLen(), p.NextHeader(), p.HopLimit()
		_, _, _ = p.Src(), p.Dst(), p.Payload()
		tr, err := p.Transport()
		if err == nil && (tr.Offset < IPv6HeaderLen || tr.Offset > len(p.Bytes())) {
			t.Fatalf("transport offset %d outside packet of %d", tr.Offset, len(p.Bytes()))
		}
		_, _ = p.FiveTuple()
		_ = ICMPv6ErrorAllowed(p)
		out := make([]byte, ICMPv6PacketTooBigLen(p))
		m, err := BuildICMPv6PacketTooBig(out, v6A, p, 1280)
		if err != nil {
			t.Fatal(err)
		}
		ic, err := ParseICMPv6(m.Payload())
		if err != nil || !ic.ChecksumValid(v6A, p.Src()) || len(m.Bytes()) > IPv6MinMTU {
			t.Fatalf("packet too big: %v", err)
		}
		p.DecHopLimit()
	})
}

func FuzzUDP(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 8, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := ParseUDP(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = u.SrcPort(), u.DstPort(), u.Len(), u.Checksum(), u.Payload()
		for _, fam := range [][2]netip.Addr{{v4A, v4B}, {v6A, v6B}} {
			u.SetChecksum(fam[0], fam[1])
			if !u.ChecksumValid(fam[0], fam[1]) {
				t.Fatal("SetChecksum")
			}
		}
	})
}

func FuzzTCP(f *testing.F) {
	f.Add(tcpSegment(f, v4A, v4B, TCPFlagSYN, []byte{1, 2, 4, 5, 0xb4, 1, 1, 0}, "x").Bytes(), uint16(1300))
	f.Add(tcpSegment(f, v4A, v4B, TCPFlagSYN, []byte{2, 4, 0xff, 0xff}, "").Bytes(), uint16(536))
	f.Fuzz(func(t *testing.T, b []byte, clamp uint16) {
		s, err := ParseTCP(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = s.SrcPort(), s.DstPort(), s.Seq(), s.Ack(), s.HeaderLen()
		_, _, _, _, _ = s.Flags(), s.Window(), s.Checksum(), s.Options(), s.Payload()
		s.SetChecksum(v6A, v6B)
		before, had := s.MSS()
		changed := s.ClampMSS(clamp)
		after, has := s.MSS()
		if had != has || changed != (had && before > clamp) || (changed && after != clamp) || (!changed && after != before) {
			t.Fatalf("ClampMSS(%d): %d %v -> %d %v, changed %v", clamp, before, had, after, has, changed)
		}
		if !s.ChecksumValid(v6A, v6B) {
			t.Fatal("ClampMSS broke the checksum")
		}
	})
}

func FuzzICMPv4(f *testing.F) {
	f.Add([]byte{8, 0, 0, 0, 0, 1, 0, 2, 'x'})
	f.Add([]byte{3, 4, 0, 0, 0, 0, 5, 0xdc})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseICMPv4(b)
		if err != nil {
			return
		}
		_, _, _, _, _ = m.Type(), m.Code(), m.Checksum(), m.IsEcho(), m.IsError()
		_, _, _, _ = m.ID(), m.Seq(), m.NextHopMTU(), m.Body()
		m.SetChecksum()
		if !m.ChecksumValid() {
			t.Fatal("SetChecksum")
		}
	})
}

func FuzzICMPv6(f *testing.F) {
	seedPackets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, err := ParseIPv6(b)
		if err != nil {
			return
		}
		tr, err := ip.Transport()
		if err != nil || tr.Proto != ProtoICMPv6 {
			return
		}
		m, err := ParseICMPv6(ip.Bytes()[tr.Offset:])
		if err != nil {
			return
		}
		_, _, _, _, _ = m.Type(), m.Code(), m.Checksum(), m.IsEcho(), m.IsError()
		_, _, _, _ = m.ID(), m.Seq(), m.MTU(), m.Body()
		_ = m.ChecksumValid(ip.Src(), ip.Dst())
		if ns, err := ParseNeighborSolicit(ip, m); err == nil {
			_, _ = ns.SourceLinkAddr()
			_, _ = ns.Target(), ns.IsDAD(ip)
		}
		if na, err := ParseNeighborAdvert(ip, m); err == nil {
			_, _ = na.TargetLinkAddr()
			_, _, _, _ = na.Router(), na.Solicited(), na.Override(), na.Target()
		}
		if rs, err := ParseRouterSolicit(ip, m); err == nil {
			_, _ = rs.SourceLinkAddr()
		}
		if ra, err := ParseRouterAdvert(ip, m); err == nil {
			_, _, _, _, _, _ = ra.CurHopLimit(), ra.Managed(), ra.Other(), ra.RouterLifetime(), ra.ReachableTime(), ra.RetransTimer()
			_, _ = ra.SourceLinkAddr()
			_, _ = ra.MTU()
			_, _ = ra.Option(NDOptPrefixInfo)
		}
		m.SetChecksum(ip.Src(), ip.Dst())
		if !m.ChecksumValid(ip.Src(), ip.Dst()) {
			t.Fatal("SetChecksum")
		}
	})
}

func FuzzMPLS(f *testing.F) {
	f.Add([]byte{0, 0x64, 0x01, 0x40, 0x45})
	f.Add([]byte{0, 0x64, 0x00, 0x40, 0, 0xc8, 0x01, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMPLS(b)
		if err != nil {
			return
		}
		for i := -1; i <= m.Depth(); i++ {
			e := m.Entry(i)
			_, _, _, _ = e.Label(), e.TC(), e.Bottom(), e.TTL()
		}
		if !m.Entry(m.Depth()-1).Bottom() || m.Top() != m.Entry(0) {
			t.Fatal("stack")
		}
		_ = m.Payload()
	})
}

func FuzzVXLAN(f *testing.F) {
	f.Add([]byte{8, 0, 0, 0, 0, 0, 42, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVXLAN(b)
		if err != nil {
			return
		}
		_, _, _ = v.Flags(), v.VNI(), v.Payload()
		if v.VNI() > MaxVNI {
			t.Fatal("vni")
		}
	})
}

func FuzzGRE(f *testing.F) {
	f.Add([]byte{0, 0, 0x88, 0x47, 0, 0, 0x01, 0x40})
	f.Add([]byte{0xb0, 0, 0x88, 0x47, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGRE(b)
		if err != nil {
			return
		}
		_, _, _, _ = g.Flags(), g.Protocol(), g.HeaderLen(), g.ChecksumValid()
		_, _ = g.Key()
		_, _ = g.Seq()
		_ = g.Payload()
	})
}

func FuzzFiveTuple(f *testing.F) {
	seedPackets(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, err := ParseFiveTuple(b)
		if err != nil {
			return
		}
		if ft.Reverse().Reverse() != ft || ft.Hash() != ft.Hash() || FlowSrcPort(ft.Hash()) < 49152 {
			t.Fatal("tuple")
		}
	})
}
