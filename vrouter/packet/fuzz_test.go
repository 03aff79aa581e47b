package packet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
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

// FuzzVXLAN: a header parses exactly when it is 8 bytes with the I flag;
// its VNI is bytes 4-6 and PutVXLAN of that VNI writes them back; the
// payload is the rest.
func FuzzVXLAN(f *testing.F) {
	f.Add([]byte{8, 0, 0, 0, 0, 0, 42, 0})
	f.Add([]byte{8, 0xff, 0xff, 0xff, 0xab, 0xcd, 0xef, 0xff, 0x45})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 42, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVXLAN(b)
		if ok := len(b) >= 8 && b[0]&0x08 != 0; (err == nil) != ok {
			t.Fatalf("ParseVXLAN(%x): %v, want accepted %v (RFC 7348: 8 bytes, I flag)", b, err, ok)
		}
		if err != nil {
			return
		}
		if want := uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6]); v.VNI() != want {
			t.Fatalf("VNI %d, want %d from bytes 4-6 of %x", v.VNI(), want, b[:8])
		}
		if v.Flags() != b[0] || len(v.Payload()) != len(b)-8 || !bytes.Equal(v.Bytes(), b) {
			t.Fatalf("flags %#x, payload %d bytes of %d", v.Flags(), len(v.Payload()), len(b))
		}
		out := make([]byte, VXLANHeaderLen)
		if _, err := PutVXLAN(out, v.VNI()); err != nil || out[0] != 0x08 || !bytes.Equal(out[4:7], b[4:7]) {
			t.Fatalf("PutVXLAN(%d) = %x, %v; want the VNI bytes of %x", v.VNI(), out, err, b[:8])
		}
	})
}

// FuzzGRE: a header parses exactly when RFC 2784/2890 allow it (version
// 0, no RFC 1701 routing bits, room for the optional fields its C, K and
// S flags announce); the optional fields read back, serialized from the
// accessors, rebuild the header byte for byte; header and payload
// account for every byte; ChecksumValid agrees with a checksum computed
// here per RFC 2784, which validates once written.
func FuzzGRE(f *testing.F) {
	f.Add([]byte{0, 0, 0x88, 0x47, 0, 0, 0x01, 0x40})
	f.Add([]byte{0xb0, 0, 0x88, 0x47, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 7})
	f.Add([]byte{0x30, 0, 0x88, 0x47, 0, 0, 0, 42, 0, 0, 0, 7, 0x45})
	f.Add([]byte{0x80, 0, 0x08, 0x00, 0, 0, 0, 0, 0x45, 0})
	f.Add([]byte{0x08, 0, 0x88, 0x47, 0, 0, 0x01, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGRE(b)
		want := 4
		if len(b) >= 2 {
			for _, bit := range []byte{0x80, 0x20, 0x10} { // C, K, S
				if b[0]&bit != 0 {
					want += 4
				}
			}
		}
		// Version (low 3 bits of byte 1) 0; R (0x40) and strict source
		// route (0x08) clear.
		ok := len(b) >= 4 && b[1]&0x07 == 0 && b[0]&0x48 == 0 && len(b) >= want
		if (err == nil) != ok {
			t.Fatalf("ParseGRE(%x): %v, want accepted %v", b, err, ok)
		}
		if err != nil {
			return
		}
		if g.HeaderLen() != want || len(g.Payload())+g.HeaderLen() != len(b) || !bytes.Equal(g.Bytes(), b) {
			t.Fatalf("header %d (want %d) + payload %d != %d bytes", g.HeaderLen(), want, len(g.Payload()), len(b))
		}
		// Rebuild the header from what the view says.
		h := binary.BigEndian.AppendUint16(nil, g.Flags())
		h = binary.BigEndian.AppendUint16(h, g.Protocol())
		if g.Flags()&GREFlagC != 0 {
			h = append(h, b[4:8]...) // checksum and reserved: no accessor
		}
		key, hasKey := g.Key()
		if hasKey != (b[0]&0x20 != 0) {
			t.Fatalf("Key present %v with flags %#x", hasKey, g.Flags())
		}
		if hasKey {
			h = binary.BigEndian.AppendUint32(h, key)
		}
		seq, hasSeq := g.Seq()
		if hasSeq != (b[0]&0x10 != 0) {
			t.Fatalf("Seq present %v with flags %#x", hasSeq, g.Flags())
		}
		if hasSeq {
			h = binary.BigEndian.AppendUint32(h, seq)
		}
		if !bytes.Equal(h, b[:g.HeaderLen()]) {
			t.Fatalf("header rebuilt from the accessors\n %x\nwant\n %x", h, b[:g.HeaderLen()])
		}
		if g.Flags()&GREFlagC == 0 {
			if !g.ChecksumValid() {
				t.Fatal("no checksum present, yet not valid")
			}
			return
		}
		// RFC 2784 2.2: the ones' complement of the ones' complement sum
		// of header and payload, checksum field zero.
		c := slices.Clone(b)
		c[4], c[5] = 0, 0
		var sum uint32
		for i := 0; i < len(c); i += 2 {
			w := uint32(c[i]) << 8
			if i+1 < len(c) {
				w |= uint32(c[i+1])
			}
			sum += w
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(c[4:6], ^uint16(sum))
		if cg, err := ParseGRE(c); err != nil || !cg.ChecksumValid() {
			t.Fatalf("a checksum computed per RFC 2784 does not validate: %x", c)
		}
		// Either zero of ones' complement arithmetic validates.
		stored := binary.BigEndian.Uint16(b[4:6])
		if valid := stored == ^uint16(sum) || (sum == 0xffff && stored == 0xffff); g.ChecksumValid() != valid {
			t.Fatalf("checksum %#04x: ChecksumValid %v, RFC 2784 gives %#04x", stored, g.ChecksumValid(), ^uint16(sum))
		}
	})
}

// FuzzFiveTuple: the tuple's addresses, protocol and ports are the bytes
// at their places in the packet, read here without the views (IPv6 with
// extension headers goes by Transport, which FuzzIPv6 holds); a packet
// built anew from the tuple parses back to it, with the same hash; the
// reply direction's reverse is the tuple.
func FuzzFiveTuple(f *testing.F) {
	seedPackets(f)
	udp := make([]byte, 8)
	putUDP(udp, 4000, 53, 8)
	f.Add(ipv4Packet(f, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B}, udp))
	f.Add(ipv4Packet(f, IPv4Header{Protocol: ProtoUDP, Src: v4A, Dst: v4B, Options: []byte{1, 1, 1, 0}}, udp))
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, err := ParseFiveTuple(b)
		if err != nil {
			if transportParses(b) {
				t.Fatalf("ParseFiveTuple(%x): %v, yet its IP and transport headers parse", b, err)
			}
			return
		}
		if ft.Reverse().Reverse() != ft {
			t.Fatal("Reverse")
		}
		var want FiveTuple
		frag := false
		var seg []byte
		switch b[0] >> 4 {
		case 4:
			want = FiveTuple{Src: netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])), Proto: b[9]}
			frag = binary.BigEndian.Uint16(b[6:8])&0x3fff != 0
			seg = b[int(b[0]&0x0f)*4:]
		case 6:
			want = FiveTuple{Src: netip.AddrFrom16([16]byte(b[8:24])), Dst: netip.AddrFrom16([16]byte(b[24:40]))}
			p, _ := ParseIPv6(b)
			tr, err := p.Transport()
			if err != nil {
				t.Fatalf("tuple %v of an IPv6 packet whose transport does not parse: %v", ft, err)
			}
			want.Proto, frag, seg = tr.Proto, tr.Fragment, b[tr.Offset:]
		default:
			t.Fatalf("tuple %v of IP version %d", ft, b[0]>>4)
		}
		if !frag && (want.Proto == ProtoTCP || want.Proto == ProtoUDP) {
			want.SrcPort, want.DstPort = binary.BigEndian.Uint16(seg[0:2]), binary.BigEndian.Uint16(seg[2:4])
		}
		if want.Proto == ProtoTCP || want.Proto == ProtoUDP || frag {
			if ft != want {
				t.Fatalf("tuple %v, want %v from the packet's bytes", ft, want)
			}
		} else if ft.Src != want.Src || ft.Dst != want.Dst || ft.Proto != want.Proto {
			t.Fatalf("tuple %v, want addresses and protocol of %v", ft, want)
		}
		if frag || (ft.Proto != ProtoTCP && ft.Proto != ProtoUDP) {
			return
		}
		// Build a fresh packet from the tuple: no options, no extension
		// headers, a bare transport header.
		var tr []byte
		if ft.Proto == ProtoUDP {
			tr = make([]byte, 8)
			putUDP(tr, ft.SrcPort, ft.DstPort, 8)
		} else {
			tr = make([]byte, 20)
			if _, err := PutTCPHeader(tr, &TCPHeader{SrcPort: ft.SrcPort, DstPort: ft.DstPort}); err != nil {
				t.Fatal(err)
			}
		}
		var pkts [][]byte
		if ft.Src.Is4() {
			pkts = [][]byte{
				ipv4Packet(t, IPv4Header{Protocol: ft.Proto, Src: ft.Src, Dst: ft.Dst}, tr),
				ipv4Packet(t, IPv4Header{Protocol: ft.Proto, Src: ft.Src, Dst: ft.Dst, Options: []byte{1, 1, 1, 0}}, tr),
			}
		} else {
			pkts = [][]byte{
				ipv6Packet(t, IPv6Header{NextHeader: ft.Proto, Src: ft.Src, Dst: ft.Dst}, tr),
				ipv6Packet(t, IPv6Header{NextHeader: ProtoHopByHop, Src: ft.Src, Dst: ft.Dst}, append(extHeader(ft.Proto, 1), tr...)),
			}
		}
		for _, pkt := range pkts {
			back, err := ParseFiveTuple(pkt)
			if err != nil || back != ft || back.Hash() != ft.Hash() {
				t.Fatalf("rebuilt %x: %v, %v; want %v", pkt, back, err, ft)
			}
		}
	})
}

// transportParses: b is an IPv4 or IPv6 packet, not a fragment, whose
// TCP or UDP header parses: one that has a five-tuple.
func transportParses(b []byte) bool {
	var proto uint8
	var seg []byte
	if p, err := ParseIPv4(b); err == nil && b[0]>>4 == 4 {
		if p.IsFragment() {
			return false
		}
		proto, seg = p.Protocol(), p.Payload()
	} else if p, err := ParseIPv6(b); err == nil && b[0]>>4 == 6 {
		tr, err := p.Transport()
		if err != nil || tr.Fragment {
			return false
		}
		proto, seg = tr.Proto, p.Bytes()[tr.Offset:]
	} else {
		return false
	}
	switch proto {
	case ProtoTCP:
		_, err := ParseTCP(seg)
		return err == nil
	case ProtoUDP:
		_, err := ParseUDP(seg)
		return err == nil
	}
	return false
}
