// Package bgp is Weft's typed BGP layer: GoBGP v3 embedded as speaker and
// RIB, spoken in Weft's terms (Route, RD, route targets, encapsulations).
// The agent decides what to announce and what to do with what it
// receives; this package carries it over VPNv4, VPNv6, EVPN type 5 and
// IPv4/IPv6 unicast sessions to route reflectors, with TCP MD5, graceful
// restart and per-peer diagnostics.
//
// A Linux process that listens with TCP MD5 needs `//go:debug
// multipathtcp=0` in its main package (and in a _test.go file for test
// binaries): Go 1.24 and later listen with MPTCP, on which the kernel
// refuses MD5 keys. Start fails with an error saying so rather than run
// with an unprotected listener.
//
// GoBGP v3.37.0 panics, on a session goroutine no caller can recover, on
// some malformed NLRI (a labelled VPN prefix too short for its RD, see
// TestGoBGPPanicsOnShortVPNPrefix, short EVPN routes, and more). So GoBGP
// never talks to a peer directly: each session goes through a relay the
// speaker owns (relay.go), whose guard (guard.go) refuses such messages
// with a NOTIFICATION and lets everything else through unchanged; the
// session then comes back by itself, and PeerStatus says what was
// refused. Every other malformed input is handled by GoBGP per RFC 7606.
package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/weftnet/weft/internal/bgpguard"
)

// ErrStopped is returned by a Speaker after Stop or Abandon.
var ErrStopped = errors.New("bgp: speaker stopped")

// Speaker is a running BGP speaker. Its methods are safe for concurrent
// use.
type Speaker struct {
	cfg   Config
	srv   *server.BgpServer
	log   *slog.Logger
	diag  *diagnostics
	addrs *addrBook
	// hop is GoBGP's loopback listener and its key; listeners are the
	// speaker's own, for peers that dial in.
	hop       *bgpguard.Hop
	listeners []*net.TCPListener

	relayMu sync.RWMutex
	relays  map[netip.Addr]*relay // by peer address

	mu        sync.Mutex
	stopped   bool
	announced map[Key]Route
	peers     map[netip.Addr]Peer
	added     map[netip.Addr]time.Time   // when each peer was configured
	md5Base   map[netip.Addr]md5Counters // the kernel's MD5 counters then
	subs      map[*subscription]struct{}
	members   map[RouteTarget]struct{} // route target memberships advertised (rtc.go)
	nextLo    uint32                   // the last guard address handed out

	// flapBase are the flaps of a peer's earlier GoBGP neighbours: a
	// changed password or timer re-adds the neighbour, whose count starts
	// again at 0, and the session's history must not go with it.
	flapBase map[netip.Addr]uint32
}

// Start starts a speaker: it listens (unless ListenPort is -1), announces
// cfg.Routes, then configures the peers, which connect in the background
// (GoBGP waits 1-2 s before its first connection attempt). ctx bounds the
// start only: the speaker runs until Stop or Abandon, so that the agent
// chooses between a clean stop and a graceful-restart exit.
func Start(ctx context.Context, cfg Config) (*Speaker, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("bgp config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	diag, addrs := newDiagnostics(), newAddrBook()
	srv := server.NewBgpServer(server.LoggerOption(speakerLog(cfg.Logger, diag, addrs)))
	// GoBGP's main loop; it has no way to end, so a stopped speaker
	// leaves this goroutine idle (one per Start).
	go srv.Serve()
	// GoBGP listens on the hop only, for the relays (relay.go).
	hop, err := bgpguard.StartGoBGP(ctx, srv, &api.Global{Asn: cfg.ASN, RouterId: cfg.RouterID.String()})
	if err != nil {
		return nil, fmt.Errorf("bgp: starting: %w", err)
	}
	if err := refuseASLoops(ctx, srv, cfg.ASN); err != nil {
		srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return nil, fmt.Errorf("bgp: %w", err)
	}
	s := &Speaker{
		cfg:       cfg,
		srv:       srv,
		log:       cfg.Logger,
		diag:      diag,
		addrs:     addrs,
		hop:       hop,
		relays:    make(map[netip.Addr]*relay),
		announced: make(map[Key]Route),
		peers:     make(map[netip.Addr]Peer),
		added:     make(map[netip.Addr]time.Time),
		md5Base:   make(map[netip.Addr]md5Counters),
		flapBase:  make(map[netip.Addr]uint32),
		subs:      make(map[*subscription]struct{}),
		members:   make(map[RouteTarget]struct{}),
	}
	if cfg.ListenPort != -1 {
		port := cfg.ListenPort
		if port == 0 {
			port = 179
		}
		addrs := cfg.ListenAddresses
		if len(addrs) == 0 {
			addrs = []string{"0.0.0.0", "::"}
		}
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				s.Stop()
				return nil, fmt.Errorf("bgp: listen address %q: %w", a, err)
			}
			ln, err := bgpguard.Listen(ip, port)
			if err != nil {
				if len(cfg.ListenAddresses) == 0 && a == "::" {
					s.log.Warn("bgp: not listening on IPv6", "err", err)
					continue
				}
				s.Stop()
				return nil, fmt.Errorf("bgp: starting (listen port %d, addresses %v): %w", port, addrs, err)
			}
			s.listeners = append(s.listeners, ln)
			go s.accept(ln)
		}
	}
	for i, r := range cfg.Routes {
		if err := s.Announce(r); err != nil {
			s.Stop()
			return nil, fmt.Errorf("bgp config: routes[%d]: %w", i, err)
		}
	}
	var peerErr error
	s.mu.Lock()
	for i, p := range cfg.Peers {
		if err := s.addPeerLocked(p, cfg.Restarting); err != nil {
			peerErr = fmt.Errorf("bgp config: peers[%d]: %w", i, err)
			break
		}
	}
	s.mu.Unlock()
	if peerErr != nil {
		s.Stop()
		return nil, peerErr
	}
	return s, nil
}

func (s *Speaker) enc() encoding { return encoding{asn: s.cfg.ASN, tunnelEncap: s.cfg.TunnelEncap} }

func (s *Speaker) addPeerLocked(p Peer, restarting bool) error {
	s.nextLo++
	lo := bgpguard.HopAddr(s.nextLo)
	if err := s.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: s.cfg.apiPeer(p, lo, restarting)}); err != nil {
		return fmt.Errorf("%v: %w", p.Address, err)
	}
	// A session that then comes up unauthenticated (we dial) or never
	// (the peer dials) is worse than an error now.
	if p.Password != "" {
		if err := s.setListenerMD5(p.Address, p.Password); err != nil {
			s.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: lo.String()})
			s.setListenerMD5(p.Address, "")
			return fmt.Errorf("%v: password: cannot set the TCP MD5 key on the listener: %w (Go >= 1.24 listens with MPTCP, which has no TCP MD5: build with //go:debug multipathtcp=0)", p.Address, err)
		}
	}
	s.addrs.add(lo, p.Address)
	r := newRelay(s, p, lo)
	s.relayMu.Lock()
	s.relays[p.Address] = r
	s.relayMu.Unlock()
	go r.run()
	s.peers[p.Address] = p
	s.added[p.Address] = time.Now()
	if c, ok := readMD5Counters(); ok {
		s.md5Base[p.Address] = c
	}
	return nil
}

func (s *Speaker) deletePeerLocked(a netip.Addr, readd bool) error {
	s.relayMu.RLock()
	r := s.relays[a]
	s.relayMu.RUnlock()
	if r == nil {
		return fmt.Errorf("%v: no such peer", a)
	}
	if readd {
		s.srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: r.lo.String()}, func(p *api.Peer) {
			s.flapBase[a] += p.GetState().GetFlops()
		})
	} else {
		delete(s.flapBase, a)
	}
	// GoBGP sends its Cease through the relay, which then ends.
	if err := s.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: r.lo.String()}); err != nil {
		return fmt.Errorf("%v: %w", a, err)
	}
	s.relayMu.Lock()
	delete(s.relays, a)
	s.relayMu.Unlock()
	r.stop(false)
	r.wait(drainTimeout)
	if s.peers[a].Password != "" {
		s.setListenerMD5(a, "")
	}
	delete(s.peers, a)
	delete(s.added, a)
	delete(s.md5Base, a)
	s.diag.forget(a)
	return nil
}

// allRelays is every relay, for Stop and Abandon.
func (s *Speaker) allRelays() []*relay {
	s.relayMu.RLock()
	defer s.relayMu.RUnlock()
	out := make([]*relay, 0, len(s.relays))
	for _, r := range s.relays {
		out = append(out, r)
	}
	return out
}

// Announce adds r to what the speaker advertises, or replaces the route
// with r's key. Announcing what is already announced, attribute for
// attribute, sends nothing.
func (s *Speaker) Announce(r Route) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("announce %v: %w", r.Key(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	k := r.Key()
	if old, ok := s.announced[k]; ok && old.Equal(r) {
		return nil
	}
	p, err := r.apiPath(s.enc(), false)
	if err != nil {
		return fmt.Errorf("announce %v: %w", k, err)
	}
	if _, err := s.srv.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("announce %v: %w", k, err)
	}
	r = r.Clone()
	r.Peer, r.Stale = netip.Addr{}, false
	s.announced[k] = r
	return nil
}

// Withdraw stops advertising the route with r's key (only Family, RD and
// Prefix matter). Withdrawing what is not announced does nothing.
func (s *Speaker) Withdraw(r Route) error {
	k := r.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	old, ok := s.announced[k]
	if !ok {
		return nil
	}
	p, err := old.apiPath(s.enc(), true)
	if err != nil {
		return fmt.Errorf("withdraw %v: %w", k, err)
	}
	if err := s.srv.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p}); err != nil {
		return fmt.Errorf("withdraw %v: %w", k, err)
	}
	delete(s.announced, k)
	return nil
}

func compareKeys(a, b Key) int {
	if c := cmp.Compare(a.Family, b.Family); c != 0 {
		return c
	}
	if c := cmp.Compare(a.RD.Type, b.RD.Type); c != 0 {
		return c
	}
	if c := cmp.Compare(a.RD.ASN, b.RD.ASN); c != 0 {
		return c
	}
	if c := a.RD.Addr.Compare(b.RD.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.RD.Assigned, b.RD.Assigned); c != 0 {
		return c
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		if c := compareKeys(a.Key(), b.Key()); c != 0 {
			return c
		}
		return a.Peer.Compare(b.Peer)
	})
}

// Announced returns what the speaker advertises, sorted by key.
func (s *Speaker) Announced() []Route {
	s.mu.Lock()
	out := make([]Route, 0, len(s.announced))
	for _, r := range s.announced {
		out = append(out, r.Clone())
	}
	s.mu.Unlock()
	sortRoutes(out)
	return out
}

// Received returns the current best paths of family f learnt from peers
// (not our own), sorted by key; nil after Stop. Paths that do not decode
// into a Route (an EVPN route type other than 5, a malformed one) are left
// out.
func (s *Speaker) Received(f Family) []Route {
	if !f.valid() {
		return nil
	}
	var out []Route
	err := s.srv.ListPath(context.Background(), &api.ListPathRequest{
		TableType:        api.TableType_GLOBAL,
		Family:           f.apiFamily(),
		EnableOnlyBinary: true, // cheaper, and immune to GoBGP's API marshalling gaps
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.Best {
				continue
			}
			if !s.peerOf(p).IsValid() {
				break // our own path is best: nothing received for this key
			}
			r, err := routeFromAPI(p)
			if err != nil {
				if !errors.Is(err, errUnsupported) {
					s.log.Warn("bgp: undecodable best path", "family", f.String(), "prefix", d.Prefix, "peer", s.peerOf(p).String(), "err", err)
				}
				break
			}
			r.Peer = s.peerOf(p)
			out = append(out, r)
			break
		}
	})
	if err != nil {
		return nil
	}
	sortRoutes(out)
	return out
}

// peerOf is the peer a path came from (its real address, not GoBGP's
// loopback name for it); the zero Addr for our own.
func (s *Speaker) peerOf(p *api.Path) netip.Addr {
	a, err := netip.ParseAddr(p.NeighborIp)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}
	}
	return s.addrs.realAddr(a.Unmap())
}

// UpdatePeers makes the configured peers those given (a config reload):
// new ones are added, missing ones removed (Cease), and a changed one is
// removed and added again, which resets its session. Unchanged peers keep
// their sessions.
func (s *Speaker) UpdatePeers(peers []Peer) error {
	norm, err := normalizePeers(peers, s.cfg.ASN)
	if err != nil {
		return fmt.Errorf("bgp peers: %w", err)
	}
	want := make(map[netip.Addr]Peer, len(norm))
	for _, p := range norm {
		want[p.Address] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	var errs []error
	for a, old := range s.peers {
		if p, keep := want[a]; keep && p.equal(old) {
			continue
		}
		_, readd := want[a]
		if err := s.deletePeerLocked(a, readd); err != nil {
			errs = append(errs, fmt.Errorf("removing peer %w", err))
		}
	}
	for i, p := range norm {
		if _, have := s.peers[p.Address]; have {
			continue
		}
		if err := s.addPeerLocked(p, false); err != nil {
			errs = append(errs, fmt.Errorf("peers[%d]: %w", i, err))
		}
	}
	s.cfg.Peers = norm
	return errors.Join(errs...)
}

// Stop ends every session with a NOTIFICATION (Cease), so that peers drop
// our routes at once, and ends the subscriptions. It waits for the
// sessions to close.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.closeListeners()
	relays := s.allRelays()
	for _, r := range relays {
		r.stop(false) // no new sessions; the current ones carry the Cease
	}
	s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	for _, r := range relays {
		r.wait(drainTimeout)
	}
	s.endSubscriptions()
}

func (s *Speaker) closeListeners() {
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// Abandon stops the speaker WITHOUT a NOTIFICATION, as if the process had
// died: the relays close the connections with the peers (a FIN, what the
// kernel sends for a killed process) before GoBGP is told to stop, so its
// Cease never leaves. Peers with graceful restart keep our routes, stale,
// for the restart time; a new speaker started with Restarting refreshes
// them.
func (s *Speaker) Abandon() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.closeListeners()
	relays := s.allRelays()
	n := 0
	for _, r := range relays {
		r.mu.Lock()
		if r.cur != nil {
			n++
		}
		r.mu.Unlock()
		r.stop(true)
	}
	s.log.Info("bgp: abandoned the sessions without NOTIFICATION", "sessions", n)
	s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	for _, r := range relays {
		r.wait(drainTimeout)
	}
	s.endSubscriptions()
}
