package fastpath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
)

// Next hop kinds as bpf/fastpath.c names them; a next hop of kind 0 is
// one the programs punt (discard, receive, MPLSoGRE, an IPv6 underlay).
const (
	nhPort      = 1
	nhTunnel    = 2
	nhVRFLookup = 3
	nhComposite = 4
)

// syncState is what Sync last wrote, so that the next one writes only
// the difference.
type syncState struct {
	routes  map[fpLpmKey]uint32
	sources map[fpLpmKey]uint32
	nhs     map[uint32]fpNexthop
	members map[uint32]fpMembers
	labels  map[uint32]uint32
	vnis    map[uint32]uint32
	remotes map[uint32]fpRemote
	tsrcs   map[fpTunnelSource]uint8
	ports   map[uint32]fpPortInfo // by port ID
	byIf    map[uint32]fpPortInfo // by veth ifindex
	flows   map[fpFlowKey]fpFlowVal
}

// flowPoll is how often Run looks for new flows in the engine's table.
const flowPoll = 5 * time.Millisecond

// Run syncs every interval, and the flows as soon as the engine has
// created one (within flowPoll), until ctx ends.
func (d *Datapath) Run(ctx context.Context, e *dataplane.Engine, interval time.Duration) {
	t := time.NewTicker(flowPoll)
	defer t.Stop()
	var full time.Time
	var inserts uint64
	for {
		if n := e.Flows().Inserts(); n != inserts || time.Since(full) >= interval {
			inserts = n
			var err error
			if time.Since(full) >= interval {
				full = time.Now()
				err = d.Sync(e)
			} else {
				d.mu.Lock()
				err = d.syncFlows(e.Flows())
				d.mu.Unlock()
			}
			if err != nil {
				d.log.Warn("fastpath sync", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sync writes the engine's tables into the maps (only what changed since
// the last Sync), credits the flows the kernel carried to the engine's
// flow table, and removes the flows the engine no longer allows. The
// vRouter calls it after each change of its tables and periodically.
func (d *Datapath) Sync(e *dataplane.Engine) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.synced
	var errs []error
	errs = append(errs, d.syncAdoption(e), d.writeConfig(e.UnderlayMTU()))

	ports, byIf, sources := map[uint32]fpPortInfo{}, map[uint32]fpPortInfo{}, map[fpLpmKey]uint32{}
	for id, a := range d.ports {
		cfg, ok := e.Port(id)
		if !ok {
			continue
		}
		pi := fpPortInfo{Id: id, Vrf: cfg.VRF, Network: cfg.Network, VethIfindex: uint32(a.veth), TapIfindex: uint32(a.tap), Mac: cfg.MAC}
		ports[id], byIf[uint32(a.veth)] = pi, pi
		for _, p := range cfg.Addresses {
			addSource(sources, id, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
		for _, p := range cfg.AllowedSources {
			addSource(sources, id, p)
		}
	}
	routes := map[fpLpmKey]uint32{}
	for _, vrf := range e.FIB().VRFs() {
		t := e.FIB().VRF(vrf)
		if t == nil {
			continue
		}
		for p, nh := range t.All() {
			if p.Addr().Is4() {
				routes[fpLpmKey{Prefixlen: 32 + uint32(p.Bits()), Id: uint32(vrf), Addr: be32(p.Addr())}] = uint32(nh)
			}
		}
	}
	nhs, members, remotes := map[uint32]fpNexthop{}, map[uint32]fpMembers{}, map[uint32]fpRemote{}
	for nh := range e.NextHops().All() {
		v := d.nextHop(nh)
		nhs[uint32(nh.ID)] = v
		if v.Kind == nhComposite {
			var m fpMembers
			for i, id := range nh.Members {
				m.Ids[i], m.Seeds[i] = uint32(id), nexthop.Seed(id)
			}
			m.N = uint32(len(nh.Members))
			members[uint32(nh.ID)] = m
		}
		if v.Kind == nhTunnel {
			if _, ok := remotes[v.Remote]; !ok {
				r := fpRemote{}
				if oif, gw, err := routeTo(nh.Underlay); err == nil {
					r = fpRemote{Oif: uint32(oif), NhAddr: be32(gw)}
				}
				remotes[v.Remote] = r
			}
		}
	}
	tsrcs := tunnelSources(e)
	labels := map[uint32]uint32{}
	e.Labels(func(label uint32, nh nexthop.ID) { labels[label] = uint32(nh) })
	vnis := e.VNIs()

	ad := d.adopt.on
	remotes, tsrcs, nhs, members = keepStale(ad, s.remotes, remotes), keepStale(ad, s.tsrcs, tsrcs), keepStale(ad, s.nhs, nhs), keepStale(ad, s.members, members)
	ports, byIf, sources = keepStale(ad, s.ports, ports), keepStale(ad, s.byIf, byIf), keepStale(ad, s.sources, sources)
	routes, labels, vnis = keepStale(ad, s.routes, routes), keepStale(ad, s.labels, labels), keepStale(ad, s.vnis, vnis)
	// Order: every put first, what is looked up last first, so that a
	// reader never finds a reference the maps do not hold yet; then the
	// deletes, the other way round.
	steps := []step{
		stepOf(d.objs.Remotes, s.remotes, remotes),
		stepOf(d.objs.TunnelSources, s.tsrcs, tsrcs),
		stepOf(d.objs.Nexthops, s.nhs, nhs),
		stepOf(d.objs.Composites, s.members, members),
		stepOf(d.objs.PortsById, s.ports, ports),
		stepOf(d.objs.PortsByIfindex, s.byIf, byIf),
		stepOf(d.objs.Sources, s.sources, sources),
		stepOf(d.objs.Routes, s.routes, routes),
		stepOf(d.objs.Labels, s.labels, labels),
		stepOf(d.objs.Vnis, s.vnis, vnis),
	}
	for _, st := range steps {
		errs = append(errs, st.put())
	}
	for i := len(steps) - 1; i >= 0; i-- {
		errs = append(errs, steps[i].del())
	}
	s.remotes, s.tsrcs, s.nhs, s.members, s.ports, s.byIf, s.sources, s.routes, s.labels, s.vnis = remotes, tsrcs, nhs, members, ports, byIf, sources, routes, labels, vnis
	errs = append(errs, d.syncFlows(e.Flows()))
	return errors.Join(errs...)
}

// tunnelSources are the outer sources each VRF accepts tunnel packets
// from, as the engine keeps them, for the encapsulations the programs
// decapsulate.
func tunnelSources(e *dataplane.Engine) map[fpTunnelSource]uint8 {
	m := map[fpTunnelSource]uint8{}
	for _, vrf := range e.FIB().VRFs() {
		for _, src := range e.TunnelSources(uint32(vrf)) {
			if src.Addr.Is4() && (src.Encap == packet.EncapMPLSoUDP || src.Encap == packet.EncapVXLAN) {
				m[fpTunnelSource{Vrf: uint32(vrf), Addr: be32(src.Addr), Encap: uint8(src.Encap)}] = 1
			}
		}
	}
	return m
}

func addSource(m map[fpLpmKey]uint32, id uint32, p netip.Prefix) {
	if p.Addr().Is4() {
		m[fpLpmKey{Prefixlen: 32 + uint32(p.Bits()), Id: id, Addr: be32(p.Masked().Addr())}] = 1
	}
}

// nextHop is nh as the programs read it.
func (d *Datapath) nextHop(nh *nexthop.NextHop) fpNexthop {
	v := fpNexthop{Network: nh.Network}
	switch nh.Kind {
	case nexthop.Port:
		v.Kind, v.Port = nhPort, uint32(nh.Port)
	case nexthop.VRFLookup:
		v.Kind, v.Label = nhVRFLookup, nh.VRF
	case nexthop.Composite:
		if len(nh.Members) <= nexthop.MaxMembers {
			v.Kind = nhComposite
		}
	case nexthop.Tunnel:
		if !nh.Underlay.Is4() {
			break
		}
		switch nh.Encap {
		case packet.EncapMPLSoUDP:
			v.Kind, v.Encap, v.Label = nhTunnel, uint8(nh.Encap), nh.Label
		case packet.EncapVXLAN:
			v.Kind, v.Encap, v.Label = nhTunnel, uint8(nh.Encap), nh.VNI
			v.Rmac = nh.RouterMAC
			if nh.RouterMAC.IsZero() {
				v.Rmac = d.cfg.RouterMAC
			}
		default:
			// MPLSoGRE stays in the engine (see DESIGN.md).
			return v
		}
		v.Remote = be32(nh.Underlay)
	}
	return v
}

// step makes one map hold what it should: put writes what is new or
// changed, del deletes what is no more.
type step struct{ put, del func() error }

func stepOf[K, V comparable](m *ebpf.Map, had, want map[K]V) step {
	return step{
		put: func() error {
			var errs []error
			for k, v := range want {
				if old, ok := had[k]; ok && old == v {
					continue
				}
				if err := m.Put(k, v); err != nil {
					errs = append(errs, fmt.Errorf("fastpath: map %s: put: %w", m.String(), err))
				}
			}
			return errors.Join(errs...)
		},
		del: func() error {
			var errs []error
			for k := range had {
				if _, ok := want[k]; !ok {
					if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
						errs = append(errs, fmt.Errorf("fastpath: map %s: delete: %w", m.String(), err))
					}
				}
			}
			return errors.Join(errs...)
		},
	}
}

// apply makes map m hold want, given that it holds had.
func apply[K, V comparable](m *ebpf.Map, had, want map[K]V) error {
	st := stepOf(m, had, want)
	return errors.Join(st.put(), st.del())
}

// syncFlows puts the engine's current, allowed TCP, UDP and ICMP echo
// flows over IPv4 into the flow map (a denied flow never gets there), credits what
// the kernel carried of each to the engine's entry, and removes the
// others.
func (d *Datapath) syncFlows(ft *flow.Table) error {
	s := &d.synced
	want := map[fpFlowKey]fpFlowVal{}
	ft.All(func(k flow.Key, en *flow.Entry) bool {
		t := k.Tuple
		if !en.Allowed() || !ft.Current(en) || en.Closing() || !t.Src.Is4() || (t.Proto != packet.ProtoTCP && t.Proto != packet.ProtoUDP && t.Proto != packet.ProtoICMPv4) {
			return true
		}
		src, dst := en.Networks()
		want[flowKey(k)] = fpFlowVal{SrcNet: src, DstNet: dst}
		return true
	})
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	mono, now := ts.Nano(), time.Now().UnixNano()
	var errs []error
	next := make(map[fpFlowKey]fpFlowVal, len(want))
	for k, had := range s.flows {
		var cur fpFlowVal
		if err := d.objs.Flows.Lookup(k, &cur); err == nil && cur.Packets > had.Packets {
			ft.Credit(flowKeyOf(k), cur.Packets-had.Packets, cur.Bytes-had.Bytes, now-(mono-int64(cur.LastNs)))
			had = cur
		}
		w, ok := want[k]
		if !ok && d.adopt.on {
			next[k] = had // the engine has not decided it yet
			continue
		}
		if !ok || w.SrcNet != had.SrcNet || w.DstNet != had.DstNet {
			if err := d.objs.Flows.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("fastpath: flows: delete: %w", err))
			}
			continue
		}
		next[k] = had
	}
	for k, v := range want {
		if _, ok := next[k]; ok {
			continue
		}
		if err := d.objs.Flows.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("fastpath: flows: put: %w", err))
			continue
		}
		next[k] = v
	}
	s.flows = next
	return errors.Join(errs...)
}

func flowKey(k flow.Key) fpFlowKey {
	t := k.Tuple
	return fpFlowKey{Vrf: k.VRF, Src: be32(t.Src), Dst: be32(t.Dst), Sport: be16(t.SrcPort), Dport: be16(t.DstPort), Proto: t.Proto}
}

func flowKeyOf(k fpFlowKey) flow.Key {
	return flow.Key{VRF: k.Vrf, Tuple: packet.FiveTuple{Src: addr(k.Src), Dst: addr(k.Dst), SrcPort: be16(k.Sport), DstPort: be16(k.Dport), Proto: k.Proto}}
}

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// KernelPackets are, by flow, the packets the kernel carried of each flow
// it holds (since the flow entered the maps), which the engine's entry
// counts too: what tells an operator which path a flow took.
func (d *Datapath) KernelPackets() map[flow.Key]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[flow.Key]uint64, len(d.synced.flows))
	for k, v := range d.synced.flows {
		if v.Packets > 0 {
			out[flowKeyOf(k)] = v.Packets
		}
	}
	return out
}
