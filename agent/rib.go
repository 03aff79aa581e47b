package agent

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/weftnet/weft/agent/bgp"
)

// retainGrace is how long a peer must have been established and past
// its End-of-RIB before paths it withdrew in the meantime are let go: long
// enough for the other clients of a restarted reflector to come back
// (GoBGP waits 5 s before it reconnects) and re-announce.
const retainGrace = 15 * time.Second

// confirmWithdraw is how long a withdrawal waits to tell an explicit
// withdrawal (the session stayed up) from a session that dropped.
const confirmWithdraw = 250 * time.Millisecond

// retainMax bounds how long a withdrawn path is kept in any case.
const retainMax = 2 * time.Minute

// rib is the agent's view of the routes BGP brought: the received best
// paths, the paths withdrawn while their peer was not stable (retained
// over a reflector's restart) and whether a restarted agent has relearnt
// its routes (graceful restart). It answers which paths to use now.
type rib struct {
	log     *slog.Logger
	changed func() // asks for a reconcile; must not block

	mu       sync.Mutex
	received map[bgp.Key]bgp.Route
	// retained are paths withdrawn while their peer was not stable (down,
	// or not yet past End-of-RIB and a grace period): a reflector that
	// restarts flushes what it relays, and forwarding must not stop for it.
	retained map[bgp.Key]retainedPath
	sessions map[netip.Addr]*peerState
	// synced: the routes are relearnt, so what the vRouter has that they
	// do not explain may be deleted. False after a restart until the
	// controllers' End-of-RIB (or the sync timeout).
	synced bool
	// converging are the sessions whose table is not installed yet, and
	// lastConv the last that was (convergence.go).
	converging []convergence
	lastConv   convergence
}

type retainedPath struct {
	route bgp.Route
	since time.Time
}

// peerState is what the RIB tracks of a session for retention and for
// knowing when a restarted agent has relearnt its routes.
type peerState struct {
	up    bool
	since time.Time           // established since
	eor   map[bgp.Family]bool // End-of-RIB received since established
}

func newRIB(log *slog.Logger, changed func()) *rib {
	return &rib{log: log, changed: changed, received: map[bgp.Key]bgp.Route{},
		retained: map[bgp.Key]retainedPath{}, sessions: map[netip.Addr]*peerState{}}
}

// setSynced says, before BGP starts, whether there is anything to relearn.
func (r *rib) setSynced(synced bool) {
	r.mu.Lock()
	r.synced = synced
	r.mu.Unlock()
}

// loading reports whether a session is established and has not sent an
// End-of-RIB yet: its table is still streaming in.
func (r *rib) loading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.sessions {
		if p.up && len(p.eor) == 0 {
			return true
		}
	}
	return false
}

// stable reports whether p is established, has sent an End-of-RIB since,
// and has been so for grace.
func (r *rib) stableLocked(addr netip.Addr, grace time.Duration, now time.Time) bool {
	p := r.sessions[addr]
	return p != nil && p.up && len(p.eor) > 0 && now.Sub(p.since) >= grace
}

// onEvent takes BGP's news; it must return quickly.
func (r *rib) onEvent(ev bgp.Event) {
	now := time.Now()
	switch ev.Kind {
	case bgp.RouteAdded:
		r.mu.Lock()
		r.received[ev.Route.Key()] = ev.Route
		delete(r.retained, ev.Route.Key())
		r.mu.Unlock()
		r.changed()
	case bgp.RouteWithdrawn:
		k := ev.Route.Key()
		r.mu.Lock()
		if rt, ok := r.received[k]; ok {
			delete(r.received, k)
			peer := ev.Route.Peer
			if !peer.IsValid() {
				peer = rt.Peer
			}
			// Every withdrawal waits a moment: GoBGP may report the paths a
			// dropped session takes with it before the session's state.
			if rt.Peer != peer && peer.IsValid() {
				rt.Peer = peer
			}
			r.retained[k] = retainedPath{route: rt, since: now}
		}
		r.mu.Unlock()
		r.changed()
	case bgp.EndOfRIB:
		r.mu.Lock()
		if p := r.sessions[ev.Peer]; p != nil {
			p.eor[ev.Family] = true
			if p.up {
				r.endOfRIBLocked(ev.Peer, p.since, now)
			}
		}
		r.mu.Unlock()
		r.changed() // the reconcile after it ends the convergence
		if ev.Family == bgp.VPNv4 {
			// The other families' End-of-RIB follow within moments (they are
			// sent together); deletes wait a little more for them.
			time.AfterFunc(time.Second, func() { r.markSynced("end-of-rib from " + ev.Peer.String()) })
		}
	case bgp.PeerState:
		r.mu.Lock()
		p := r.sessions[ev.Peer]
		if p == nil {
			p = &peerState{}
			r.sessions[ev.Peer] = p
		}
		up := ev.State == bgp.StateEstablished
		if up && !p.up {
			p.since, p.eor = now, map[bgp.Family]bool{}
		}
		p.up = up
		r.mu.Unlock()
		r.log.Info("bgp session", "peer", ev.Peer, "state", ev.State.String(), "reason", ev.Reason)
	}
}

func (r *rib) markSynced(why string) {
	r.mu.Lock()
	was := r.synced
	r.synced = true
	r.mu.Unlock()
	if !was {
		r.log.Info("routes relearnt; stale remote routes may go now", "why", why)
		r.changed()
	}
}

// isSynced reports whether the routes are relearnt since the start.
func (r *rib) isSynced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// expireRetained lets go of retained paths once their peer is stable
// again (they were not re-announced: they are gone) or they are too old.
func (r *rib) expireRetained(now time.Time) {
	r.mu.Lock()
	n := 0
	for k, rp := range r.retained {
		p := r.sessions[rp.route.Peer]
		explicit := now.Sub(rp.since) >= confirmWithdraw && p != nil && p.up && len(p.eor) > 0 && p.since.Before(rp.since)
		if explicit || now.Sub(rp.since) > retainMax || r.stableLocked(rp.route.Peer, retainGrace, now) {
			delete(r.retained, k)
			n++
		}
	}
	r.mu.Unlock()
	if n > 0 {
		r.log.Debug("withdrawn paths let go", "paths", n)
		r.changed()
	}
}

func (r *rib) hasRetained() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.retained) > 0
}

// now is what desired state is computed from: the received best paths
// and those retained over a peer's restart, merged into Paths, and
// whether the routes are relearnt (taken together, so that the two agree).
func (r *rib) now() (paths []Path, synced bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return pathsFrom(r.allPathsLocked()), r.synced
}

// allPathsLocked is the received best paths, and those retained over a
// peer's restart.
func (r *rib) allPathsLocked() map[bgp.Key]bgp.Route {
	if len(r.retained) == 0 {
		return r.received
	}
	all := make(map[bgp.Key]bgp.Route, len(r.retained)+len(r.received))
	for k, rp := range r.retained {
		all[k] = rp.route
	}
	for k, rt := range r.received {
		all[k] = rt
	}
	return all
}
