package gso

import (
	"errors"
	"fmt"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// Layout is how Segment lays the segments of a super-frame out in its
// destination buffer: one after another, Stride bytes apart, each made of
// Prefix free bytes and then the segment, so that a UDP GSO send of the
// whole buffer puts one tunnel packet on the wire per segment.
type Layout struct {
	// Prefix is the room left in front of each segment for the caller's
	// tunnel header (an MPLS label, a VXLAN header); Segment does not
	// write it.
	Prefix int
	// From is the offset in the super-frame's data where each segment
	// starts: 0 keeps the Ethernet header (VXLAN), the IP header's offset
	// (14, 18 with a VLAN tag) carries the IP packet only (MPLSoUDP,
	// MPLSoGRE). Anything from 0 to the IP header's offset is accepted.
	From int
	// Max bounds the segments one call writes, for the kernel's limit on
	// the segments of one UDP GSO send (UDP_MAX_SEGMENTS: 64 on older
	// kernels, 128 on newer ones); 0 means no bound but dst's size.
	Max int
}

// Segments is what one Segment call wrote.
type Segments struct {
	// Stride is the distance between two segments in dst: Prefix, the
	// headers from Layout.From on, and GSOSize bytes of payload. It is the
	// segment size to give UDP GSO.
	Stride int
	// First is the index of the first segment written, N how many were
	// written, Total how many f has. Segment i starts at
	// dst[(i-First)*Stride+Prefix]. When First+N < Total the caller sends
	// what it has and calls again with first = First+N.
	First, N, Total int
	// Len is the bytes written from dst[0]: (N-1)*Stride plus the last
	// segment's Prefix and length. Only the super-frame's last segment can
	// be shorter than Stride-Prefix.
	Len int
}

// Next is the index of the first segment not written yet, Total when the
// super-frame is done.
func (s Segments) Next() int { return s.First + s.N }

// Segment cuts the super-frame f (f.GSO != GSONone; the data is an Ethernet
// frame, the Offload as the TAP gave it) into segments of at most f.GSOSize
// bytes of transport payload and writes segments first, first+1, ... into
// dst as the Layout says: as many as dst holds, at most l.Max. It leaves f
// unchanged. Every segment is a packet ready for the wire:
//
//   - IPv4: Total Length, ID (the super-frame's plus the segment's index),
//     header checksum (options are copied as they are); IPv6: Payload
//     Length;
//   - TCP: sequence number advanced by index*GSOSize, FIN and PSH only on
//     the last segment, CWR only on the first, the full checksum;
//   - UDP (USO): Length and the full checksum (0 sent as 0xffff).
//
// The super-frame's own transport checksum is ignored, whether partial
// (NeedsCsum) or not: each segment's is computed from scratch, so the
// partial-checksum fields are not checked. HdrLen may exceed the real
// headers (Linux's tun reports the frame's linear part there, which can be
// the whole first segment) but not fall short of them. The IP length field
// bounds the packet: bytes after it (link padding) are not sent.
//
// Errors: f not a super-frame, GSOSize 0, an Ethernet type, IP version or
// transport protocol that disagrees with f.GSO, an IPv4 fragment, IPv6
// extension headers (not supported: the TCP stack does not send them with
// GSO, and a Routing header would change the pseudo-header), SYN or RST in
// a TCP super-frame, a UDP Length that disagrees with the IP length, a bad
// Layout or first, or a dst too small for one segment. On error dst is
// undefined.
func Segment(dst []byte, f *frame.Frame, l Layout, first int) (Segments, error) {
	s, err := parseSuper(f)
	if err != nil {
		return Segments{}, err
	}
	if l.From < 0 || l.From > s.l3 {
		return Segments{}, fmt.Errorf("gso: layout from %d outside 0..%d (the IP header's offset)", l.From, s.l3)
	}
	if l.Prefix < 0 || l.Max < 0 {
		return Segments{}, fmt.Errorf("gso: layout prefix %d, max %d: negative", l.Prefix, l.Max)
	}
	if first < 0 || first >= s.n {
		return Segments{}, fmt.Errorf("gso: first segment %d outside 0..%d", first, s.n-1)
	}
	hl := s.hdr - l.From
	stride := l.Prefix + hl + s.mss
	k := s.n - first
	if l.Max > 0 && k > l.Max {
		k = l.Max
	}
	size := func(k int) int { return (k-1)*stride + l.Prefix + hl + s.payloadLen(first+k-1) }
	if size(k) > len(dst) {
		// Then the run is cut before the super-frame's last segment, so
		// every segment written is a whole stride.
		k = len(dst) / stride
		if k == 0 {
			return Segments{}, fmt.Errorf("gso: dst of %d bytes holds no segment of %d", len(dst), stride)
		}
	}
	data := f.Data()
	for j := 0; j < k; j++ {
		s.write(dst[j*stride+l.Prefix:], data, l.From, first+j)
	}
	return Segments{Stride: stride, First: first, N: k, Total: s.n, Len: size(k)}, nil
}

// SegmentFrames cuts the super-frame f like Segment, one segment per frame,
// for encapsulations without GSO: out[i] is reset, holds segment i from
// f's data offset from on, at frame.Headroom, with Port copied from f and
// no offload (its checksums are complete). It returns how many frames it
// filled; too few frames in out, or a frame too small, is an error, and
// leaves the frames of out undefined.
func SegmentFrames(f *frame.Frame, out []*frame.Frame, from int) (int, error) {
	s, err := parseSuper(f)
	if err != nil {
		return 0, err
	}
	if from < 0 || from > s.l3 {
		return 0, fmt.Errorf("gso: from %d outside 0..%d (the IP header's offset)", from, s.l3)
	}
	if len(out) < s.n {
		return 0, fmt.Errorf("gso: %d output frames for %d segments", len(out), s.n)
	}
	data := f.Data()
	hl := s.hdr - from
	for i := 0; i < s.n; i++ {
		o := out[i]
		if o == nil {
			return 0, fmt.Errorf("gso: output frame %d is nil", i)
		}
		n := hl + s.payloadLen(i)
		if len(o.Buf) < frame.Headroom+n {
			return 0, fmt.Errorf("gso: output frame %d: buffer of %d bytes, need %d", i, len(o.Buf), frame.Headroom+n)
		}
		o.Reset()
		s.write(o.Buf[frame.Headroom:], data, from, i)
		o.SetData(frame.Headroom, n)
		o.Port = f.Port
	}
	return s.n, nil
}

// super is where a super-frame's headers are, found once per call. All
// offsets count from the start of the frame data.
type super struct {
	l3, l4, hdr, end int // IP header, transport header, payload, end of the IP packet
	v6, udp          bool
	mss, n           int    // payload per segment, segments
	id               uint16 // IPv4 ID of the first segment
	seq              uint32 // TCP sequence number of the first segment
	flags            uint8  // TCP flags of the super-frame
	addrs            uint64 // addrSum of the source and destination
	ipSum            uint64 // IPv4 header sum without Total Length, ID and checksum
}

// payloadLen is segment i's payload length.
func (s *super) payloadLen(i int) int {
	if i == s.n-1 {
		return s.end - s.hdr - i*s.mss
	}
	return s.mss
}

var errNil = errors.New("gso: nil frame")

// parseSuper validates f as a super-frame, with the packet views.
func parseSuper(f *frame.Frame) (super, error) {
	var s super
	if f == nil {
		return s, errNil
	}
	if f.GSO == frame.GSONone {
		return s, errors.New("gso: frame is not a super-frame (gso none)")
	}
	if f.GSO > frame.GSOUDPL4 {
		return s, fmt.Errorf("gso: gso type %d unknown", f.GSO)
	}
	if f.GSOSize == 0 {
		return s, fmt.Errorf("gso: %s super-frame with gso size 0", f.GSO)
	}
	data, err := frameData(f)
	if err != nil {
		return s, fmt.Errorf("gso: %w", err)
	}
	eth, err := packet.ParseEthernet(data)
	if err != nil {
		return s, fmt.Errorf("gso: %s super-frame: %w", f.GSO, err)
	}
	s.l3 = eth.HeaderLen()
	et := eth.EtherType()
	var proto uint8
	switch {
	case et == packet.EtherTypeIPv4 && f.GSO != frame.GSOTCPv6:
		ip, err := packet.ParseIPv4(eth.Payload())
		if err != nil {
			return s, fmt.Errorf("gso: %s super-frame: %w", f.GSO, err)
		}
		if ip.IsFragment() {
			return s, fmt.Errorf("gso: %s super-frame: ipv4: fragment (offset %d, more %v)", f.GSO, ip.FragmentOffset(), ip.MF())
		}
		s.l4, s.end, s.id, proto = s.l3+ip.HeaderLen(), s.l3+ip.TotalLen(), ip.ID(), ip.Protocol()
		s.addrs = addrSum(ipv4Addrs(ip.Bytes()))
		// Each segment's header differs in Total Length and ID only, so
		// the rest is summed once.
		var h [packet.IPv4MaxHeaderLen]byte
		n := copy(h[:], ip.Bytes()[:ip.HeaderLen()])
		clear(h[2:6])
		clear(h[10:12])
		s.ipSum = sum(h[:n], 0)
	case et == packet.EtherTypeIPv6 && f.GSO != frame.GSOTCPv4:
		ip, err := packet.ParseIPv6(eth.Payload())
		if err != nil {
			return s, fmt.Errorf("gso: %s super-frame: %w", f.GSO, err)
		}
		proto = ip.NextHeader()
		if proto != packet.ProtoTCP && proto != packet.ProtoUDP {
			return s, fmt.Errorf("gso: %s super-frame: ipv6: next header %d: extension headers are not supported", f.GSO, proto)
		}
		s.v6, s.l4, s.end = true, s.l3+packet.IPv6HeaderLen, s.l3+len(ip.Bytes())
		s.addrs = addrSum(ipv6Addrs(ip.Bytes()))
	default:
		return s, fmt.Errorf("gso: %s super-frame: ethernet: type %#04x does not match", f.GSO, et)
	}
	seg := data[s.l4:s.end]
	switch {
	case proto == packet.ProtoTCP && f.GSO != frame.GSOUDPL4:
		t, err := packet.ParseTCP(seg)
		if err != nil {
			return s, fmt.Errorf("gso: %s super-frame: %w", f.GSO, err)
		}
		s.hdr, s.seq, s.flags = s.l4+t.HeaderLen(), t.Seq(), t.Flags()
		if s.flags&(packet.TCPFlagSYN|packet.TCPFlagRST) != 0 {
			return s, fmt.Errorf("gso: %s super-frame: tcp: flags %#02x: SYN or RST in a super-frame", f.GSO, s.flags)
		}
	case proto == packet.ProtoUDP && f.GSO == frame.GSOUDPL4:
		u, err := packet.ParseUDP(seg)
		if err != nil {
			return s, fmt.Errorf("gso: %s super-frame: %w", f.GSO, err)
		}
		if u.Len() != len(seg) {
			return s, fmt.Errorf("gso: %s super-frame: udp: length %d, want the ip payload's %d", f.GSO, u.Len(), len(seg))
		}
		s.udp, s.hdr = true, s.l4+packet.UDPHeaderLen
	default:
		return s, fmt.Errorf("gso: %s super-frame: ip: protocol %d does not match", f.GSO, proto)
	}
	if f.HdrLen != 0 && int(f.HdrLen) < s.hdr {
		return s, fmt.Errorf("gso: %s super-frame: hdr len %d below the %d bytes of headers", f.GSO, f.HdrLen, s.hdr)
	}
	if int(f.HdrLen) > s.end {
		return s, fmt.Errorf("gso: %s super-frame: hdr len %d exceeds the %d-byte packet", f.GSO, f.HdrLen, s.end)
	}
	s.mss = int(f.GSOSize)
	s.n = (s.end - s.hdr + s.mss - 1) / s.mss
	if s.n == 0 {
		s.n = 1 // no payload: one segment of headers, as it came
	}
	return s, nil
}

// write writes segment i (headers from data[from:], then its payload) at the
// start of seg, which the caller has sized, and fixes its headers.
func (s *super) write(seg, data []byte, from, i int) {
	hl := s.hdr - from
	plen := s.payloadLen(i)
	off := s.hdr + i*s.mss
	copy(seg[:hl], data[from:s.hdr])
	copy(seg[hl:hl+plen], data[off:off+plen])

	ip := seg[s.l3-from : hl+plen]
	l4 := seg[s.l4-from : hl+plen]
	if s.v6 {
		setIPv6PayloadLen(ip, len(l4)) // no extension headers
	} else {
		id := s.id + uint16(i)
		setIPv4TotalLen(ip, len(ip))
		setIPv4ID(ip, id)
		putCsum(ip, 10, ^fold(add(s.ipSum, word(uint16(len(ip)))+word(id))))
	}
	if s.udp {
		setUDPLen(l4, len(l4))
		putCsum(l4, udpCsumOff, 0)
		c := ^fold(sum(l4, pseudo(s.addrs, packet.ProtoUDP, len(l4))))
		if c == 0 {
			c = 0xffff
		}
		putCsum(l4, udpCsumOff, c)
		return
	}
	setTCPSeq(l4, s.seq+uint32(i*s.mss))
	flags := s.flags
	if i != s.n-1 {
		flags &^= packet.TCPFlagFIN | packet.TCPFlagPSH
	}
	if i != 0 {
		flags &^= packet.TCPFlagCWR
	}
	setTCPFlags(l4, flags)
	putCsum(l4, tcpCsumOff, 0)
	putCsum(l4, tcpCsumOff, ^fold(sum(l4, pseudo(s.addrs, packet.ProtoTCP, len(l4)))))
}
