package gso

import (
	"bytes"
	"math/bits"
	"net/netip"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// Coalescer merges the TCP segments of one flow bound for one port back
// into super-frames, as the kernel's GRO does, so that a TCP stream leaves
// the vRouter into a TAP in 64 KiB units. It is used by one goroutine: the
// loop that decapsulates a batch of tunnel packets Adds them, writes
// Frames to the ports, and Resets.
//
// A super-frame written to a TAP with NeedsCsum is taken by the receiving
// stack as checksummed (CHECKSUM_PARTIAL), and its IPv4 header checksum is
// recomputed, so merging a segment whose checksum is wrong would turn a
// corrupt segment into an accepted one. Add therefore verifies each
// segment's TCP checksum (and IPv4 header checksum) before merging it
// (about 60 ns of the 165 a 1448-byte segment costs, BenchmarkCoalescerAdd:
// 70 instead of 110 Gbit/s on one core), and a segment
// that fails is passed through unmerged, for the workload's stack to drop.
// The verification is only redundant when the outer datagram carried a
// checksum that was verified, which covers every inner byte: the kernel
// drops a UDP datagram with a bad non-zero checksum (and checks each one
// before UDP GRO coalesces). It is not redundant for MPLSoGRE (no
// checksum over the payload), nor for UDP over IPv4 with a zero checksum
// (common for VXLAN and MPLSoUDP senders, and a UDP socket cannot tell the
// vRouter which it got). A caller that knows every datagram it feeds was
// covered (an IPv6 underlay, where the zero checksum is refused) may set
// TrustChecksums; one that knows it of some packets gives those to
// AddCovered. Every datagram of a UDP GRO train is such a packet: Linux
// coalesces only datagrams with a non-zero checksum, verified on the way
// (udp_gro_receive_segment), and a train that arrives whole was sent by a
// local UDP GSO socket, which must checksum (udp_send_skb refuses GSO
// without) and whose bytes never left memory. Skipping the verification
// there saves about a third of what a merged segment costs.
type Coalescer struct {
	// TrustChecksums skips the verification of inner TCP checksums
	// before merging; see above for when that is safe.
	TrustChecksums bool

	// Gather makes a super-frame point at the payloads of the segments
	// merged after its first (frame.Frame.Frags, at most frame.MaxFrags)
	// rather than copy them into its buffer: the port's Write gathers
	// them, and the copy the kernel makes anyway is the only one. The
	// caller then keeps every packet it added unchanged until Reset (a
	// receive loop's buffers are, until its next read). Without Gather,
	// Add copies and the caller may reuse a packet at once.
	Gather bool

	frames []*frame.Frame
	slots  []slot
	used   int
	// flows maps a flow to its latest frame (open or not): open addressing
	// on flowKey.hash, frame index+1 per entry, 0 empty. There are no
	// deletions (a flow's entry is overwritten when it starts another
	// frame), at most len(frames) entries in 4*len(frames) places, and
	// Reset clears it whole: a few hundred bytes per batch.
	flows []int32
	stats Stats
}

// Stats counts what a Coalescer did since it was made (Reset keeps them).
type Stats struct {
	Packets uint64 // packets Add queued
	Merged  uint64 // of those, segments appended to a super-frame
	BadSum  uint64 // segments left unmerged for a bad TCP checksum
	Dropped uint64 // packets Add dropped: empty, not IPv4/IPv6, too long for a frame
}

// flowKey identifies a TCP flow toward a port.
type flowKey struct {
	src, dst         netip.Addr
	port             uint32
	srcPort, dstPort uint16
}

// flowHash mixes the key's ports with addrs, the addresses' checksum
// partial sum, which Add needs anyway. The two directions of a flow share
// a sum and so may share a probe sequence; that costs a probe. The table
// is not keyed: it is bounded and cleared every batch, so crafted
// collisions cost probes, not memory.
func flowHash(k *flowKey, addrs uint64) uint64 {
	h := (addrs ^ uint64(k.srcPort)<<48 ^ uint64(k.dstPort)<<32 ^ uint64(k.port)) * 0x9e3779b97f4a7c15
	return h ^ h>>31
}

// lookup returns the index of key's latest frame, or -1.
func (c *Coalescer) lookup(k *flowKey, h uint64) int {
	mask := len(c.flows) - 1
	for i := int(h>>1) & mask; ; i = (i + 1) & mask {
		e := c.flows[i]
		if e == 0 {
			return -1
		}
		if c.slots[e-1].key == *k {
			return int(e - 1)
		}
	}
}

// record makes frame f key's latest frame.
func (c *Coalescer) record(k *flowKey, h uint64, f int) {
	mask := len(c.flows) - 1
	for i := int(h>>1) & mask; ; i = (i + 1) & mask {
		e := c.flows[i]
		if e == 0 || c.slots[e-1].key == *k {
			c.flows[i] = int32(f + 1)
			return
		}
	}
}

// slot is the merge state of one output frame.
type slot struct {
	key    flowKey
	open   bool // takes more segments
	dirty  bool // headers not yet updated for the segments merged
	v6     bool
	segs   int // segments in the frame
	full   int // the frame's length, Frags included
	l3, l4 int // IP and TCP header offsets in the frame data
	hdr    int // headers' length: where the payload starts
	mss    int // first segment's payload length
	ipLen  int // IPv4 Total Length or IPv6 Payload Length so far
	next   uint32
	// What every merged segment must share with the first (beyond the
	// flow key, the TCP options and the sequence).
	tos, ttl uint8 // or traffic class, hop limit
	df       bool
	flow     uint32 // IPv6 flow label
	ack      uint32
	window   uint16
	addrs    uint64 // addrSum, for the pseudo-header
}

// NewCoalescer returns a Coalescer that owns maxFrames output frames
// (frame.New, about 64 KiB each); maxFrames below 1 counts as 1.
func NewCoalescer(maxFrames int) *Coalescer {
	if maxFrames < 1 {
		maxFrames = 1
	}
	n := 1 << bits.Len(uint(4*maxFrames-1)) // a power of two, >= 4*maxFrames
	c := &Coalescer{
		frames: frame.Batch(maxFrames),
		slots:  make([]slot, maxFrames),
		flows:  make([]int32, n),
	}
	for _, f := range c.frames {
		f.Frags = make([][]byte, 0, frame.MaxFrags) // no allocation when gathering
	}
	return c
}

// seg is what Add learnt of a packet.
type seg struct {
	key   flowKey
	tcp   bool // a TCP segment with a header, so key is its flow
	merge bool // a candidate for merging (see Add)
	v6    bool
	l4    int // TCP header offset in the packet
	t     packet.TCP
	plen  int
	tos   uint8
	ttl   uint8
	df    bool
	flow  uint32
	addrs uint64 // addrSum of the flow's addresses
	hash  uint64 // flowHash
}

// Add queues the IPv4 or IPv6 packet pkt to go out of port, with an
// Ethernet header dst, src prepended. pkt is copied, so the caller may
// reuse it at once, unless Gather (then only a frame's first packet is).
//
// A TCP segment is appended to the open super-frame of its flow and port
// when it continues it: same addresses and ports, flags ACK or ACK|PSH,
// the same acknowledgment number, window and TCP options (byte for byte),
// IPv4 TOS, TTL and DF (or IPv6 traffic class, flow label and hop limit)
// equal, no IPv4 options or fragments and no IPv6 extension headers, a
// valid checksum (unless TrustChecksums), the next sequence number, a
// payload of the first segment's size or a shorter one, and the IP length
// staying within 65535 bytes and the frame within frame.MaxLen. A PSH or a
// shorter payload closes the super-frame; so does any other packet of the
// flow, which keeps the flow's packets in order. Everything else (other
// protocols, SYN, FIN, RST, URG, ECE, CWR, pure ACKs, malformed packets)
// goes out in a frame of its own, exactly as it came.
//
// Add returns false, and queues nothing, when pkt needs a new frame and all
// are used: the caller writes Frames out, Resets, and adds pkt again. An
// empty packet, one that is not IPv4 or IPv6 by its version, or one too
// long for a frame is dropped (counted in Stats) and Add returns true.
func (c *Coalescer) Add(port uint32, dst, src packet.MAC, pkt []byte) bool {
	return c.add(port, dst, src, pkt, c.TrustChecksums)
}

// AddCovered is Add for a packet whose every byte a verified checksum
// already covered, such as one datagram of a UDP GRO train (see
// Coalescer): its IPv4 header and TCP checksums are not verified again.
func (c *Coalescer) AddCovered(port uint32, dst, src packet.MAC, pkt []byte) bool {
	return c.add(port, dst, src, pkt, true)
}

func (c *Coalescer) add(port uint32, dst, src packet.MAC, pkt []byte, trust bool) bool {
	if len(pkt) == 0 || len(pkt) > frame.MaxLen-packet.EthernetHeaderLen {
		c.stats.Dropped++
		return true
	}
	var et uint16
	switch pkt[0] >> 4 {
	case 4:
		et = packet.EtherTypeIPv4
	case 6:
		et = packet.EtherTypeIPv6
	default:
		c.stats.Dropped++
		return true
	}
	var s seg
	c.inspect(port, pkt, trust, &s)
	if s.tcp {
		if i := c.lookup(&s.key, s.hash); i >= 0 && c.slots[i].open {
			if s.merge && c.fits(i, &s) {
				c.merge(i, &s)
				return true
			}
			if c.used == len(c.frames) {
				return false
			}
			c.slots[i].open = false
		}
	}
	if c.used == len(c.frames) {
		return false
	}
	i := c.used
	c.used++
	c.stats.Packets++
	f := c.frames[i]
	f.Reset()
	f.Port = port
	b := f.Buf[frame.Headroom:]
	_, _ = packet.PutEthernet(b, dst, src, et) // b is 64 KiB
	f.SetData(frame.Headroom, packet.EthernetHeaderLen+copy(b[packet.EthernetHeaderLen:], pkt))
	c.slots[i] = slot{}
	if s.merge {
		c.start(i, &s)
	}
	return true
}

// inspect parses pkt with the views and fills s.
func (c *Coalescer) inspect(port uint32, pkt []byte, trust bool, s *seg) {
	var tcpb, addrs []byte
	var src, dst netip.Addr
	clean := false // no IP options, fragments, extension headers or padding
	if pkt[0]>>4 == 4 {
		ip, err := packet.ParseIPv4(pkt)
		if err != nil || ip.IsFragment() || ip.Protocol() != packet.ProtoTCP {
			return
		}
		tcpb, src, dst, addrs = ip.Payload(), ip.Src(), ip.Dst(), ipv4Addrs(ip.Bytes())
		s.l4, s.tos, s.ttl, s.df = ip.HeaderLen(), ip.TOS(), ip.TTL(), ip.DF()
		clean = ip.HeaderLen() == packet.IPv4MinHeaderLen && ip.TotalLen() == len(pkt) &&
			(trust || ip.ChecksumValid()) // the merged header's is recomputed
	} else {
		ip, err := packet.ParseIPv6(pkt)
		if err != nil {
			return
		}
		// TCP right after the fixed header is the case to be fast; the
		// walk finds the flow of the others, to close its super-frame.
		tr := packet.Transport{Proto: ip.NextHeader(), Offset: packet.IPv6HeaderLen}
		if tr.Proto != packet.ProtoTCP {
			if tr, err = ip.Transport(); err != nil || tr.Proto != packet.ProtoTCP || (tr.Fragment && tr.FragmentOffset != 0) {
				return
			}
		}
		tcpb, src, dst, addrs = ip.Bytes()[tr.Offset:], ip.Src(), ip.Dst(), ipv6Addrs(ip.Bytes())
		s.v6, s.l4, s.tos, s.ttl, s.flow = true, tr.Offset, ip.TrafficClass(), ip.HopLimit(), ip.FlowLabel()
		clean = tr.Offset == packet.IPv6HeaderLen && len(ip.Bytes()) == len(pkt)
	}
	t, err := packet.ParseTCP(tcpb)
	if err != nil {
		return
	}
	s.tcp, s.t = true, t
	s.key = flowKey{src: src, dst: dst, port: port, srcPort: t.SrcPort(), dstPort: t.DstPort()}
	s.addrs = addrSum(addrs)
	s.hash = flowHash(&s.key, s.addrs)
	s.plen = len(t.Payload())
	fl := t.Flags()
	if !clean || s.plen == 0 || (fl != packet.TCPFlagACK && fl != packet.TCPFlagACK|packet.TCPFlagPSH) {
		return
	}
	if !trust && fold(sum(tcpb, pseudo(s.addrs, packet.ProtoTCP, len(tcpb)))) != 0xffff {
		c.stats.BadSum++
		return
	}
	s.merge = true
}

// start makes frame i, which holds s's packet, the open super-frame of s's
// flow (unless s closes it at once with PSH).
func (c *Coalescer) start(i int, s *seg) {
	l3 := packet.EthernetHeaderLen
	ipLen := s.l4 + len(s.t.Bytes())
	if s.v6 {
		ipLen -= packet.IPv6HeaderLen
	}
	c.slots[i] = slot{
		key: s.key, full: c.frames[i].Len,
		open: s.t.Flags()&packet.TCPFlagPSH == 0,
		v6:   s.v6, segs: 1,
		l3: l3, l4: l3 + s.l4, hdr: l3 + s.l4 + s.t.HeaderLen(),
		mss: s.plen, ipLen: ipLen, next: s.t.Seq() + uint32(s.plen),
		tos: s.tos, ttl: s.ttl, df: s.df, flow: s.flow,
		ack: s.t.Ack(), window: s.t.Window(), addrs: s.addrs,
	}
	c.record(&s.key, s.hash, i)
}

// fits reports whether segment s continues frame i's super-frame.
func (c *Coalescer) fits(i int, s *seg) bool {
	sl := &c.slots[i]
	f := c.frames[i]
	t := s.t
	if sl.v6 != s.v6 || sl.tos != s.tos || sl.ttl != s.ttl || sl.df != s.df || sl.flow != s.flow ||
		sl.ack != t.Ack() || sl.window != t.Window() || sl.next != t.Seq() ||
		s.plen > sl.mss || sl.ipLen+s.plen > 0xffff || sl.full+s.plen > frame.MaxLen ||
		(c.Gather && len(f.Frags) == frame.MaxFrags) {
		return false
	}
	// The TCP options, compared with the first segment's in the frame.
	data := f.Data()
	return sl.hdr-sl.l4 == t.HeaderLen() &&
		bytes.Equal(data[sl.l4+packet.TCPMinHeaderLen:sl.hdr], t.Options())
}

// merge appends s's payload to frame i.
func (c *Coalescer) merge(i int, s *seg) {
	sl := &c.slots[i]
	f := c.frames[i]
	if c.Gather {
		f.Frags = append(f.Frags, s.t.Payload())
	} else {
		end := f.Off + f.Len
		f.Len += copy(f.Buf[end:], s.t.Payload())
	}
	sl.full += s.plen
	sl.segs++
	sl.ipLen += s.plen
	sl.next += uint32(s.plen)
	sl.dirty = true
	if s.t.Flags()&packet.TCPFlagPSH != 0 {
		tcp := f.Data()[sl.l4:]
		setTCPFlags(tcp, tcp[13]|packet.TCPFlagPSH)
		sl.open = false
	}
	if s.plen < sl.mss {
		sl.open = false
	}
	c.stats.Packets++
	c.stats.Merged++
}

// Frames returns the queued frames in the order their first packet was
// added, each with Port set. A frame of several segments is a super-frame
// for a TAP: GSO GSOTCPv4 or GSOTCPv6, GSOSize the first segment's payload
// size, HdrLen the headers' length, NeedsCsum with CsumStart/CsumOffset at
// the TCP checksum, which holds the pseudo-header sum (as Linux puts it in
// a CHECKSUM_PARTIAL packet), and the IP length and IPv4 header checksum
// updated; its headers are those of its first segment, with PSH if the
// last had it. With Gather, its Data is the first segment and Frags the
// payloads of the others. A frame of one packet is that packet as it came, with no
// offload. The frames stay the Coalescer's: valid until Reset or the next
// Add.
func (c *Coalescer) Frames() []*frame.Frame {
	for i := range c.used {
		if c.slots[i].dirty {
			c.finish(i)
		}
	}
	return c.frames[:c.used]
}

// finish updates frame i's headers and offload for its merged segments.
func (c *Coalescer) finish(i int) {
	sl := &c.slots[i]
	f := c.frames[i]
	data := f.Data()
	ip := data[sl.l3:]
	tcp := data[sl.l4:]
	gso := frame.GSOTCPv4
	if sl.v6 {
		gso = frame.GSOTCPv6
		setIPv6PayloadLen(ip, sl.ipLen)
	} else {
		setIPv4TotalLen(ip, sl.ipLen)
		setIPv4Checksum(ip, sl.l4-sl.l3)
	}
	tcpLen := sl.full - sl.l4 // Frags included
	putCsum(tcp, tcpCsumOff, fold(pseudo(sl.addrs, packet.ProtoTCP, tcpLen)))
	f.Offload = frame.Offload{
		GSO: gso, GSOSize: uint16(sl.mss), HdrLen: uint16(sl.hdr),
		NeedsCsum: true, CsumStart: uint16(sl.l4), CsumOffset: tcpCsumOff,
	}
	sl.dirty = false
}

// Reset empties the Coalescer for the next batch; the frames Frames
// returned are reused.
func (c *Coalescer) Reset() {
	for i := range c.used {
		c.frames[i].Reset()
		c.slots[i] = slot{}
	}
	c.used = 0
	clear(c.flows)
}

// Stats returns the counters.
func (c *Coalescer) Stats() Stats { return c.stats }
