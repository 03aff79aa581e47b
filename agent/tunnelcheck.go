package agent

import (
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
)

// A received path is tunnelled to its endpoint (the RFC 9012 Tunnel Egress
// Endpoint, else the next hop). Behind an eBGP route server that rewrites
// the next hop to itself (FRR's default) and drops or lacks the egress
// endpoint, that is the route server: the vRouter would install a tunnel
// to a box that decapsulates nothing, and traffic would vanish silently.
// endpointCheck finds such paths, counts them per peer for `weft ctl
// status` and the metrics, and logs each peer once.

// endpointCheck remembers the last count per peer and which peers have
// been logged.
type endpointCheck struct {
	log *slog.Logger

	mu     sync.Mutex
	counts map[netip.Addr]suspect
	logged map[netip.Addr]bool
}

type suspect struct {
	paths   int
	example string // one path, for the operator
}

func newEndpointCheck(log *slog.Logger) *endpointCheck {
	return &endpointCheck{log: log, counts: map[netip.Addr]suspect{}, logged: map[netip.Addr]bool{}}
}

// notTunnelEndpoint says why a is not a tunnel endpoint, or "": a BGP
// peer's address (the path's own peer, or any configured controller) is
// not one unless the operator declared it in overlay.tunnelEndpoints (a
// gateway router that is its own tunnel end); when they are declared, an
// address outside them is not one either.
func notTunnelEndpoint(c *config.Config, from, a netip.Addr) string {
	declared := c.Overlay.TunnelEndpoints
	if slices.ContainsFunc(declared, func(p netip.Prefix) bool { return p.Contains(a) }) {
		return ""
	}
	if a == from {
		return "the next hop is the peer the route came from (a route server that rewrites the next hop to itself)"
	}
	if c.BGP != nil && slices.ContainsFunc(c.BGP.Controllers, func(ctl config.Controller) bool { return ctl.Address == a }) {
		return "the next hop is a BGP peer, not a node"
	}
	if len(declared) > 0 {
		return "the next hop is outside overlay.tunnelEndpoints"
	}
	return ""
}

// check recounts the suspect paths (run with every reconcile's inputs).
func (e *endpointCheck) check(c *config.Config, paths []Path) {
	counts := map[netip.Addr]suspect{}
	for _, p := range paths {
		why := notTunnelEndpoint(c, p.From, p.NextHop)
		if why == "" {
			continue
		}
		s := counts[p.From]
		s.paths++
		if s.example == "" {
			s.example = p.RD + ":" + p.Prefix.String() + " via " + p.NextHop.String() + ": " + why
		}
		counts[p.From] = s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts = counts
	for peer, s := range counts {
		if !e.logged[peer] {
			e.logged[peer] = true
			e.log.Warn("received paths whose next hop is not a tunnel endpoint: traffic to them would be blackholed; "+
				"have the peer keep the next hop unchanged, or pass the Tunnel Encapsulation attribute's egress endpoint (see the README's BGP peers)",
				"peer", peer, "paths", s.paths, "example", s.example)
		}
	}
}

// report is the current count per peer, ordered by peer.
func (e *endpointCheck) report() []agentapi.NextHopWarning {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]agentapi.NextHopWarning, 0, len(e.counts))
	for peer, s := range e.counts {
		out = append(out, agentapi.NextHopWarning{Peer: peer.String(), Paths: s.paths, Example: s.example})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}
