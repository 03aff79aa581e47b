package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/services"
)

// MaxPorts bounds port IDs (they index a slice).
const MaxPorts = 1 << 16

// PortConfig is what the engine needs to know of a port.
type PortConfig struct {
	ID      uint32
	Name    string
	VRF     uint32
	Network uint32 // the VRF's network, filled in by AttachPort
	MAC     packet.MAC
	// Addresses are the endpoint's own (with their prefix length);
	// AllowedSources extra prefixes it may send from. A frame from any
	// other source is dropped as spoofed.
	Addresses      []netip.Prefix
	AllowedSources []netip.Prefix
	Gateways       []netip.Addr // virtual gateway addresses, one per family
	MTU            int
	DHCP           bool
	DNS            []netip.Addr
	Hostname       string
}

// portState is the immutable view the loops use; an update replaces it.
type portState struct {
	cfg     PortConfig
	io      port.Port
	info    services.PortInfo
	sources []netip.Prefix // host prefixes of Addresses, then AllowedSources
	gw4     netip.Addr
	gw6     netip.Addr
	c       *portCounters // kept across updates
	done    chan struct{} // closed when the receive loop has exited
}

func (ps *portState) allowedSource(a netip.Addr) bool {
	for _, p := range ps.sources {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (ps *portState) isGateway(a netip.Addr) bool {
	return a == ps.gw4 || a == ps.gw6
}

func (e *Engine) newPortState(cfg PortConfig, io port.Port, c *portCounters) (*portState, error) {
	if cfg.ID == 0 || cfg.ID >= MaxPorts {
		return nil, fmt.Errorf("port %d: id out of range 1..%d", cfg.ID, MaxPorts-1)
	}
	network, ok := e.VRFNetwork(cfg.VRF)
	if !ok || e.fib.VRF(fib.VRFID(cfg.VRF)) == nil {
		return nil, fmt.Errorf("port %d (%s): vrf %d does not exist", cfg.ID, cfg.Name, cfg.VRF)
	}
	cfg.Network = network
	if cfg.MAC.IsZero() || cfg.MAC.IsMulticast() {
		return nil, fmt.Errorf("port %d (%s): mac %v must be unicast", cfg.ID, cfg.Name, cfg.MAC)
	}
	if cfg.MTU == 0 {
		cfg.MTU = e.DefaultMTU()
	}
	ps := &portState{cfg: cfg, io: io, c: c}
	for _, a := range cfg.Addresses {
		ps.sources = append(ps.sources, netip.PrefixFrom(a.Addr(), a.Addr().BitLen()))
	}
	for _, p := range cfg.AllowedSources {
		ps.sources = append(ps.sources, p.Masked())
	}
	for _, g := range cfg.Gateways {
		switch {
		case g.Is4() && !ps.gw4.IsValid():
			ps.gw4 = g
		case g.Is6() && !ps.gw6.IsValid():
			ps.gw6 = g
		}
	}
	ps.info = services.PortInfo{
		MAC:        cfg.MAC,
		GatewayMAC: e.opt.GatewayMAC,
		Addresses:  slices.Clone(cfg.Addresses),
		Gateways:   slices.Clone(cfg.Gateways),
		MTU:        cfg.MTU,
		DNS:        slices.Clone(cfg.DNS),
		Hostname:   cfg.Hostname,
		DHCP:       cfg.DHCP,
	}
	return ps, nil
}

// AttachPort adds a port with its I/O and starts its receive loop. The
// engine owns io from then on: DetachPort (or Close) closes it.
func (e *Engine) AttachPort(cfg PortConfig, io port.Port) error {
	_, err := e.attachPort(cfg, io, true)
	return err
}

// attachPort is AttachPort; without loop the port's receive loop is not
// started (benchmarks drive portBatch themselves).
func (e *Engine) attachPort(cfg PortConfig, io port.Port, loop bool) (*portState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ports := *e.ports.Load()
	if int(cfg.ID) < len(ports) && ports[cfg.ID] != nil {
		return nil, fmt.Errorf("port %d: already attached (%s)", cfg.ID, ports[cfg.ID].cfg.Name)
	}
	ps, err := e.newPortState(cfg, io, &portCounters{})
	if err != nil {
		return nil, err
	}
	ps.done = make(chan struct{})
	e.storePort(ps)
	e.readvertiseLocked(nil, ps)
	if !loop {
		close(ps.done)
		return ps, nil
	}
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		defer close(ps.done)
		e.portLoop(ps.cfg.ID, ps.io)
	}()
	return ps, nil
}

// UpdatePort changes an attached port's configuration (addresses, VRF,
// MTU, services) without touching its I/O.
func (e *Engine) UpdatePort(cfg PortConfig) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.port(cfg.ID)
	if old == nil {
		return fmt.Errorf("port %d: not attached", cfg.ID)
	}
	ps, err := e.newPortState(cfg, old.io, old.c)
	if err != nil {
		return err
	}
	ps.done = old.done
	e.storePort(ps)
	e.readvertiseLocked(old, ps)
	return nil
}

// SetPortMTU changes an attached port's MTU: on its device when the port
// sets that (port.MTUSetter, a TAP), with the segment cap that keeps its
// super-frames one tunnel send each, then what the port's services
// announce (DHCP option 26, router advertisements).
func (e *Engine) SetPortMTU(id uint32, mtu int) error {
	ps := e.port(id)
	if ps == nil {
		return fmt.Errorf("port %d: not attached", id)
	}
	if s, ok := ps.io.(port.MTUSetter); ok {
		if err := s.SetMTU(mtu, e.TrainSegments(mtu)); err != nil {
			return fmt.Errorf("port %d (%s): %w", id, ps.cfg.Name, err)
		}
	}
	cfg := ps.cfg
	cfg.MTU = mtu
	return e.UpdatePort(cfg)
}

// DetachPort removes a port, closes its I/O and waits for its loop.
func (e *Engine) DetachPort(id uint32) error {
	e.mu.Lock()
	ps := e.port(id)
	if ps == nil {
		e.mu.Unlock()
		return nil
	}
	ports := slices.Clone(*e.ports.Load())
	ports[id] = nil
	e.ports.Store(&ports)
	e.stopAdvertsLocked(id)
	e.mu.Unlock()
	err := ps.io.Close()
	<-ps.done
	if err != nil && !errors.Is(err, port.ErrClosed) {
		return fmt.Errorf("port %d (%s): close: %w", id, ps.cfg.Name, err)
	}
	return nil
}

// Port returns an attached port's configuration.
func (e *Engine) Port(id uint32) (PortConfig, bool) {
	ps := e.port(id)
	if ps == nil {
		return PortConfig{}, false
	}
	return ps.cfg, true
}

// port is the current state of port id, or nil; lock-free.
func (e *Engine) port(id uint32) *portState {
	ports := *e.ports.Load()
	if int(id) < len(ports) {
		return ports[id]
	}
	return nil
}

func (e *Engine) storePort(ps *portState) {
	ports := *e.ports.Load()
	n := max(len(ports), int(ps.cfg.ID)+1)
	next := make([]*portState, n)
	copy(next, ports)
	next[ps.cfg.ID] = ps
	e.ports.Store(&next)
}

// Router advertisements. The services answer a workload's solicitations;
// these are the unsolicited ones that keep its default route alive: one
// when a port with an IPv6 address is attached (or an update changes what
// the advertisement says), then one every Options.RouterAdvertInterval.
// One timer per port, on the control side of the engine: nothing of it
// runs in the forwarding loops, and Port.Write may be called from any
// goroutine.

// readvertiseLocked advertises port ps now and schedules the next one,
// unless it has no IPv6 address or nothing it advertises changed since old
// (nil for a new port). Called with e.mu held.
func (e *Engine) readvertiseLocked(old, ps *portState) {
	if !hasIPv6(ps.cfg.Addresses) {
		e.stopAdvertsLocked(ps.cfg.ID)
		return
	}
	if old != nil && e.adverts[ps.cfg.ID] != nil && sameAdvert(&old.info, &ps.info) {
		return
	}
	e.stopAdvertsLocked(ps.cfg.ID)
	e.advertise(ps)
	id := ps.cfg.ID
	var t *time.Timer
	// The callback takes e.mu first, so it sees t assigned.
	t = time.AfterFunc(e.opt.RouterAdvertInterval, func() { e.advertTick(id, t) })
	e.adverts[id] = t
}

func (e *Engine) stopAdvertsLocked(id uint32) {
	if t := e.adverts[id]; t != nil {
		t.Stop()
		delete(e.adverts, id)
	}
}

// advertTick sends port id's periodic advertisement, if t is still its
// timer, and arms t for the next.
func (e *Engine) advertTick(id uint32, t *time.Timer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.adverts[id] != t || e.stopped.Load() {
		return
	}
	if ps := e.port(id); ps != nil {
		e.advertise(ps)
	}
	t.Reset(e.opt.RouterAdvertInterval)
}

// advertise writes one router advertisement to all nodes out of ps. It
// runs every half hour or so per port, so it may allocate.
func (e *Engine) advertise(ps *portState) {
	f := &frame.Frame{Buf: make([]byte, frame.Headroom+services.MaxReplyLen)}
	n, err := services.RouterAdvert(&ps.info, f.Buf[frame.Headroom:])
	if err != nil || n == 0 {
		return
	}
	f.SetData(frame.Headroom, n)
	if k, err := ps.io.Write([]*frame.Frame{f}); k == 1 {
		ps.c.txPackets.Add(1)
		ps.c.txBytes.Add(uint64(n))
	} else {
		ps.c.drops.Add(1)
		e.drops[DropTxError].Add(1)
		if err != nil && !errors.Is(err, port.ErrClosed) {
			e.log.Debug("router advertisement", "port", ps.cfg.Name, "err", err)
		}
	}
}

func hasIPv6(addrs []netip.Prefix) bool {
	return slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Is6() && !p.Addr().Is4In6() })
}

// sameAdvert reports whether a and b make the same router advertisement.
func sameAdvert(a, b *services.PortInfo) bool {
	return a.GatewayMAC == b.GatewayMAC && a.MTU == b.MTU && a.MAC == b.MAC &&
		slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.Gateways, b.Gateways) && slices.Equal(a.DNS, b.DNS)
}
