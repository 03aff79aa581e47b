package agent

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/objects"
)

// A full convergence is a session bringing in its whole table: it starts
// when the session is Established, the peer's End-of-RIB says the table
// is complete, and it ends when a reconcile that read the RIB after that
// End-of-RIB has applied every op (none refused): every route received by
// then is installed in the vRouter. Its time is Installed - Established.
// A later End-of-RIB of the same session (another family's) moves the
// end again.
type convergence struct {
	Peer        netip.Addr
	Established time.Time
	EndOfRIB    time.Time
	Installed   time.Time // zero while pending
}

// Took is the convergence's time, Established to Installed.
func (c convergence) Took() time.Duration { return c.Installed.Sub(c.Established) }

// endOfRIBLocked notes a session's End-of-RIB at now (r.mu held).
func (r *rib) endOfRIBLocked(peer netip.Addr, established, now time.Time) {
	for i := range r.converging {
		if c := &r.converging[i]; c.Peer == peer && c.Established.Equal(established) {
			c.EndOfRIB = now
			return
		}
	}
	if r.lastConv.Peer == peer && r.lastConv.Established.Equal(established) {
		// A later family's End-of-RIB: the session converges again.
		r.lastConv = convergence{}
	}
	r.converging = append(r.converging, convergence{Peer: peer, Established: established, EndOfRIB: now})
}

// installed ends the convergences whose End-of-RIB came before read, when
// the RIB was read for a reconcile that then applied everything at now;
// it reports whether one ended.
func (r *rib) installed(read, now time.Time) (ended bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.converging = slices.DeleteFunc(r.converging, func(c convergence) bool {
		if !c.EndOfRIB.Before(read) {
			return false
		}
		ended = true
		c.Installed = now
		if c.Installed.After(r.lastConv.Installed) {
			r.lastConv = c
		}
		return true
	})
	return ended
}

// lastConvergence is the last full convergence; ok false if none yet.
func (r *rib) lastConvergence() (c convergence, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastConv, !r.lastConv.Installed.IsZero()
}

// networkRoutes are, per network with a VRF here, its received and
// accepted paths (from the last desired state) and the remote routes
// (via a tunnel or an ECMP group) the vRouter has installed in its VRF.
type networkRoutes struct {
	Network                       string
	Received, Accepted, Installed int
}

func perNetwork(imported map[string]PathCounts, inst *Installed) []networkRoutes {
	byName := map[string]*networkRoutes{}
	get := func(n string) *networkRoutes {
		if byName[n] == nil {
			byName[n] = &networkRoutes{Network: n}
		}
		return byName[n]
	}
	for n, c := range imported {
		e := get(n)
		e.Received, e.Accepted = c.Received, c.Accepted
	}
	if inst != nil {
		for k, nh := range inst.Routes {
			if remoteNextHop(&inst.Set, nh) {
				get(inst.VRFs[k.VRF].GetName()).Installed++
			}
		}
	}
	out := make([]networkRoutes, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b networkRoutes) int { return cmp.Compare(a.Network, b.Network) })
	return out
}

func remoteNextHop(s *objects.Set, id uint32) bool {
	switch s.NextHops[id].GetKind() {
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL, vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE:
		return true
	}
	return false
}
