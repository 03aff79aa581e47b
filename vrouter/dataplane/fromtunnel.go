package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/flow"
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
	rx := &tunnelRx{e: e, enc: enc, slot: int(enc), coal: gso.NewCoalescer(coalesceFrames)}
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
		for _, m := range msgs[:n] {
			data := m.F.Data()
			seg := m.SegSize
			if seg <= 0 || seg > len(data) {
				seg = len(data)
			}
			for off := 0; off < len(data); off += seg {
				rx.datagram(data[off:min(off+seg, len(data))])
			}
		}
		rx.flush()
	}
}

// tunnelRx is one tunnel loop's state.
type tunnelRx struct {
	e    *Engine
	enc  packet.Encap
	slot int
	coal *gso.Coalescer
}

// datagram delivers one underlay datagram's inner packet to its port.
func (rx *tunnelRx) datagram(b []byte) {
	e := rx.e
	e.tunRx[rx.slot].Add(1)
	var inner []byte
	var vrf uint32
	var nhid nexthop.ID
	switch rx.enc {
	case packet.EncapMPLSoUDP:
		var ok bool
		if inner, nhid, ok = rx.label(b); !ok {
			return
		}
	case packet.EncapMPLSoGRE:
		g, err := packet.ParseGRE(b)
		if err != nil || g.Protocol() != packet.EtherTypeMPLS {
			e.drop(DropTunnelMalformed)
			return
		}
		var ok bool
		if inner, nhid, ok = rx.label(g.Payload()); !ok {
			return
		}
	case packet.EncapVXLAN:
		v, err := packet.ParseVXLAN(b)
		if err != nil {
			e.drop(DropTunnelMalformed)
			return
		}
		var ok bool
		if vrf, ok = (*e.vnis.Load())[v.VNI()]; !ok {
			e.drop(DropUnknownVNI)
			return
		}
		eth, err := packet.ParseEthernet(v.Payload())
		if err != nil || eth.HasVLAN() {
			e.drop(DropTunnelMalformed)
			return
		}
		if et := eth.EtherType(); et != packet.EtherTypeIPv4 && et != packet.EtherTypeIPv6 {
			e.drop(DropL2)
			return
		}
		inner = eth.Payload()
	default:
		return
	}

	src, dst, ip, ok := innerIP(inner)
	if !ok {
		e.drop(DropTunnelMalformed)
		return
	}
	var nh *nexthop.NextHop
	if nhid != 0 {
		nh = e.nhs.Get(nhid)
		if nh == nil {
			e.drop(DropUnknownLabel)
			return
		}
		if nh.Kind == nexthop.VRFLookup {
			vrf, nh = nh.VRF, nil
		}
	}
	if nh == nil {
		// Per-VRF label or VNI: route the inner destination in the VRF.
		id, ok := e.fib.Lookup(fib.VRFID(vrf), dst)
		if !ok {
			e.drop(DropNoRoute)
			return
		}
		if nh = e.nhs.Get(id); nh != nil && nh.Kind == nexthop.Composite {
			t, err := packet.ParseFiveTuple(ip)
			if err != nil {
				e.drop(DropTunnelMalformed)
				return
			}
			nh = e.nhs.Get(nh.Select(t.Hash()))
		}
	}
	if nh == nil || nh.Kind != nexthop.Port {
		// The vRouter delivers to its own endpoints; it is no transit.
		e.drop(DropBadNextHop)
		return
	}
	dps := e.port(uint32(nh.Port))
	if dps == nil {
		e.drop(DropNoPort)
		return
	}
	if !rx.allow(dps, src, ip) {
		e.portDrop(dps, DropPolicy)
		return
	}
	if !rx.coal.Add(dps.cfg.ID, dps.cfg.MAC, e.opt.GatewayMAC, ip) {
		rx.flush()
		if !rx.coal.Add(dps.cfg.ID, dps.cfg.MAC, e.opt.GatewayMAC, ip) {
			e.portDrop(dps, DropTxError)
		}
	}
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

// allow applies policy to a packet arriving for port dps: the source's
// network is the one its route in the port's VRF names.
func (rx *tunnelRx) allow(dps *portState, src netip.Addr, ip []byte) bool {
	e := rx.e
	srcNet := uint32(0)
	if id, ok := e.fib.Lookup(fib.VRFID(dps.cfg.VRF), src); ok {
		if nh := e.nhs.Get(id); nh != nil {
			srcNet = nh.Network
			if srcNet == 0 && nh.Kind == nexthop.Composite && len(nh.Members) > 0 {
				if m := e.nhs.Get(nh.Members[0]); m != nil {
					srcNet = m.Network
				}
			}
		}
	}
	if srcNet == dps.cfg.Network {
		return true
	}
	t, err := packet.ParseFiveTuple(ip)
	if err != nil {
		return false
	}
	ok, _ := e.flow.Decide(flow.Key{VRF: dps.cfg.VRF, Tuple: t}, srcNet, dps.cfg.Network, tcpFlags(ip), len(ip), e.now.Load())
	return ok
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
				bytes += uint64(f.Len)
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
