package packet

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

var (
	u4a = netip.MustParseAddr("192.0.2.1")
	u4b = netip.MustParseAddr("192.0.2.2")
	u6a = netip.MustParseAddr("2001:db8:ff::1")
	u6b = netip.MustParseAddr("2001:db8:ff::2")
)

// innerPacket is a UDP-in-IPv4 or -IPv6 packet to encapsulate.
func innerPacket(t testing.TB, v6 bool, n int) []byte {
	t.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i)
	}
	u := make([]byte, 8+n)
	copy(u[8:], payload)
	putUDP(u, 40000, 53, len(u))
	if v6 {
		return ipv6Packet(t, IPv6Header{NextHeader: ProtoUDP, Src: v6A, Dst: v6B}, u)
	}
	return ipv4Packet(t, IPv4Header{Protocol: ProtoUDP, DF: true, Src: v4A, Dst: v4B}, u)
}

func TestPush(t *testing.T) {
	routerMAC := MAC{0x02, 0, 0, 0, 0, 0xaa}
	for _, kind := range []Encap{EncapMPLSoUDP, EncapMPLSoGRE, EncapVXLAN} {
		for _, under6 := range []bool{false, true} {
			for _, inner6 := range []bool{false, true} {
				name := kind.String() + map[bool]string{false: "/v4", true: "/v6"}[under6] + map[bool]string{false: "-in-v4", true: "-in-v6"}[inner6]
				t.Run(name, func(t *testing.T) {
					inner := innerPacket(t, inner6, 100)
					buf := bytes.Repeat([]byte{0xee}, 128+len(inner))
					start := 128
					copy(buf[start:], inner)
					o := &Outer{Src: u4a, Dst: u4b, TTL: 33, TOS: 0x28, DF: true, ID: 7, FlowLabel: 0x12345}
					if under6 {
						o.Src, o.Dst = u6a, u6b
					}
					label := NewMPLSEntry(0x54321, 0, false, 64) // S bit left for the builder to set
					var s int
					var err error
					switch kind {
					case EncapMPLSoUDP:
						s, err = PushMPLSoUDP(buf, start, o, 0xc123, label)
					case EncapMPLSoGRE:
						s, err = PushMPLSoGRE(buf, start, o, label)
					case EncapVXLAN:
						s, err = PushVXLAN(buf, start, o, 0xc123, 0x0a0b0c, routerMAC, macA)
					}
					if err != nil {
						t.Fatal(err)
					}
					if start-s != kind.Overhead(under6) {
						t.Fatalf("wrote %d bytes, Overhead says %d", start-s, kind.Overhead(under6))
					}
					if !bytes.Equal(buf[start:], inner) {
						t.Fatal("inner packet changed")
					}
					for i := 0; i < s; i++ {
						if buf[i] != 0xee {
							t.Fatalf("byte %d before the outer header written", i)
						}
					}
					var l4 []byte
					var proto uint8
					if under6 {
						ip, err := ParseIPv6(buf[s:])
						if err != nil {
							t.Fatal(err)
						}
						if ip.Src() != u6a || ip.Dst() != u6b || ip.HopLimit() != 33 || ip.TrafficClass() != 0x28 || ip.FlowLabel() != 0x12345 || len(ip.Bytes()) != len(buf)-s {
							t.Fatalf("outer ipv6 %x", ip.Bytes()[:40])
						}
						l4, proto = ip.Payload(), ip.NextHeader()
					} else {
						ip, err := ParseIPv4(buf[s:])
						if err != nil {
							t.Fatal(err)
						}
						if !ip.ChecksumValid() || ip.Src() != u4a || ip.Dst() != u4b || ip.TTL() != 33 || ip.TOS() != 0x28 || !ip.DF() || ip.ID() != 7 || ip.TotalLen() != len(buf)-s {
							t.Fatalf("outer ipv4 %x", ip.Bytes()[:20])
						}
						l4, proto = ip.Payload(), ip.Protocol()
					}
					var shim []byte
					switch kind {
					case EncapMPLSoUDP, EncapVXLAN:
						if proto != ProtoUDP {
							t.Fatalf("outer protocol %d", proto)
						}
						u, err := ParseUDP(l4)
						if err != nil {
							t.Fatal(err)
						}
						want := uint16(MPLSoUDPPort)
						if kind == EncapVXLAN {
							want = VXLANPort
						}
						if u.SrcPort() != 0xc123 || u.DstPort() != want || u.Len() != len(l4) {
							t.Fatalf("udp %x", u.Bytes()[:8])
						}
						if under6 != (u.Checksum() != 0) || !u.ChecksumValid(o.Src, o.Dst) {
							t.Fatalf("udp checksum %#04x", u.Checksum())
						}
						shim = u.Payload()
					case EncapMPLSoGRE:
						if proto != ProtoGRE {
							t.Fatalf("outer protocol %d", proto)
						}
						g, err := ParseGRE(l4)
						if err != nil {
							t.Fatal(err)
						}
						if g.Protocol() != EtherTypeMPLS || g.HeaderLen() != 4 {
							t.Fatalf("gre %x", g.Bytes()[:4])
						}
						shim = g.Payload()
					}
					var got []byte
					if kind == EncapVXLAN {
						v, err := ParseVXLAN(shim)
						if err != nil {
							t.Fatal(err)
						}
						if v.VNI() != 0x0a0b0c {
							t.Fatalf("vni %#x", v.VNI())
						}
						e, err := ParseEthernet(v.Payload())
						if err != nil {
							t.Fatal(err)
						}
						wantType := uint16(EtherTypeIPv4)
						if inner6 {
							wantType = EtherTypeIPv6
						}
						if e.Dst() != routerMAC || e.Src() != macA || e.EtherType() != wantType {
							t.Fatalf("inner ethernet %x", e.Bytes()[:14])
						}
						got = e.Payload()
					} else {
						m, err := ParseMPLS(shim)
						if err != nil {
							t.Fatal(err)
						}
						if m.Depth() != 1 || m.Top().Label() != 0x54321 || !m.Top().Bottom() || m.Top().TTL() != 64 {
							t.Fatalf("mpls %x", m.Bytes()[:4])
						}
						got = m.Payload()
					}
					if !bytes.Equal(got, inner) {
						t.Fatal("decapsulated packet differs")
					}
				})
			}
		}
	}
}

func TestPushZeroChecksum6(t *testing.T) {
	inner := innerPacket(t, false, 10)
	buf := make([]byte, 64+len(inner))
	copy(buf[64:], inner)
	s, err := PushMPLSoUDP(buf, 64, &Outer{Src: u6a, Dst: u6b, ZeroUDPChecksum6: true}, 50000, NewMPLSEntry(16, 0, true, 255))
	if err != nil {
		t.Fatal(err)
	}
	ip, _ := ParseIPv6(buf[s:])
	if u, _ := ParseUDP(ip.Payload()); u.Checksum() != 0 || ip.HopLimit() != DefaultTTL {
		t.Fatalf("checksum %#04x hop limit %d", u.Checksum(), ip.HopLimit())
	}
}

func TestPushVXLANFrame(t *testing.T) {
	frame := make([]byte, 14+20)
	putEthernet(frame, macB, macA, EtherTypeIPv4)
	buf := make([]byte, 64+len(frame))
	copy(buf[64:], frame)
	s, err := PushVXLANFrame(buf, 64, &Outer{Src: u4a, Dst: u4b}, 50000, 42)
	if err != nil {
		t.Fatal(err)
	}
	if 64-s != OverheadVXLAN4-EthernetHeaderLen {
		t.Fatalf("overhead %d", 64-s)
	}
	ip, _ := ParseIPv4(buf[s:])
	u, _ := ParseUDP(ip.Payload())
	v, err := ParseVXLAN(u.Payload())
	if err != nil || v.VNI() != 42 || !bytes.Equal(v.Payload(), frame) {
		t.Fatalf("vxlan %v", err)
	}
}

func TestPushErrors(t *testing.T) {
	inner := innerPacket(t, false, 10)
	mk := func(headroom int) []byte {
		b := make([]byte, headroom+len(inner))
		copy(b[headroom:], inner)
		return b
	}
	o4 := &Outer{Src: u4a, Dst: u4b}
	tests := []struct {
		name string
		push func() (int, error)
		want string
	}{
		{"headroom", func() (int, error) { return PushMPLSoUDP(mk(31), 31, o4, 1, 0) }, "mplsoudp: headroom of 31 bytes, need 32"},
		{"headroom v6", func() (int, error) { return PushMPLSoGRE(mk(40), 40, &Outer{Src: u6a, Dst: u6b}, 0) }, "mplsogre: headroom of 40 bytes, need 48"},
		{"headroom vxlan", func() (int, error) { return PushVXLAN(mk(49), 49, o4, 1, 1, macA, macB) }, "vxlan: headroom of 49 bytes, need 50"},
		{"mixed", func() (int, error) { return PushMPLSoUDP(mk(64), 64, &Outer{Src: u4a, Dst: u6b}, 1, 0) }, "must be both IPv4 or both IPv6"},
		{"4in6", func() (int, error) {
			return PushMPLSoUDP(mk(64), 64, &Outer{Src: netip.AddrFrom16(u4a.As16()), Dst: netip.AddrFrom16(u4b.As16())}, 1, 0)
		}, "must be both IPv4 or both IPv6"},
		{"unset", func() (int, error) { return PushMPLSoGRE(mk(64), 64, &Outer{}, 0) }, "must be both IPv4 or both IPv6"},
		{"start past end", func() (int, error) { return PushMPLSoUDP(mk(64), 1000, o4, 1, 0) }, "outside buffer"},
		{"negative start", func() (int, error) { return PushMPLSoGRE(mk(64), -1, o4, 0) }, "outside buffer"},
		{"vni", func() (int, error) { return PushVXLAN(mk(64), 64, o4, 1, 1<<24, macA, macB) }, "vni 16777216 exceeds 24 bits"},
		{"not ip", func() (int, error) { b := mk(64); b[64] = 0x12; return PushVXLAN(b, 64, o4, 1, 1, macA, macB) }, "inner packet version 1 is not IP"},
		{"empty inner vxlan", func() (int, error) { return PushVXLAN(make([]byte, 64), 64, o4, 1, 1, macA, macB) }, "outside buffer"},
		{"too large", func() (int, error) { return PushMPLSoUDP(make([]byte, 65535+64-31), 64, o4, 1, 0) }, "too large to encapsulate"},
	}
	for _, tc := range tests {
		if _, err := tc.push(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestParseEncap(t *testing.T) {
	for _, e := range []Encap{EncapMPLSoUDP, EncapMPLSoGRE, EncapVXLAN} {
		if got, err := ParseEncap(e.String()); err != nil || got != e {
			t.Errorf("%v: %v %v", e, got, err)
		}
	}
	if _, err := ParseEncap("none"); err == nil {
		t.Error("none accepted")
	}
	if Encap(9).String() != "encap(9)" || Encap(9).Overhead(false) != 0 {
		t.Error("unknown encap")
	}
}

func TestPushAllocs(t *testing.T) {
	inner := innerPacket(t, false, 1400)
	buf := make([]byte, MaxEncapOverhead+len(inner))
	copy(buf[MaxEncapOverhead:], inner)
	o4 := &Outer{Src: u4a, Dst: u4b, DF: true}
	o6 := &Outer{Src: u6a, Dst: u6b}
	e := NewMPLSEntry(100, 0, true, 64)
	for name, f := range map[string]func(){
		"mplsoudp4": func() { _, _ = PushMPLSoUDP(buf, MaxEncapOverhead, o4, 50000, e) },
		"mplsoudp6": func() { _, _ = PushMPLSoUDP(buf, MaxEncapOverhead, o6, 50000, e) },
		"mplsogre4": func() { _, _ = PushMPLSoGRE(buf, MaxEncapOverhead, o4, e) },
		"vxlan4":    func() { _, _ = PushVXLAN(buf, MaxEncapOverhead, o4, 50000, 7, macA, macB) },
		"vxlan6":    func() { _, _ = PushVXLAN(buf, MaxEncapOverhead, o6, 50000, 7, macA, macB) },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocs per push", name, a)
		}
	}
}
