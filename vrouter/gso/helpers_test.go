package gso

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// Test addresses and MACs.
var (
	v4A  = netip.MustParseAddr("10.0.10.3")
	v4B  = netip.MustParseAddr("10.0.100.7")
	v6A  = netip.MustParseAddr("fd00:10::3")
	v6B  = netip.MustParseAddr("fd00:100::7")
	macA = packet.MAC{0x02, 0, 0, 0, 0, 0xa}
	macB = packet.MAC{0x02, 0, 0, 0, 0, 0xb}
)

// refSum is the RFC 1071 sum taken literally, 16-bit big-endian words with
// end-around carry: the verifier the tests trust, independent of sum.
func refSum(b []byte, acc uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return acc
}

// refPseudo is the pseudo-header built as bytes (RFC 768, RFC 8200 8.1) and
// summed by refSum.
func refPseudo(src, dst netip.Addr, proto uint8, length int) uint32 {
	var b []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		b = append(append(b, s[:]...), d[:]...)
		b = append(b, 0, proto, byte(length>>8), byte(length))
	} else {
		s, d := src.As16(), dst.As16()
		b = append(append(b, s[:]...), d[:]...)
		b = append(b, byte(length>>24), byte(length>>16), byte(length>>8), byte(length), 0, 0, 0, proto)
	}
	return refSum(b, 0)
}

// checkPacket verifies an IPv4/IPv6 packet with a TCP or UDP payload (no
// extension headers): lengths consistent with len(pkt), IPv4 header and
// transport checksums correct by refSum. It returns the transport view's
// bytes.
func checkPacket(t testing.TB, pkt []byte) (l4 []byte, proto uint8, src, dst netip.Addr) {
	t.Helper()
	switch pkt[0] >> 4 {
	case 4:
		ip, err := packet.ParseIPv4(pkt)
		if err != nil {
			t.Fatalf("ipv4: %v", err)
		}
		if ip.TotalLen() != len(pkt) {
			t.Fatalf("ipv4 total length %d, packet %d", ip.TotalLen(), len(pkt))
		}
		if refSum(pkt[:ip.HeaderLen()], 0) != 0xffff {
			t.Fatalf("ipv4 header checksum %#04x wrong", ip.Checksum())
		}
		l4, proto, src, dst = ip.Payload(), ip.Protocol(), ip.Src(), ip.Dst()
	case 6:
		ip, err := packet.ParseIPv6(pkt)
		if err != nil {
			t.Fatalf("ipv6: %v", err)
		}
		if len(ip.Bytes()) != len(pkt) {
			t.Fatalf("ipv6 payload length %d, packet %d", ip.PayloadLen(), len(pkt))
		}
		l4, proto, src, dst = ip.Payload(), ip.NextHeader(), ip.Src(), ip.Dst()
	default:
		t.Fatalf("ip version %d", pkt[0]>>4)
	}
	if proto == packet.ProtoUDP {
		u, err := packet.ParseUDP(l4)
		if err != nil || u.Len() != len(l4) {
			t.Fatalf("udp: %v, length %d of %d", err, u.Len(), len(l4))
		}
		if u.Checksum() == 0 {
			t.Fatal("udp checksum 0 (none)")
		}
	} else if _, err := packet.ParseTCP(l4); err != nil {
		t.Fatalf("tcp: %v", err)
	}
	if s := refSum(l4, refPseudo(src, dst, proto, len(l4))); s != 0xffff {
		t.Fatalf("proto %d checksum wrong: sum %#04x", proto, s)
	}
	return l4, proto, src, dst
}

// spec describes a super-frame to build.
type spec struct {
	v6, udp bool
	vlan    bool
	mss     int
	payload int
	flags   uint8  // TCP; ACK when 0
	tcpOpts []byte // multiple of 4
	ipOpts  []byte // IPv4, multiple of 4
	seq     uint32
	id      uint16
	seed    uint64
}

func (s spec) String() string {
	fam, l4 := "v4", "tcp"
	if s.v6 {
		fam = "v6"
	}
	if s.udp {
		l4 = "udp"
	}
	return fmt.Sprintf("%s%s/mss=%d/len=%d/opts=%d+%d/vlan=%v/flags=%#x", l4, fam, s.mss, s.payload, len(s.ipOpts), len(s.tcpOpts), s.vlan, s.flags)
}

// build returns the super-frame as a TAP gives it: Ethernet, IP with the
// whole length and a valid header checksum, TCP/UDP with the pseudo-header
// sum of the whole length in the checksum field (CHECKSUM_PARTIAL), and the
// virtio offload.
func (s spec) build(t testing.TB) *frame.Frame {
	t.Helper()
	r := rand.New(rand.NewPCG(s.seed, uint64(s.payload)))
	f := frame.New()
	b := f.Buf[frame.Headroom:]
	et := uint16(packet.EtherTypeIPv4)
	if s.v6 {
		et = packet.EtherTypeIPv6
	}
	var l3 int
	var err error
	if s.vlan {
		l3, err = packet.PutEthernetVLAN(b, macB, macA, 100, 0, et)
	} else {
		l3, err = packet.PutEthernet(b, macB, macA, et)
	}
	if err != nil {
		t.Fatal(err)
	}
	proto, thl := uint8(packet.ProtoTCP), packet.TCPMinHeaderLen+len(s.tcpOpts)
	if s.udp {
		proto, thl = packet.ProtoUDP, packet.UDPHeaderLen
	}
	l4len := thl + s.payload
	src, dst := v4A, v4B
	var iphl int
	if s.v6 {
		src, dst = v6A, v6B
		iphl, err = packet.PutIPv6Header(b[l3:], &packet.IPv6Header{TrafficClass: 0x10, FlowLabel: 0x12345, NextHeader: proto, Src: src, Dst: dst}, l4len)
	} else {
		iphl, err = packet.PutIPv4Header(b[l3:], &packet.IPv4Header{TOS: 0x10, ID: s.id, DF: true, Protocol: proto, Src: src, Dst: dst, Options: s.ipOpts}, l4len)
	}
	if err != nil {
		t.Fatal(err)
	}
	l4 := l3 + iphl
	if s.udp {
		if _, err := packet.PutUDP(b[l4:l4+l4len], 40000, 6635, s.payload); err != nil {
			t.Fatal(err)
		}
	} else {
		flags := s.flags
		if flags == 0 {
			flags = packet.TCPFlagACK
		}
		if _, err := packet.PutTCPHeader(b[l4:], &packet.TCPHeader{SrcPort: 40000, DstPort: 8000, Seq: s.seq, Ack: 0x01020304, Flags: flags, Window: 512, Options: s.tcpOpts}); err != nil {
			t.Fatal(err)
		}
	}
	for i := l4 + thl; i < l4+l4len; i++ {
		b[i] = byte(r.Uint32())
	}
	off := uint16(16)
	gso := frame.GSOTCPv4
	switch {
	case s.udp:
		off, gso = 6, frame.GSOUDPL4
	case s.v6:
		gso = frame.GSOTCPv6
	}
	binary.BigEndian.PutUint16(b[l4+int(off):], uint16(refPseudo(src, dst, proto, l4len)))
	f.SetData(frame.Headroom, l4+l4len)
	f.Offload = frame.Offload{GSO: gso, GSOSize: uint16(s.mss), HdrLen: uint16(l4 + thl), NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: off}
	f.Port = 7
	return f
}

// segmentAll cuts f whole into one buffer, failing the test on error.
func segmentAll(t testing.TB, f *frame.Frame, l Layout) ([]byte, Segments) {
	t.Helper()
	dst := make([]byte, 4*frame.BufSize)
	s, err := Segment(dst, f, l, 0)
	if err != nil {
		t.Fatalf("segment: %v", err)
	}
	if s.Next() != s.Total {
		t.Fatalf("segment: wrote %d of %d", s.N, s.Total)
	}
	return dst[:s.Len], s
}

// pieces splits Segment's output into its segments (without the prefix).
func pieces(out []byte, s Segments, prefix int) [][]byte {
	var ps [][]byte
	for i := 0; i < s.N; i++ {
		end := min((i+1)*s.Stride, len(out))
		ps = append(ps, out[i*s.Stride+prefix:end])
	}
	return ps
}
