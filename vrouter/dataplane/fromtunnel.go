package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/gso"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// coalesceFrames is how many output frames a tunnel loop merges segments
// into before writing them to the ports.
const coalesceFrames = 64

// tunnelLoop reads one underlay socket until ctx ends or it is closed.
func (e *Engine) tunnelLoop(ctx context.Context, enc packet.Encap, c tunnel.Conn) {
	msgs := make([]tunnel.Msg, max(1, c.BatchSize()))
	for i := range msgs {
		msgs[i].F = frame.New()
	}
	rx := e.newTunnelRx(enc)
	for ctx.Err() == nil {
		for i := range msgs {
			msgs[i].F.Reset()
			msgs[i].SegSize = 0
		}
		n, err := c.Read(msgs)
		if err != nil {
			if errors.Is(err, tunnel.ErrClosed) || ctx.Err() != nil || e.stopped.Load() {
				return
			}
			e.log.Warn("tunnel read failed", "encap", enc, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		rx.batch(msgs[:n])
	}
}

// batch delivers one batch read from the tunnel and writes out what it
// produced: the body of tunnelLoop, apart so that benchmarks run it alone.
func (rx *tunnelRx) batch(msgs []tunnel.Msg) {
	rx.last = rxRoute{} // tables may have changed since the last batch
	for _, m := range msgs {
		data := m.F.Data()
		seg := m.SegSize
		if seg <= 0 || seg >= len(data) {
			rx.datagram(data, m.Addr, false)
			continue
		}
		// A UDP GRO train: every datagram in it had its UDP checksum
		// verified (see gso.Coalescer), so the Coalescer need not check
		// the inner TCP checksums again.
		for off := 0; off < len(data); off += seg {
			rx.datagram(data[off:min(off+seg, len(data))], m.Addr, true)
		}
	}
	rx.flush()
}

func (e *Engine) newTunnelRx(enc packet.Encap) *tunnelRx {
	c := gso.NewCoalescer(coalesceFrames)
	// The merged segments' payloads stay in the receive buffers, which the
	// loop reads into again only after the flush that writes them out.
	c.Gather = true
	return &tunnelRx{e: e, enc: enc, slot: int(enc), coal: c}
}

// tunnelRx is one tunnel loop's state.
type tunnelRx struct {
	e    *Engine
	enc  packet.Encap
	slot int
	coal *gso.Coalescer
	last rxRoute
}

// rxRoute is where the previous datagram of the batch went and the
// network it came from. The datagrams of a GRO train, and most of a
// batch, are one flow's: the next one with the same outer source, label
// (or VNI) and inner addresses takes the same way without the lookups
// (the outer source's check included). It lives for
// one batch, as a receive loop's view of the tables may lag one batch
// anyway; a way that a composite next hop chose by the flow's hash is not
// kept, as it depends on the ports too.
type rxRoute struct {
	ok       bool
	nh       nexthop.ID // from the label; 0 for a VNI
	vrf      uint32     // from the VNI; 0 for a label
	outer    netip.Addr // the sending vRouter
	src, dst netip.Addr
	dps      *portState
	srcNet   uint32
}

// datagram delivers one underlay datagram's inner packet, from outer
// source outer, to its port; covered says that a verified checksum
// covered all of it.
func (rx *tunnelRx) datagram(b []byte, outer netip.Addr, covered bool) {
	e := rx.e
	e.tunRx[rx.slot].Add(1)
	inner, vrf, nhid, ok := rx.decap(b)
	if !ok {
		return
	}
	src, dst, ip, ok := innerIP(inner)
	if !ok {
		e.drop(DropTunnelMalformed)
		return
	}
	r := &rx.last
	if !r.ok || r.nh != nhid || r.vrf != vrf || r.outer != outer || r.src != src || r.dst != dst {
		if !rx.route(nhid, vrf, outer, src, dst, ip) {
			return
		}
	}
	dps := r.dps
	if r.srcNet != dps.cfg.Network && !rx.decide(dps, r.srcNet, ip) {
		e.portDrop(dps, DropPolicy)
		return
	}
	add := rx.coal.Add
	if covered {
		add = rx.coal.AddCovered
	}
	if !add(dps.cfg.ID, dps.cfg.MAC, e.opt.GatewayMAC, ip) {
		rx.flush()
		if !add(dps.cfg.ID, dps.cfg.MAC, e.opt.GatewayMAC, ip) {
			e.portDrop(dps, DropTxError)
		}
	}
}

// decap checks the tunnel header of b and returns the inner IP packet
// with the VRF (VNI) or next hop (label) it is for; false drops (counted).
func (rx *tunnelRx) decap(b []byte) (inner []byte, vrf uint32, nhid nexthop.ID, ok bool) {
	e := rx.e
	switch rx.enc {
	case packet.EncapMPLSoUDP:
		inner, nhid, ok = rx.label(b)
		return inner, 0, nhid, ok
	case packet.EncapMPLSoGRE:
		g, err := packet.ParseGRE(b)
		if err != nil || g.Protocol() != packet.EtherTypeMPLS {
			e.drop(DropTunnelMalformed)
			return nil, 0, 0, false
		}
		inner, nhid, ok = rx.label(g.Payload())
		return inner, 0, nhid, ok
	case packet.EncapVXLAN:
		v, err := packet.ParseVXLAN(b)
		if err != nil {
			e.drop(DropTunnelMalformed)
			return nil, 0, 0, false
		}
		if vrf, ok = (*e.vnis.Load())[v.VNI()]; !ok {
			e.drop(DropUnknownVNI)
			return nil, 0, 0, false
		}
		eth, err := packet.ParseEthernet(v.Payload())
		if err != nil || eth.HasVLAN() {
			e.drop(DropTunnelMalformed)
			return nil, 0, 0, false
		}
		if et := eth.EtherType(); et != packet.EtherTypeIPv4 && et != packet.EtherTypeIPv6 {
			e.drop(DropL2)
			return nil, 0, 0, false
		}
		return eth.Payload(), vrf, 0, true
	}
	return nil, 0, 0, false
}

// route checks the outer source, finds the local port an inner packet
// goes to and the network of its source, into rx.last; false drops
// (counted).
func (rx *tunnelRx) route(nhid nexthop.ID, vrf uint32, outer, src, dst netip.Addr, ip []byte) bool {
	e := rx.e
	rx.last.ok = false
	var nh *nexthop.NextHop
	lookupVRF := vrf
	advertised := vrf // the VRF the label or VNI was advertised for
	if nhid != 0 {
		nh = e.nhs.Get(nhid)
		if nh == nil {
			e.drop(DropUnknownLabel)
			return false
		}
		switch nh.Kind {
		case nexthop.VRFLookup:
			lookupVRF, advertised, nh = nh.VRF, nh.VRF, nil
		case nexthop.Port:
			// A port's label was advertised with the routes of the
			// port's VRF.
			ps := e.port(uint32(nh.Port))
			if ps == nil {
				e.drop(DropNoPort)
				return false
			}
			advertised = ps.cfg.VRF
		}
	}
	// The sender must be one the advertised VRF's routes lead to, whatever
	// the label or VNI says (0: a label of another kind of next hop,
	// dropped below).
	if advertised != 0 && !rx.acceptSource(advertised, outer) {
		return false
	}
	keep := true
	if nh == nil {
		// Per-VRF label or VNI: route the inner destination in the VRF.
		id, ok := e.fib.Lookup(fib.VRFID(lookupVRF), dst)
		if !ok {
			e.drop(DropNoRoute)
			return false
		}
		if nh = e.nhs.Get(id); nh != nil && nh.Kind == nexthop.Composite {
			t, err := packet.ParseFiveTuple(ip)
			if err != nil {
				e.drop(DropTunnelMalformed)
				return false
			}
			nh, keep = e.nhs.Get(nh.Select(t.Hash())), false
		}
	}
	if nh == nil || nh.Kind != nexthop.Port {
		// The vRouter delivers to its own endpoints; it is no transit.
		e.drop(DropBadNextHop)
		return false
	}
	dps := e.port(uint32(nh.Port))
	if dps == nil {
		e.drop(DropNoPort)
		return false
	}
	// Not kept (ok false) when a composite chose: then it is for this
	// datagram only.
	rx.last = rxRoute{ok: keep, nh: nhid, vrf: vrf, outer: outer, src: src, dst: dst, dps: dps, srcNet: rx.sourceNetwork(dps, src)}
	return true
}

// innerIP parses the inner IPv4 or IPv6 packet and returns it trimmed to
// its length (link padding dropped).
func innerIP(b []byte) (src, dst netip.Addr, ip []byte, ok bool) {
	if len(b) == 0 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		p, err := packet.ParseIPv4(b)
		if err != nil {
			return
		}
		return p.Src(), p.Dst(), p.Bytes(), true
	case 6:
		p, err := packet.ParseIPv6(b)
		if err != nil {
			return
		}
		return p.Src(), p.Dst(), p.Bytes(), true
	}
	return
}

// label reads the one MPLS label the vRouters push and its next hop.
func (rx *tunnelRx) label(b []byte) (inner []byte, nh nexthop.ID, ok bool) {
	if len(b) < packet.MPLSEntryLen+1 {
		rx.e.drop(DropTunnelMalformed)
		return nil, 0, false
	}
	m, err := packet.ParseMPLS(b)
	if err != nil || m.Depth() != 1 {
		rx.e.drop(DropTunnelMalformed)
		return nil, 0, false
	}
	id := rx.e.Label(m.Top().Label())
	if id == 0 {
		rx.e.drop(DropUnknownLabel)
		return nil, 0, false
	}
	return m.Payload(), id, true
}

// sourceNetwork is the network of a packet's source as port dps's VRF
// sees it: the one its route there names (0 when none).
func (rx *tunnelRx) sourceNetwork(dps *portState, src netip.Addr) uint32 {
	e := rx.e
	id, ok := e.fib.Lookup(fib.VRFID(dps.cfg.VRF), src)
	if !ok {
		return 0
	}
	nh := e.nhs.Get(id)
	if nh == nil {
		return 0
	}
	if nh.Network == 0 && nh.Kind == nexthop.Composite && len(nh.Members) > 0 {
		if m := e.nhs.Get(nh.Members[0]); m != nil {
			return m.Network
		}
	}
	return nh.Network
}

// decide applies policy to a packet from network srcNet arriving for port
// dps, of another network.
func (rx *tunnelRx) decide(dps *portState, srcNet uint32, ip []byte) bool {
	e := rx.e
	t, err := packet.ParseFiveTuple(ip)
	if err != nil {
		return false
	}
	return e.decide(dps.cfg.VRF, t, srcNet, dps.cfg.Network, ip)
}

// flush writes the merged frames out, each port's run in one call.
func (rx *tunnelRx) flush() {
	frames := rx.coal.Frames()
	for i := 0; i < len(frames); {
		j := i + 1
		for j < len(frames) && frames[j].Port == frames[i].Port {
			j++
		}
		if ps := rx.e.port(frames[i].Port); ps != nil {
			n, _ := ps.io.Write(frames[i:j])
			var bytes uint64
			for _, f := range frames[i : i+max(0, n)] {
				bytes += uint64(f.FullLen())
			}
			ps.c.txPackets.Add(uint64(max(0, n)))
			ps.c.txBytes.Add(bytes)
			if lost := j - i - max(0, n); lost > 0 {
				ps.c.drops.Add(uint64(lost))
				rx.e.drops[DropTxError].Add(uint64(lost))
			}
		}
		i = j
	}
	rx.coal.Reset()
}
