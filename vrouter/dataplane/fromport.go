package dataplane

import (
	"errors"
	"net/netip"
	"time"

	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/gso"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/services"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// portLoop reads port id until it is detached or closed.
func (e *Engine) portLoop(id uint32, io port.Port) {
	frames := frame.Batch(max(1, io.BatchSize()))
	q := newTxq(e)
	for {
		for _, f := range frames {
			f.Reset()
		}
		n, err := io.Read(frames)
		if err != nil {
			if errors.Is(err, port.ErrClosed) || e.stopped.Load() || e.port(id) == nil {
				return
			}
			e.log.Warn("port read failed", "port", id, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ps := e.port(id)
		if ps == nil || ps.io != io {
			return
		}
		e.portBatch(ps, frames[:n], q)
	}
}

// portBatch forwards one batch read from port ps and writes out what it
// produced: the body of portLoop, apart so that benchmarks run it alone.
func (e *Engine) portBatch(ps *portState, frames []*frame.Frame, q *txq) {
	for _, f := range frames {
		e.fromPort(ps, f, q)
	}
	q.flush()
}

// fromPort forwards one frame an endpoint sent.
func (e *Engine) fromPort(ps *portState, f *frame.Frame, q *txq) {
	ps.c.rxPackets.Add(1)
	ps.c.rxBytes.Add(uint64(f.Len))
	data := f.Data()
	eth, err := packet.ParseEthernet(data)
	if err != nil || eth.HasVLAN() {
		e.portDrop(ps, DropMalformed)
		return
	}
	switch eth.EtherType() {
	case packet.EtherTypeARP:
		e.serve(ps, data, q)
		return
	case packet.EtherTypeIPv4:
		e.fromPortIPv4(ps, f, eth, q)
	case packet.EtherTypeIPv6:
		e.fromPortIPv6(ps, f, eth, q)
	default:
		e.portDrop(ps, DropL2)
	}
}

func (e *Engine) portDrop(ps *portState, r Reason) {
	e.drops[r].Add(1)
	ps.c.drops.Add(1)
}

// serve answers ARP, ND and DHCP; true when the frame was one of those.
func (e *Engine) serve(ps *portState, data []byte, q *txq) bool {
	out := q.scratch()
	n, handled, err := services.Handle(data, &ps.info, out.Buf[frame.Headroom:])
	switch {
	case err != nil:
		e.portDrop(ps, DropServices)
		return true
	case !handled:
		return false
	case n > 0:
		out.SetData(frame.Headroom, n)
		q.toPort(ps, out)
	}
	return true
}

// l2Check applies anti-spoofing and the gateway-MAC rule; false drops.
func (e *Engine) l2Check(ps *portState, eth packet.Ethernet) bool {
	if eth.Src() != ps.cfg.MAC {
		e.portDrop(ps, DropSpoofedMAC)
		return false
	}
	if d := eth.Dst(); d != e.opt.GatewayMAC {
		if d.IsMulticast() {
			e.portDrop(ps, DropL2)
		} else {
			e.portDrop(ps, DropNotToGateway)
		}
		return false
	}
	return true
}

func (e *Engine) fromPortIPv4(ps *portState, f *frame.Frame, eth packet.Ethernet, q *txq) {
	ip, err := packet.ParseIPv4(eth.Payload())
	if err != nil {
		e.portDrop(ps, DropMalformed)
		return
	}
	if ip.Protocol() == packet.ProtoUDP && isDHCPClient(ip) && e.serve(ps, f.Data(), q) {
		return
	}
	leaf, h, ok := e.routeFromPort(ps, f, eth, ip.Src(), ip.Dst(), ip.Bytes(), ip.FiveTuple, q)
	if !ok {
		return
	}
	if !ip.DecTTL() {
		e.icmpV4(ps, ip, false, 0, q)
		e.portDrop(ps, DropTTL)
		return
	}
	e.forward(ps, f, eth, leaf, h, ip.DF(), false, q, ip, packet.IPv6{})
}

func (e *Engine) fromPortIPv6(ps *portState, f *frame.Frame, eth packet.Ethernet, q *txq) {
	ip, err := packet.ParseIPv6(eth.Payload())
	if err != nil {
		e.portDrop(ps, DropMalformed)
		return
	}
	if ip.NextHeader() == packet.ProtoICMPv6 && isNDP(ip) {
		e.serve(ps, f.Data(), q)
		return
	}
	leaf, h, ok := e.routeFromPort(ps, f, eth, ip.Src(), ip.Dst(), ip.Bytes(), ip.FiveTuple, q)
	if !ok {
		return
	}
	if !ip.DecHopLimit() {
		e.icmpV6(ps, ip, false, 0, q)
		e.portDrop(ps, DropTTL)
		return
	}
	e.forward(ps, f, eth, leaf, h, true, true, q, packet.IPv4{}, ip)
}

// routeFromPort is what both families do with an IP packet ip (src to
// dst) an endpoint sent, between parsing and forwarding: the L2 and
// source checks, the gateway's own address, the route lookup, the choice
// of a composite's member and the policy. It returns the next hop to
// forward by and the flow's hash; false when the packet was answered or
// dropped (counted).
func (e *Engine) routeFromPort(ps *portState, f *frame.Frame, eth packet.Ethernet, src, dst netip.Addr, ip []byte,
	fiveTuple func() (packet.FiveTuple, error), q *txq) (leaf *nexthop.NextHop, h uint64, ok bool) {
	if !e.l2Check(ps, eth) {
		return nil, 0, false
	}
	if !ps.allowedSource(src) {
		e.portDrop(ps, DropSpoofedIP)
		return nil, 0, false
	}
	if f.GSO == frame.GSONone {
		// Drop Ethernet padding: what follows is forwarded by length.
		f.Len = packet.EthernetHeaderLen + len(ip)
	}
	if ps.isGateway(dst) {
		e.toGateway(ps, f, eth, ip, q)
		return nil, 0, false
	}
	nhid, ok := e.fib.Lookup(fib.VRFID(ps.cfg.VRF), dst)
	if !ok {
		e.portDrop(ps, DropNoRoute)
		return nil, 0, false
	}
	tuple, err := fiveTuple()
	if err != nil {
		e.portDrop(ps, DropMalformed)
		return nil, 0, false
	}
	top, leaf, h := e.resolve(nhid, tuple)
	if leaf == nil {
		e.portDrop(ps, DropBadNextHop)
		return nil, 0, false
	}
	if !e.allowFromPort(ps, top, leaf, tuple, ip) {
		e.portDrop(ps, DropPolicy)
		return nil, 0, false
	}
	return leaf, h, true
}

// isDHCPClient reports a UDP datagram to the DHCP server port.
func isDHCPClient(ip packet.IPv4) bool {
	p := ip.Payload()
	return len(p) >= 4 && p[2] == 0 && p[3] == 67
}

// isNDP reports router/neighbor solicitations and advertisements.
func isNDP(ip packet.IPv6) bool {
	p := ip.Payload()
	return len(p) > 0 && p[0] >= 133 && p[0] <= 137
}

// toGateway answers a ping of the gateway address; anything else sent to
// the vRouter itself is dropped.
func (e *Engine) toGateway(ps *portState, f *frame.Frame, eth packet.Ethernet, ip []byte, q *txq) {
	if f.GSO != frame.GSONone || packet.EchoReply(ip) != nil {
		e.portDrop(ps, DropDiscard)
		return
	}
	eth.SetDst(ps.cfg.MAC)
	eth.SetSrc(e.opt.GatewayMAC)
	f.Offload = frame.Offload{}
	q.toPort(ps, f)
}

// resolve returns the next hop a flow takes through nhid: the top-level
// one (whose Network describes the destination) and the leaf (a composite's
// member chosen by the flow's hash), plus the hash.
func (e *Engine) resolve(nhid nexthop.ID, t packet.FiveTuple) (top, leaf *nexthop.NextHop, h uint64) {
	top = e.nhs.Get(nhid)
	if top == nil {
		return nil, nil, 0
	}
	h = t.Hash()
	leaf = top
	if top.Kind == nexthop.Composite {
		leaf = e.nhs.Get(top.Select(h))
	}
	return top, leaf, h
}

func network(top, leaf *nexthop.NextHop) uint32 {
	if top.Network != 0 {
		return top.Network
	}
	return leaf.Network
}

// allowFromPort applies policy to a packet an endpoint sends.
func (e *Engine) allowFromPort(ps *portState, top, leaf *nexthop.NextHop, t packet.FiveTuple, ip []byte) bool {
	dstNet := network(top, leaf)
	if dstNet == ps.cfg.Network {
		return true
	}
	return e.decide(ps.cfg.VRF, t, ps.cfg.Network, dstNet, ip)
}

// decide is the policy decision for an IP packet ip of flow t between two
// networks, under the VRF of the local port it comes from or goes to. An
// ICMP error is decided by the flow it quotes (flow.Table.DecideICMPError),
// so that a destination unreachable, fragmentation needed or time exceeded
// about an allowed flow reaches its sender whatever the rules say of ICMP.
func (e *Engine) decide(vrf uint32, t packet.FiveTuple, srcNet, dstNet uint32, ip []byte) bool {
	k := flow.Key{VRF: vrf, Tuple: t}
	if q, ok := icmpErrorQuote(ip); ok {
		if qt, err := packet.ParseQuotedFiveTuple(q); err == nil {
			ok, _ := e.flow.DecideICMPError(k, qt, srcNet, dstNet, len(ip), e.now.Load())
			return ok
		}
	}
	ok, _ := e.flow.Decide(k, srcNet, dstNet, tcpFlags(ip), len(ip), e.now.Load())
	return ok
}

// icmpErrorQuote is the quote of an ICMP or ICMPv6 error message in ip,
// false for anything else. TCP and UDP, the bulk of what crosses networks,
// are told apart from the protocol byte alone.
func icmpErrorQuote(ip []byte) ([]byte, bool) {
	if len(ip) < packet.IPv4MinHeaderLen {
		return nil, false
	}
	switch ip[0] >> 4 {
	case 4:
		if ip[9] != packet.ProtoICMPv4 {
			return nil, false
		}
		p, err := packet.ParseIPv4(ip)
		if err != nil {
			return nil, false
		}
		return p.ICMPError()
	case 6:
		if len(ip) < packet.IPv6HeaderLen || ip[6] == packet.ProtoTCP || ip[6] == packet.ProtoUDP {
			return nil, false
		}
		p, err := packet.ParseIPv6(ip)
		if err != nil {
			return nil, false
		}
		return p.ICMPError()
	}
	return nil, false
}

// tcpFlags is the flags byte of a TCP packet (IPv4, or IPv6 without
// extension headers), 0 otherwise: the flow table ages closed flows faster.
func tcpFlags(ip []byte) uint8 {
	if len(ip) < 20 {
		return 0
	}
	var off int
	switch ip[0] >> 4 {
	case 4:
		if ip[9] != packet.ProtoTCP || ip[6]&0x1f != 0 || ip[7] != 0 {
			return 0
		}
		off = int(ip[0]&0x0f) * 4
	case 6:
		if len(ip) < 40 || ip[6] != packet.ProtoTCP {
			return 0
		}
		off = 40
	default:
		return 0
	}
	if len(ip) < off+14 {
		return 0
	}
	return ip[off+13]
}

// forward sends a routed frame (TTL already decremented) to its leaf next
// hop.
func (e *Engine) forward(ps *portState, f *frame.Frame, eth packet.Ethernet, nh *nexthop.NextHop, h uint64, df, v6 bool, q *txq, ip4 packet.IPv4, ip6 packet.IPv6) {
	switch nh.Kind {
	case nexthop.Port:
		dps := e.port(uint32(nh.Port))
		if dps == nil {
			e.portDrop(ps, DropNoPort)
			return
		}
		// Decide again as the destination's vRouter would, under its VRF,
		// so that the reply (looked up there) finds its flow.
		if dps.cfg.Network != ps.cfg.Network {
			var t packet.FiveTuple
			var err error
			var ip []byte
			if v6 {
				t, err = ip6.FiveTuple()
				ip = ip6.Bytes()
			} else {
				t, err = ip4.FiveTuple()
				ip = ip4.Bytes()
			}
			if err != nil {
				e.portDrop(ps, DropMalformed)
				return
			}
			if !e.decide(dps.cfg.VRF, t, ps.cfg.Network, dps.cfg.Network, ip) {
				e.portDrop(ps, DropPolicy)
				return
			}
		}
		// Port to port keeps the frame whole, GSO offload included.
		eth.SetDst(dps.cfg.MAC)
		eth.SetSrc(e.opt.GatewayMAC)
		q.toPort(dps, f)
	case nexthop.Tunnel:
		e.encap(ps, f, eth, nh, h, df, v6, q, ip4, ip6)
	case nexthop.Discard:
		e.portDrop(ps, DropDiscard)
	default:
		e.portDrop(ps, DropBadNextHop)
	}
}

// maxGSOSegments and maxUDPPayload bound one UDP GSO send.
const (
	maxGSOSegments = 64
	maxUDPPayload  = 65507 - 64
)

// innerLen is the IP packet length one tunnel datagram carries for f: a
// whole frame, or one full segment of a GSO super-frame.
func innerLen(f *frame.Frame) int {
	if f.GSO != frame.GSONone {
		return int(f.HdrLen) - packet.EthernetHeaderLen + int(f.GSOSize)
	}
	return f.Len - packet.EthernetHeaderLen
}

// tunnel header each encapsulation writes itself (the kernel writes the
// outer IP and UDP headers), and where in the frame its payload starts.
func tunnelHeader(enc packet.Encap) (prefix, from int) {
	switch enc {
	case packet.EncapMPLSoUDP:
		return packet.MPLSEntryLen, packet.EthernetHeaderLen
	case packet.EncapMPLSoGRE:
		return packet.GREHeaderLen + packet.MPLSEntryLen, packet.EthernetHeaderLen
	case packet.EncapVXLAN:
		return packet.VXLANHeaderLen, 0
	}
	return 0, 0
}

// putTunnelHeader writes enc's header for next hop nh into b (prefix bytes).
func putTunnelHeader(b []byte, enc packet.Encap, nh *nexthop.NextHop) {
	switch enc {
	case packet.EncapMPLSoUDP:
		packet.PutMPLS(b, packet.NewMPLSEntry(nh.Label, 0, true, packet.DefaultTTL))
	case packet.EncapMPLSoGRE:
		packet.PutGRE(b, packet.EtherTypeMPLS)
		packet.PutMPLS(b[packet.GREHeaderLen:], packet.NewMPLSEntry(nh.Label, 0, true, packet.DefaultTTL))
	case packet.EncapVXLAN:
		packet.PutVXLAN(b, nh.VNI)
	}
}

// encap sends f through the tunnel of nh.
func (e *Engine) encap(ps *portState, f *frame.Frame, eth packet.Ethernet, nh *nexthop.NextHop, h uint64, df, v6 bool, q *txq, ip4 packet.IPv4, ip6 packet.IPv6) {
	slot := int(nh.Encap)
	if slot >= encapSlots || e.tun[slot] == nil {
		e.portDrop(ps, DropNoTunnel)
		return
	}
	conn := e.tun[slot]
	ovh := e.overhead[slot]
	if umtu := e.UnderlayMTU(); innerLen(f)+ovh > umtu && df {
		// The endpoint learns the path MTU and sends smaller packets (TCP
		// lowers its MSS); without DF the kernel fragments the outer packet.
		mtu := umtu - ovh
		if v6 {
			e.icmpV6(ps, ip6, true, mtu, q)
		} else {
			e.icmpV4(ps, ip4, true, mtu, q)
		}
		e.portDrop(ps, DropTooBig)
		return
	}
	if nh.Encap == packet.EncapVXLAN {
		// EVPN type 5: the inner frame goes to the remote's router MAC.
		rmac := nh.RouterMAC
		if rmac.IsZero() {
			rmac = e.opt.RouterMAC
		}
		eth.SetDst(rmac)
		eth.SetSrc(e.opt.RouterMAC)
	}
	prefix, from := tunnelHeader(nh.Encap)
	if f.GSO != frame.GSONone {
		e.encapGSO(ps, f, nh, h, slot, conn, prefix, from, q)
		return
	}
	if f.NeedsCsum {
		if err := gso.Checksum(f); err != nil {
			e.portDrop(ps, DropMalformed)
			return
		}
	}
	f.Pull(from)
	hdr, ok := f.Push(prefix)
	if !ok {
		e.portDrop(ps, DropMalformed)
		return
	}
	putTunnelHeader(hdr, nh.Encap, nh)
	q.toTunnel(slot, tunnel.Msg{F: f, Addr: nh.Underlay, Hash: h})
}

// encapGSO cuts a super-frame into tunnel datagrams: one GSO train when
// the socket takes it, else one frame per segment.
func (e *Engine) encapGSO(ps *portState, f *frame.Frame, nh *nexthop.NextHop, h uint64, slot int, conn tunnel.Conn, prefix, from int, q *txq) {
	if conn.GSO() {
		// One UDP GSO send carries at most 64 segments (UDP_MAX_SEGMENTS on
		// older kernels) and 64 KiB of UDP payload: a super-frame may need
		// two trains.
		l := gso.Layout{Prefix: prefix, From: from, Max: maxGSOSegments}
		for first := 0; ; {
			out := q.bigScratch()
			b := out.Buf[frame.Headroom : frame.Headroom+maxUDPPayload]
			segs, err := gso.Segment(b, f, l, first)
			if err != nil || segs.N == 0 {
				e.portDrop(ps, DropMalformed)
				return
			}
			for i := range segs.N {
				putTunnelHeader(b[i*segs.Stride:i*segs.Stride+prefix], nh.Encap, nh)
			}
			out.SetData(frame.Headroom, segs.Len)
			seg := segs.Stride
			if segs.N == 1 {
				seg = 0
			}
			q.toTunnel(slot, tunnel.Msg{F: out, SegSize: seg, Addr: nh.Underlay, Hash: h})
			if first = segs.Next(); first >= segs.Total {
				return
			}
		}
	}
	segs := (f.Len - int(f.HdrLen) + int(f.GSOSize) - 1) / max(1, int(f.GSOSize))
	if segs > q.small.limit-q.small.used {
		q.flush() // the segments must come from one pool generation
	}
	outs := q.segs[:0]
	for range segs {
		if o := q.small.get(); o != nil {
			outs = append(outs, o)
		}
	}
	q.segs = outs
	n, err := gso.SegmentFrames(f, outs, from)
	if err != nil {
		e.portDrop(ps, DropMalformed)
		return
	}
	for _, o := range outs[:n] {
		hdr, ok := o.Push(prefix)
		if !ok {
			e.portDrop(ps, DropMalformed)
			continue
		}
		putTunnelHeader(hdr, nh.Encap, nh)
		q.toTunnel(slot, tunnel.Msg{F: o, Addr: nh.Underlay, Hash: h})
	}
}

// icmpV4 sends the endpoint an ICMP error about ip: time exceeded, or
// fragmentation needed with mtu when tooBig.
func (e *Engine) icmpV4(ps *portState, ip packet.IPv4, tooBig bool, mtu int, q *txq) {
	if !packet.ICMPv4ErrorAllowed(ip) {
		return
	}
	src := ps.gw4
	if !src.IsValid() {
		src = ip.Dst()
	}
	out := q.scratch()
	b := out.Buf[frame.Headroom:]
	if _, err := packet.PutEthernet(b, ps.cfg.MAC, e.opt.GatewayMAC, packet.EtherTypeIPv4); err != nil {
		return
	}
	var reply packet.IPv4
	var err error
	if tooBig {
		reply, err = packet.BuildICMPv4FragNeeded(b[packet.EthernetHeaderLen:], src, ip, uint16(mtu))
	} else {
		reply, err = packet.BuildICMPv4TimeExceeded(b[packet.EthernetHeaderLen:], src, ip)
	}
	if err != nil {
		return
	}
	out.SetData(frame.Headroom, packet.EthernetHeaderLen+len(reply.Bytes()))
	q.toPort(ps, out)
}

// icmpV6 is icmpV4 for IPv6: packet too big with mtu, or time exceeded.
func (e *Engine) icmpV6(ps *portState, ip packet.IPv6, tooBig bool, mtu int, q *txq) {
	if tooBig && !packet.ICMPv6ErrorAllowed(ip) || !tooBig && !packet.ICMPv6TimeExceededAllowed(ip) {
		return
	}
	src := ps.gw6
	if !src.IsValid() {
		src = ip.Dst()
	}
	out := q.scratch()
	b := out.Buf[frame.Headroom:]
	if _, err := packet.PutEthernet(b, ps.cfg.MAC, e.opt.GatewayMAC, packet.EtherTypeIPv6); err != nil {
		return
	}
	var reply packet.IPv6
	var err error
	if tooBig {
		reply, err = packet.BuildICMPv6PacketTooBig(b[packet.EthernetHeaderLen:], src, ip, uint32(mtu))
	} else {
		reply, err = packet.BuildICMPv6TimeExceeded(b[packet.EthernetHeaderLen:], src, ip)
	}
	if err != nil {
		return
	}
	out.SetData(frame.Headroom, packet.EthernetHeaderLen+len(reply.Bytes()))
	q.toPort(ps, out)
}
