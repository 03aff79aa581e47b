package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// FiveTuple identifies a flow. For ICMP echo messages both ports hold the
// echo identifier, so that a request's Reverse is its reply's tuple. For
// other protocols without ports, and for every fragment of a fragmented
// datagram (only the first carries ports; all must hash alike), both ports
// are 0.
type FiveTuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

// Reverse is the tuple of the reply direction.
func (t FiveTuple) Reverse() FiveTuple {
	return FiveTuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}

// Hash constants: arbitrary odd 64-bit values (from wyhash). The hash is
// deterministic across processes and restarts, so that a restarted vRouter
// puts every flow back on the same ECMP member and UDP source port.
const (
	hashK0 = 0xa0761d6478bd642f
	hashK1 = 0xe7037ed1a0b428db
	hashK2 = 0x8ebc6af09c88c6e3
	hashK3 = 0x589965cc75374cc3
)

// mum multiplies and folds, the mixing step of wyhash.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// Hash is a 64-bit hash of the tuple, for ECMP member selection, the UDP
// source port of tunnels and flow table buckets. It allocates nothing.
func (t FiveTuple) Hash() uint64 {
	s, d := t.Src.As16(), t.Dst.As16()
	s0, s1 := binary.BigEndian.Uint64(s[0:8]), binary.BigEndian.Uint64(s[8:16])
	d0, d1 := binary.BigEndian.Uint64(d[0:8]), binary.BigEndian.Uint64(d[8:16])
	p := uint64(t.SrcPort)<<32 | uint64(t.DstPort)<<16 | uint64(t.Proto)
	h := mum(s0^hashK0, s1^hashK1)
	h = mum(h^d0^hashK2, d1^hashK3)
	return mum(h^p^hashK1, hashK0^p<<1)
}

// FlowSrcPort maps a flow hash into the dynamic port range 49152-65535 that
// RFC 7510 section 3 asks MPLSoUDP (and VXLAN, RFC 7348) senders to use for
// the UDP source port, so the fabric's own ECMP spreads tunnels by flow.
func FlowSrcPort(hash uint64) uint16 { return 0xc000 | uint16(hash>>50) }

// ParseFiveTuple extracts the flow of an IPv4 or IPv6 packet (chosen by the
// version nibble). A transport header it needs the ports of must be whole.
func ParseFiveTuple(b []byte) (FiveTuple, error) {
	if len(b) == 0 {
		return FiveTuple{}, errShort("ip", "version", 0, 0, 1)
	}
	switch b[0] >> 4 {
	case 4:
		p, err := ParseIPv4(b)
		if err != nil {
			return FiveTuple{}, err
		}
		return p.FiveTuple()
	case 6:
		p, err := ParseIPv6(b)
		if err != nil {
			return FiveTuple{}, err
		}
		return p.FiveTuple()
	}
	return FiveTuple{}, errField("ip", "version", 0, int(b[0]>>4), 4, "%d, want %d or 6")
}

// FiveTuple extracts the flow of p.
func (p IPv4) FiveTuple() (FiveTuple, error) {
	t := FiveTuple{Src: p.Src(), Dst: p.Dst(), Proto: p.Protocol()}
	if p.IsFragment() {
		return t, nil
	}
	var err error
	t.SrcPort, t.DstPort, err = ports(t.Proto, p.Payload())
	return t, err
}

// FiveTuple extracts the flow of p, walking its extension headers.
func (p IPv6) FiveTuple() (FiveTuple, error) { return p.fiveTuple(ports) }

// fiveTuple is FiveTuple with the transport header read by portsOf: ports
// for a whole packet, quotedPorts for the quote of an ICMP error.
func (p IPv6) fiveTuple(portsOf func(proto uint8, seg []byte) (uint16, uint16, error)) (FiveTuple, error) {
	tr, err := p.Transport()
	if err != nil {
		return FiveTuple{}, err
	}
	t := FiveTuple{Src: p.Src(), Dst: p.Dst(), Proto: tr.Proto}
	if tr.Fragment {
		return t, nil
	}
	t.SrcPort, t.DstPort, err = portsOf(tr.Proto, p.b[tr.Offset:])
	return t, err
}

// ports reads the ports (or echo identifier) of a transport segment.
func ports(proto uint8, seg []byte) (src, dst uint16, err error) {
	switch proto {
	case ProtoTCP:
		t, err := ParseTCP(seg)
		if err != nil {
			return 0, 0, err
		}
		return t.SrcPort(), t.DstPort(), nil
	case ProtoUDP:
		u, err := ParseUDP(seg)
		if err != nil {
			return 0, 0, err
		}
		return u.SrcPort(), u.DstPort(), nil
	case ProtoICMPv4:
		m, err := ParseICMPv4(seg)
		if err != nil {
			return 0, 0, err
		}
		if m.IsEcho() {
			return m.ID(), m.ID(), nil
		}
	case ProtoICMPv6:
		m, err := ParseICMPv6(seg)
		if err != nil {
			return 0, 0, err
		}
		if m.IsEcho() {
			return m.ID(), m.ID(), nil
		}
	}
	return 0, 0, nil
}
