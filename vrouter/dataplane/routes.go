package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/sources"
)

// Routes and next hops are written through the engine, not into FIB and
// NextHops directly: each write also moves the outer sources the tunnel
// receive loops accept (package sources). A VRF accepts a tunnel packet
// only from the remote endpoints its routes lead to, per encapsulation;
// the rest is dropped as DropTunnelSource (a stranger) or DropTunnelVRF
// (a real vRouter, with a label or VNI of a VRF it has no routes in).

// SetNextHop adds next hop nh or replaces the one with its ID.
func (e *Engine) SetNextHop(nh nexthop.NextHop) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.nhs.Set(nh); err != nil {
		return err
	}
	e.srcs.SetNextHop(e.nhs.Get(nh.ID))
	return nil
}

// DeleteNextHop removes next hop id (unknown IDs are not an error).
func (e *Engine) DeleteNextHop(id nexthop.ID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.nhs.Delete(id); err != nil {
		return err
	}
	e.srcs.DeleteNextHop(id)
	return nil
}

// SetRoute routes prefix p (masked) in VRF vrf to next hop nh.
func (e *Engine) SetRoute(vrf uint32, p netip.Prefix, nh nexthop.ID) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.fib.VRF(fib.VRFID(vrf))
	if t == nil {
		return fmt.Errorf("route %v: vrf %d does not exist", p, vrf)
	}
	old, ok := t.Get(p)
	if !ok {
		old = 0 // Get may name a neighbour's next hop when it misses
	}
	if err := t.Insert(p, nh); err != nil {
		return err
	}
	e.srcs.Route(vrf, old, nh)
	return nil
}

// DeleteRoute removes the route for p (masked) from VRF vrf; a route or
// VRF that is not there is not an error.
func (e *Engine) DeleteRoute(vrf uint32, p netip.Prefix) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.fib.VRF(fib.VRFID(vrf))
	if t == nil {
		return nil
	}
	old, ok := t.Get(p)
	if !ok {
		return nil
	}
	if _, err := t.Delete(p); err != nil {
		return err
	}
	e.srcs.Route(vrf, old, 0)
	return nil
}

// dropVRFSources forgets what VRF id's routes accepted; called with e.mu
// held, before the VRF's table goes.
func (e *Engine) dropVRFSources(id uint32) {
	t := e.fib.VRF(fib.VRFID(id))
	if t == nil {
		return
	}
	e.srcs.DeleteVRF(id, func(yield func(nexthop.ID) bool) {
		for _, nh := range t.All() {
			if !yield(nh) {
				return
			}
		}
	})
}

// TunnelSources lists the outer sources VRF vrf accepts tunnel packets
// from, by encapsulation.
func (e *Engine) TunnelSources(vrf uint32) []sources.Source { return e.srcs.List(vrf) }

// acceptSource checks a tunnel packet's outer source for the VRF its
// label or VNI was advertised for; false drops (counted).
func (rx *tunnelRx) acceptSource(vrf uint32, outer netip.Addr) bool {
	e := rx.e
	if e.srcs.Accepts(vrf, rx.enc, outer) {
		return true
	}
	if e.srcs.Known(rx.enc, outer) {
		e.drop(DropTunnelVRF)
	} else {
		e.drop(DropTunnelSource)
	}
	return false
}
