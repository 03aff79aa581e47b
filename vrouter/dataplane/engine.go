// Package dataplane is the vRouter's forwarding engine: it moves frames
// between workload ports and the underlay tunnels through per-VRF routing,
// next hops, incoming label and VNI tables, policy and the flow cache.
//
// One goroutine reads each port and each tunnel socket in batches and
// forwards what it read to wherever it goes, writing each destination's
// share of the batch at once. The tables it consults are immutable
// snapshots behind atomic pointers (fib, nexthop, and the small tables
// here), so the loops never take a lock; the control API is the only
// writer (package control), through the methods of Engine.
//
// Routing is L3 in the VRF: the vRouter is every endpoint's gateway (it
// answers ARP and ND with one virtual gateway MAC), so a frame from a port
// is an IP packet to route, and a tunnel delivers IP packets (MPLSoUDP,
// MPLSoGRE) or Ethernet frames addressed to the router MAC (VXLAN, EVPN
// type 5).
//
// # TCP in 64 KiB units
//
// A TAP hands over TCP super-frames (GSO); the engine cuts each into one
// UDP GSO train (package gso) that the kernel sends as separate datagrams,
// and the far end's receive loop gets them back as one UDP GRO train and
// merges them into a super-frame for its TAP (gso.Coalescer). Four
// decisions keep that path cheap:
//
//   - One super-frame, one train. A UDP GSO send carries at most 64 KiB,
//     which the kernel's default 64 KiB super-frame overflows once tunnel
//     headers are added: the remainder left as a second send of one
//     segment, which cost as much as the train in every layer down to the
//     remote endpoint. TrainSegments is the segment count that fits; the
//     server caps each TAP's super-frames at it (port.TAPConfig.GSOMaxSegs).
//   - No second checksum check. Every datagram of a UDP GRO train had its
//     UDP checksum verified by the kernel, or never left memory (see
//     gso.Coalescer), so its inner TCP checksum is not verified again
//     (Coalescer.AddCovered). Lone datagrams, which may have carried a zero
//     UDP checksum, and MPLSoGRE are still verified.
//   - One lookup per train. The datagrams of a train, and most of a batch,
//     are one flow's: a receive loop reuses the previous datagram's port
//     and source network when label (or VNI) and inner addresses match,
//     within one batch (rxRoute).
//   - No copy of the merged payloads. The super-frame keeps the first
//     segment and points at the others' payloads in the receive buffers
//     (Coalescer.Gather, frame.Frame.Frags); the TAP write gathers them.
//     The buffers are read into again only after the batch is flushed.
//
// Nothing on these paths allocates in the steady state, which
// TestFastPathAllocs checks for every case of BenchmarkForward (the
// forwarding loops over in-memory ports and tunnels, per packet).
//
// # Tunnel sources
//
// A tunnel packet is taken only from a remote endpoint that the routes of
// the VRF its label or VNI was advertised for lead to, over its
// encapsulation (package sources; routes.go). Routes and next hops are
// therefore written through the engine (SetRoute, SetNextHop, ...), never
// into FIB and NextHops directly. The check rides on a receive loop's
// route cache: once per flow and batch.
//
// # Between networks
//
// Policy between two networks is the flow table's (package flow), decided
// on ingress from a port under the port's VRF and on delivery under the
// destination's. ICMP errors (destination unreachable, fragmentation
// needed, packet too big, time exceeded, parameter problem) are decided by
// the flow they quote (flow.Table.DecideICMPError, with the tuple of the
// cut-short quote from packet.ParseQuotedFiveTuple), so that path MTU
// discovery and traceroute work across an allowed flow without a rule for
// ICMP.
//
// # Router advertisements
//
// The services answer router solicitations; the engine also sends an
// unsolicited advertisement on each port with an IPv6 address when it is
// attached (or an update changes what it advertises) and every
// Options.RouterAdvertInterval, from a timer per port outside the
// forwarding loops, so that a workload's default route does not lapse.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/internal/mtu"
	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/services"
	"github.com/weftnet/weft/vrouter/sources"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// Options configure an Engine.
type Options struct {
	// GatewayMAC is the virtual gateway MAC every endpoint sees (ARP/ND
	// answers, the source of frames delivered to ports). RouterMAC is the
	// inner MAC of VXLAN frames this vRouter sends and expects (its EVPN
	// router MAC); zero means GatewayMAC.
	GatewayMAC packet.MAC
	RouterMAC  packet.MAC

	// Underlay is this vRouter's underlay address (the outer source) and
	// UnderlayMTU the underlay's MTU, from which path-MTU decisions and
	// the default endpoint MTU follow (SetUnderlayMTU changes it).
	Underlay    netip.Addr
	UnderlayMTU int

	// Tunnels are the underlay sockets by encapsulation; an encapsulation
	// without one cannot be sent or received.
	Tunnels map[packet.Encap]tunnel.Conn

	Flows flow.Config
	Log   *slog.Logger

	// RouterAdvertInterval is how often each port with an IPv6 address
	// gets an unsolicited router advertisement (one is sent when the port
	// is attached, and when an update changes what it says); 0 means
	// services.RouterAdvertInterval. A workload solicits only when its
	// interface comes up, and its default route lapses
	// services.RouterLifetime after the last advertisement it heard.
	RouterAdvertInterval time.Duration
}

// Engine is one vRouter's data path.
type Engine struct {
	opt  Options
	log  *slog.Logger
	fib  *fib.FIB
	nhs  *nexthop.Table
	flow *flow.Table
	srcs *sources.Table // outer sources each VRF accepts tunnel packets from

	labels []atomic.Uint32                   // MPLS label -> next hop ID
	vnis   atomic.Pointer[map[uint32]uint32] // VNI -> VRF
	vrfs   atomic.Pointer[map[uint32]uint32] // VRF -> network
	ports  atomic.Pointer[[]*portState]      // by port ID
	tun    [encapSlots]tunnel.Conn           // opt.Tunnels by encapsulation

	mu sync.Mutex // serialises writers of vnis, vrfs, ports and adverts

	adverts map[uint32]*time.Timer // by port: the next router advertisement

	drops    [numReasons]atomic.Uint64
	tunRx    [encapSlots]atomic.Uint64
	tunTx    [encapSlots]atomic.Uint64
	now      atomic.Int64 // unix nanoseconds, refreshed by a ticker
	loops    sync.WaitGroup
	stopped  atomic.Bool
	tunStop  context.CancelFunc
	overhead [encapSlots]int // bytes each encapsulation adds on this underlay

	underlayMTU atomic.Int64 // opt.UnderlayMTU, then SetUnderlayMTU's
}

// encapSlots indexes per-encapsulation arrays by packet.Encap.
const encapSlots = int(packet.EncapVXLAN) + 1

// New returns an engine with empty tables. Start runs its tunnel loops.
func New(opt Options) (*Engine, error) {
	if opt.GatewayMAC.IsZero() || opt.GatewayMAC.IsMulticast() {
		return nil, fmt.Errorf("dataplane: gateway mac %v must be unicast", opt.GatewayMAC)
	}
	if opt.RouterMAC.IsZero() {
		opt.RouterMAC = opt.GatewayMAC
	}
	if opt.UnderlayMTU == 0 {
		opt.UnderlayMTU = 1500
	}
	if opt.UnderlayMTU < mtu.Min || opt.UnderlayMTU > mtu.Max {
		return nil, fmt.Errorf("dataplane: underlay mtu %d out of range %d..%d", opt.UnderlayMTU, mtu.Min, mtu.Max)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.RouterAdvertInterval <= 0 {
		opt.RouterAdvertInterval = services.RouterAdvertInterval
	}
	e := &Engine{
		opt:    opt,
		log:    opt.Log,
		fib:    fib.New(),
		nhs:    nexthop.NewTable(),
		flow:   flow.NewTable(opt.Flows),
		srcs:   sources.New(),
		labels: make([]atomic.Uint32, packet.MaxMPLSLabel+1),

		adverts: map[uint32]*time.Timer{},
	}
	empty := map[uint32]uint32{}
	e.vnis.Store(&empty)
	vrfs := map[uint32]uint32{}
	e.vrfs.Store(&vrfs)
	var ports []*portState
	e.ports.Store(&ports)
	e.flow.SetPolicy(mustPolicy(nil))
	v6 := opt.Underlay.Is6() && !opt.Underlay.Is4In6()
	for _, enc := range []packet.Encap{packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN} {
		e.overhead[enc] = enc.Overhead(v6)
	}
	for enc, c := range opt.Tunnels {
		if int(enc) >= encapSlots || enc == packet.EncapNone || c == nil {
			return nil, fmt.Errorf("dataplane: tunnel for encapsulation %v not supported", enc)
		}
		e.tun[enc] = c
	}
	e.underlayMTU.Store(int64(opt.UnderlayMTU))
	e.tick()
	return e, nil
}

func mustPolicy(rules []flow.Rule) *flow.Policy {
	p, err := flow.Compile(rules)
	if err != nil {
		panic(err) // an empty rule set always compiles
	}
	return p
}

// Start runs the tunnel receive loops, the clock and flow aging until ctx
// ends or Close.
func (e *Engine) Start(ctx context.Context) {
	ctx, e.tunStop = context.WithCancel(ctx)
	for enc, c := range e.opt.Tunnels {
		e.loops.Add(1)
		go func() {
			defer e.loops.Done()
			e.tunnelLoop(ctx, enc, c)
		}()
	}
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		sweep := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				e.now.Store(now.UnixNano())
				if now.Sub(sweep) >= time.Second {
					sweep = now
					e.flow.Sweep(now.UnixNano())
				}
			}
		}
	}()
}

func (e *Engine) tick() { e.now.Store(time.Now().UnixNano()) }

// Close stops every loop and closes the ports and tunnels.
func (e *Engine) Close() error {
	if !e.stopped.CompareAndSwap(false, true) {
		return nil
	}
	if e.tunStop != nil {
		e.tunStop()
	}
	e.mu.Lock()
	for id, t := range e.adverts {
		t.Stop()
		delete(e.adverts, id)
	}
	e.mu.Unlock()
	var errs []error
	for _, c := range e.opt.Tunnels {
		errs = append(errs, c.Close())
	}
	for _, ps := range *e.ports.Load() {
		if ps != nil {
			errs = append(errs, ps.io.Close())
		}
	}
	e.loops.Wait()
	return errors.Join(errs...)
}

// Options returns the engine's options (with defaults filled in, and the
// underlay MTU in force).
func (e *Engine) Options() Options {
	o := e.opt
	o.UnderlayMTU = e.UnderlayMTU()
	return o
}

// UnderlayMTU is the underlay MTU in force.
func (e *Engine) UnderlayMTU() int { return int(e.underlayMTU.Load()) }

// SetUnderlayMTU changes the underlay MTU: packets from now on are held
// to it, and DefaultMTU follows. Ports keep their MTU; SetPortMTU changes
// that.
func (e *Engine) SetUnderlayMTU(n int) error {
	if n < mtu.Min || n > mtu.Max {
		return fmt.Errorf("dataplane: underlay mtu %d out of range %d..%d", n, mtu.Min, mtu.Max)
	}
	e.underlayMTU.Store(int64(n))
	return nil
}

// FIB is the routing tables, for reading: routes are written through
// SetRoute and DeleteRoute, which keep the accepted tunnel sources.
func (e *Engine) FIB() *fib.FIB { return e.fib }

// NextHops is the next-hop table, for reading: next hops are written
// through SetNextHop and DeleteNextHop.
func (e *Engine) NextHops() *nexthop.Table { return e.nhs }

// Flows is the flow table.
func (e *Engine) Flows() *flow.Table { return e.flow }

// Overhead is the bytes encapsulation enc adds on this underlay (outer IP
// included), 0 when unknown.
func (e *Engine) Overhead(enc packet.Encap) int {
	if int(enc) < encapSlots {
		return e.overhead[enc]
	}
	return 0
}

// DefaultMTU is the endpoint MTU that fits every encapsulation this
// vRouter has a tunnel for: the underlay MTU minus the largest overhead.
func (e *Engine) DefaultMTU() int {
	worst := 0
	for enc := range e.opt.Tunnels {
		worst = max(worst, e.Overhead(enc))
	}
	if worst == 0 {
		worst = packet.OverheadVXLAN4
	}
	return e.UnderlayMTU() - worst
}

// TrainSegments is the most TCP segments of an endpoint with this MTU
// that one UDP GSO send can carry over every UDP tunnel this vRouter has
// (0 when it has none, or the MTU is too large for two). A TAP's
// super-frames capped at that many segments (port.TAPConfig.GSOMaxSegs)
// leave as one train each; the kernel's default of 64 KiB super-frames
// needs two sends for one (45 segments and 1, at a 1450-byte MTU), and the
// straggler costs as much as the train in every layer it crosses, up to
// the remote endpoint's stack.
func (e *Engine) TrainSegments(mtu int) int {
	best := 0
	for _, enc := range []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN} {
		if e.tun[enc] == nil || !e.tun[enc].GSO() {
			continue
		}
		prefix, from := tunnelHeader(enc)
		n := min(maxGSOSegments, maxUDPPayload/(prefix+packet.EthernetHeaderLen-from+mtu))
		if best == 0 || n < best {
			best = n
		}
	}
	if best < 2 {
		return 0
	}
	return best
}

// SetLabel maps incoming MPLS label to next hop nh (0 removes it).
func (e *Engine) SetLabel(label uint32, nh nexthop.ID) error {
	if label < 16 || label > packet.MaxMPLSLabel {
		return fmt.Errorf("label %d out of range 16..%d", label, packet.MaxMPLSLabel)
	}
	if nh != 0 && e.nhs.Get(nh) == nil {
		return fmt.Errorf("label %d: next hop %d does not exist", label, nh)
	}
	e.labels[label].Store(uint32(nh))
	return nil
}

// Label returns the next hop of an incoming label, 0 when none.
func (e *Engine) Label(label uint32) nexthop.ID {
	if label > packet.MaxMPLSLabel {
		return 0
	}
	return nexthop.ID(e.labels[label].Load())
}

// Labels calls fn for every label in use, ascending.
func (e *Engine) Labels(fn func(label uint32, nh nexthop.ID)) {
	for l := range e.labels {
		if v := e.labels[l].Load(); v != 0 {
			fn(uint32(l), nexthop.ID(v))
		}
	}
}

// SetVNI maps incoming VXLAN vni to vrf (0 removes it).
func (e *Engine) SetVNI(vni, vrf uint32) error {
	if vni == 0 || vni > packet.MaxVNI {
		return fmt.Errorf("vni %d out of range 1..%d", vni, packet.MaxVNI)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if vrf != 0 && e.fib.VRF(fib.VRFID(vrf)) == nil {
		return fmt.Errorf("vni %d: vrf %d does not exist", vni, vrf)
	}
	m := cloneMap(*e.vnis.Load())
	if vrf == 0 {
		delete(m, vni)
	} else {
		m[vni] = vrf
	}
	e.vnis.Store(&m)
	return nil
}

// VNIs returns a snapshot of the VNI table.
func (e *Engine) VNIs() map[uint32]uint32 { return cloneMap(*e.vnis.Load()) }

// SetVRF creates VRF id (or updates its network).
func (e *Engine) SetVRF(id, network uint32) error {
	if id == 0 || id > fib.MaxVRF {
		return fmt.Errorf("vrf %d out of range 1..%d", id, fib.MaxVRF)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.fib.CreateVRF(fib.VRFID(id)); err != nil {
		return fmt.Errorf("vrf %d: %w", id, err)
	}
	m := cloneMap(*e.vrfs.Load())
	m[id] = network
	e.vrfs.Store(&m)
	return nil
}

// DeleteVRF drops VRF id and its routes. Ports and VNIs still in it must be
// gone first.
func (e *Engine) DeleteVRF(id uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ps := range *e.ports.Load() {
		if ps != nil && ps.cfg.VRF == id {
			return fmt.Errorf("vrf %d: port %d (%s) is still in it", id, ps.cfg.ID, ps.cfg.Name)
		}
	}
	for vni, vrf := range *e.vnis.Load() {
		if vrf == id {
			return fmt.Errorf("vrf %d: vni %d still points at it", id, vni)
		}
	}
	e.dropVRFSources(id)
	e.fib.DeleteVRF(fib.VRFID(id))
	m := cloneMap(*e.vrfs.Load())
	delete(m, id)
	e.vrfs.Store(&m)
	return nil
}

// VRFNetwork returns the network of VRF id and whether it exists.
func (e *Engine) VRFNetwork(id uint32) (uint32, bool) {
	n, ok := (*e.vrfs.Load())[id]
	return n, ok
}

// SetPolicy replaces the rules between networks; cached flow decisions
// taken under the old rules no longer stand.
func (e *Engine) SetPolicy(rules []flow.Rule) error {
	p, err := flow.Compile(rules)
	if err != nil {
		return err
	}
	e.flow.SetPolicy(p)
	return nil
}

func cloneMap(m map[uint32]uint32) map[uint32]uint32 {
	c := make(map[uint32]uint32, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}
