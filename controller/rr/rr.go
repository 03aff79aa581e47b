// Package rr is the controller's embedded route reflector: an iBGP route
// reflector (GoBGP v3) that every node of the fleet dials in to.
package rr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/controller/inventory"

	"github.com/weftnet/weft/controller/fleetapi"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/internal/bgpguard"
)

// Config configures the embedded route reflector: an iBGP route
// reflector (GoBGP v3) that accepts a session from every node that dials
// in from Clients, and reflects VPNv4, VPNv6, EVPN, IPv4 and IPv6 unicast
// routes between them.
type Config struct {
	// Listen is where sessions are accepted; an invalid or unspecified
	// address means every address of the host (port 0 means 179).
	Listen netip.AddrPort
	// ASN; 0 = the fleet's bgp.asn. Sessions are iBGP: the nodes' ASN.
	ASN uint32
	// RouterID (IPv4); zero = Listen's address. It is also the cluster ID.
	RouterID netip.Addr
	// Clients are the prefixes sessions are accepted from (dynamic
	// neighbours). Empty = the address of every inventory node, each as a
	// host prefix, following inventory reloads.
	Clients []netip.Prefix
}

const (
	peerGroup = "weft-nodes"
	// Timers toward the nodes: the nodes dial, so connect retry only
	// matters for GoBGP's own bookkeeping.
	rrHoldTime     = 90
	rrKeepalive    = 30
	rrConnectRetry = 5
	// rrRestartTime is what the reflector advertises as a graceful-restart
	// helper; it restarts with a clean stop, not gracefully.
	rrRestartTime = 120
)

// rrFamilies are the families the reflector carries, as GoBGP names them.
var rrFamilies = []*api.Family{
	{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_MPLS_VPN},  // l3vpn-ipv4-unicast
	{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_MPLS_VPN}, // l3vpn-ipv6-unicast
	{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN},   // l2vpn-evpn
	{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},   // ipv4-unicast
	{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST},  // ipv6-unicast
}

// Settings are a Config resolved against the inventory.
type Settings struct {
	Listen   netip.AddrPort
	ASN      uint32
	RouterID netip.Addr
	Password string // TCP MD5, from the fleet's bgp.controllers entry
	Clients  []netip.Prefix
	Fixed    bool     // clients given, not from the inventory
	Warnings []string // for the log
}

// Info describes the settings for the fleet view.
func (s Settings) Info() *fleetapi.ReflectorInfo {
	return &fleetapi.ReflectorInfo{Listen: listenString(s.Listen), ASN: s.ASN, RouterID: s.RouterID, Clients: slices.Clone(s.Clients), MD5: s.Password != ""}
}

// listenString writes a listen address; ":179" for all addresses.
func listenString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return fmt.Sprintf(":%d", ap.Port())
	}
	return ap.String()
}

// Resolve fills in what the flags leave to the fleet's weft.yaml
// and checks that the two agree: the nodes dial the controllers the
// weft.yaml lists, with its ASN and password.
func Resolve(c Config, inv *inventory.Inventory) (Settings, error) {
	s := Settings{Listen: c.Listen, ASN: c.ASN, RouterID: c.RouterID}
	if s.Listen.Port() == 0 {
		s.Listen = netip.AddrPortFrom(s.Listen.Addr(), 179)
	}
	bgp := inv.Config.BGP
	switch {
	case s.ASN == 0 && bgp == nil:
		return s, errors.New("reflector: ASN: not given, and the fleet's weft.yaml has no bgp section to take it from")
	case s.ASN == 0:
		s.ASN = bgp.ASN
	case bgp != nil && bgp.ASN != s.ASN:
		return s, fmt.Errorf("reflector: ASN %d, but the fleet's bgp.asn is %d: the reflector is iBGP, in the nodes' AS", s.ASN, bgp.ASN)
	}
	la := s.Listen.Addr()
	if !s.RouterID.IsValid() {
		if !la.Is4() || la.IsUnspecified() {
			return s, fmt.Errorf("reflector: router ID: not given, and the listen address %s is not a specific IPv4 address to take it from", listenString(s.Listen))
		}
		s.RouterID = la
	}
	if !s.RouterID.Is4() || s.RouterID.IsUnspecified() {
		return s, fmt.Errorf("reflector: router ID %v: want a non-zero IPv4 address", s.RouterID)
	}
	// The controllers entry that is this reflector: by the address the
	// nodes dial, else by router ID.
	if bgp != nil {
		found := -1
		for i, ctl := range bgp.Controllers {
			if (la.IsValid() && ctl.Address == la) || ctl.Address == s.RouterID {
				found = i
				break
			}
		}
		if found < 0 {
			var addrs []string
			for _, ctl := range bgp.Controllers {
				addrs = append(addrs, ctl.Address.String())
			}
			s.Warnings = append(s.Warnings, fmt.Sprintf("no entry of the fleet's bgp.controllers (%s) is this reflector (listen %s, router ID %v): the nodes will not dial it, and no TCP MD5 password is used", strings.Join(addrs, ", "), listenString(s.Listen), s.RouterID))
		} else {
			ctl := bgp.Controllers[found]
			if ctl.ASN != 0 && ctl.ASN != s.ASN {
				return s, fmt.Errorf("reflector: the fleet's bgp.controllers[%d].asn is %d, but the reflector's ASN is %d", found, ctl.ASN, s.ASN)
			}
			port := ctl.Port
			if port == 0 {
				port = 179
			}
			if port != int(s.Listen.Port()) {
				s.Warnings = append(s.Warnings, fmt.Sprintf("the fleet's bgp.controllers[%d] has port %d, but the reflector listens on %d: the nodes will not reach it", found, port, s.Listen.Port()))
			}
			s.Password = ctl.Password
		}
	}
	if len(c.Clients) > 0 {
		s.Clients, s.Fixed = slices.Clone(c.Clients), true
		for i, p := range s.Clients {
			s.Clients[i] = p.Masked()
		}
	} else {
		s.Clients = inventoryClients(inv)
		for _, n := range inv.Nodes {
			if !n.Address.IsValid() {
				s.Warnings = append(s.Warnings, fmt.Sprintf("node %s has no address in the inventory: without --bgp-clients its BGP session is refused", n.Name))
			}
		}
	}
	return s, nil
}

func inventoryClients(inv *inventory.Inventory) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range inv.Nodes {
		if n.Address.IsValid() {
			out = append(out, netip.PrefixFrom(n.Address, n.Address.BitLen()))
		}
	}
	return out
}

// Reflector is the running route reflector. GoBGP never talks to a node
// directly: the reflector accepts the nodes' connections itself and
// relays each through the BGP guard (internal/bgpguard) to GoBGP, which
// listens on the guard's loopback hop only and knows each node by a
// loopback address of its own (a dynamic neighbour of hopClients).
type Reflector struct {
	srv       *server.BgpServer
	log       *slog.Logger
	set       Settings
	stop      context.CancelFunc // ends the watch
	hop       *bgpguard.Hop
	listeners []*net.TCPListener

	mu       sync.Mutex
	clients  []netip.Prefix
	sessions map[netip.Addr]*fleetapi.ReflectorSession // by the node's real address
	// lo and real map a node's address to GoBGP's name for it and back;
	// kept for the process's life, so that a node keeps its name.
	lo, real map[netip.Addr]netip.Addr
	relayed  map[*bgpguard.Session]struct{}
	closed   bool
}

// hopClients are the names GoBGP knows nodes by (bgpguard.HopAddr).
var hopClients = netip.MustParsePrefix("127.66.0.0/16")

// Start starts the reflector: it listens, and accepts sessions from
// set.Clients, until Shutdown.
func Start(ctx context.Context, set Settings, log *slog.Logger) (*Reflector, error) {
	srv := server.NewBgpServer(server.LoggerOption(bgp.NewGoBGPLogger(log, reflectorLog)))
	// GoBGP's main loop cannot be ended: after StopBgp it idles.
	go srv.Serve()
	hop, err := bgpguard.StartGoBGP(ctx, srv, &api.Global{Asn: set.ASN, RouterId: set.RouterID.String()})
	if err != nil {
		return nil, fmt.Errorf("reflector: %w", err)
	}
	var listeners []*net.TCPListener
	addrs := []netip.Addr{set.Listen.Addr()}
	if a := set.Listen.Addr(); !a.IsValid() || a.IsUnspecified() {
		addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	for _, a := range addrs {
		ln, err := bgpguard.Listen(a, int(set.Listen.Port()))
		if err != nil {
			if len(addrs) == 2 && a.Is6() {
				log.Warn("reflector: not listening on IPv6", "err", err)
				continue
			}
			for _, l := range listeners {
				l.Close()
			}
			srv.StopBgp(context.Background(), &api.StopBgpRequest{})
			return nil, fmt.Errorf("reflector: listening on %s: %w", listenString(set.Listen), err)
		}
		listeners = append(listeners, ln)
	}
	r := &Reflector{srv: srv, log: log, set: set, hop: hop, listeners: listeners,
		sessions: map[netip.Addr]*fleetapi.ReflectorSession{},
		lo:       map[netip.Addr]netip.Addr{}, real: map[netip.Addr]netip.Addr{},
		relayed: map[*bgpguard.Session]struct{}{},
	}
	wctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	if err := srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, r.onEvent); err != nil {
		r.Shutdown()
		return nil, fmt.Errorf("reflector: watching sessions: %w", err)
	}
	pg := &api.PeerGroup{
		// The password is the nodes' (the reflector's listeners, in
		// SetClients); the hop has its own key.
		Conf: &api.PeerGroupConf{PeerGroupName: peerGroup, PeerAsn: set.ASN},
		RouteReflector: &api.RouteReflector{
			RouteReflectorClient:    true,
			RouteReflectorClusterId: set.RouterID.String(),
		},
		// Helper only: a node whose agent restarts keeps its routes
		// (stale) at the reflector, so the other nodes keep them too.
		GracefulRestart: &api.GracefulRestart{Enabled: true, HelperOnly: true, RestartTime: rrRestartTime},
		Timers:          &api.Timers{Config: &api.TimersConfig{HoldTime: rrHoldTime, KeepaliveInterval: rrKeepalive, ConnectRetry: rrConnectRetry}},
		Transport:       &api.Transport{PassiveMode: true},
	}
	for _, f := range rrFamilies {
		pg.AfiSafis = append(pg.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: f, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
		})
	}
	if err := srv.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: pg}); err != nil {
		r.Shutdown()
		return nil, fmt.Errorf("reflector: peer group: %w", err)
	}
	if err := srv.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{Prefix: hopClients.String(), PeerGroup: peerGroup}}); err != nil {
		r.Shutdown()
		return nil, fmt.Errorf("reflector: accepting the relayed sessions: %w", err)
	}
	if err := r.SetClients(ctx, set.Clients); err != nil {
		r.Shutdown()
		return nil, err
	}
	for _, ln := range listeners {
		go r.accept(ln)
	}
	return r, nil
}

// accept relays the connections of the nodes ln accepts to GoBGP
// through the guard.
func (r *Reflector) accept(ln *net.TCPListener) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("reflector: accept", "addr", ln.Addr().String(), "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go r.relay(c)
	}
}

func (r *Reflector) relay(c *net.TCPConn) {
	ra, la := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	r.mu.Lock()
	if r.closed || !slices.ContainsFunc(r.clients, func(p netip.Prefix) bool { return p.Contains(ra) }) {
		r.mu.Unlock()
		r.log.Info("reflector: closed a connection from an address that is no client", "peer", ra.String())
		c.Close()
		return
	}
	lo, ok := r.lo[ra]
	if !ok {
		lo = bgpguard.HopAddr(uint32(len(r.lo) + 1))
		r.lo[ra], r.real[lo] = lo, ra
	}
	r.mu.Unlock()
	gc, err := r.hop.Dial(lo)
	if err != nil {
		r.log.Warn("reflector: cannot reach GoBGP", "peer", ra.String(), "err", err)
		c.Close()
		return
	}
	sess := bgpguard.NewSession(c, gc, bgpguard.Options{
		Log:                  r.log.With("peer", ra.String()),
		BlockLoopbackNextHop: bgpguard.LoopbackNextHopBlocked(netip.Addr{}, la, ra),
	})
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		sess.Close()
		return
	}
	r.relayed[sess] = struct{}{}
	r.mu.Unlock()
	sess.Run()
	r.mu.Lock()
	delete(r.relayed, sess)
	r.mu.Unlock()
}

// realAddr is the node GoBGP calls a; a itself if none.
func (r *Reflector) realAddr(a netip.Addr) netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.realLocked(a)
}

func (r *Reflector) realLocked(a netip.Addr) netip.Addr {
	if ra, ok := r.real[a]; ok {
		return ra
	}
	return a
}

// SetClients makes the dynamic-neighbour prefixes those given; sessions
// from addresses no prefix covers any more are closed (Cease).
func (r *Reflector) SetClients(ctx context.Context, want []netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, p := range want {
		if slices.Contains(r.clients, p) {
			continue
		}
		if err := r.listenerMD5(p, r.set.Password); err != nil {
			errs = append(errs, fmt.Errorf("reflector: accepting sessions from %v: %w", p, err))
			continue
		}
		r.clients = append(r.clients, p)
	}
	var kept []netip.Prefix
	for _, p := range r.clients {
		if slices.Contains(want, p) {
			kept = append(kept, p)
			continue
		}
		if err := r.listenerMD5(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("reflector: no longer accepting sessions from %v: %w", p, err))
		}
	}
	r.clients = kept
	var drop []netip.Addr
	r.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		lo := peerAddr(p)
		a := r.realLocked(lo)
		if a.IsValid() && !slices.ContainsFunc(r.clients, func(c netip.Prefix) bool { return c.Contains(a) }) {
			drop = append(drop, lo)
		}
	})
	for _, lo := range drop {
		a := r.realLocked(lo)
		r.log.Info("reflector: closing the session of a node no longer accepted", "peer", a.String())
		if err := r.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: lo.String()}); err != nil {
			errs = append(errs, fmt.Errorf("reflector: closing the session with %v: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// listenerMD5 sets (or, with an empty password, removes) the key for a
// prefix of nodes on every listener; nothing without a password.
func (r *Reflector) listenerMD5(p netip.Prefix, password string) error {
	if r.set.Password == "" {
		return nil
	}
	for _, ln := range r.listeners {
		if err := bgpguard.ListenerMD5(ln, p, password); err != nil {
			return fmt.Errorf("%w (Go >= 1.24 listens with MPTCP, which has no TCP MD5: build with //go:debug multipathtcp=0)", err)
		}
	}
	return nil
}

// peerAddr is the address GoBGP knows a peer by (for a node, its name
// on the hop).
func peerAddr(p *api.Peer) netip.Addr {
	s := ""
	if p.State != nil {
		s = p.State.NeighborAddress
	}
	if s == "" && p.Conf != nil {
		s = p.Conf.NeighborAddress
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

var sessionStates = map[api.PeerState_SessionState]string{
	api.PeerState_UNKNOWN:     "unknown",
	api.PeerState_IDLE:        "idle",
	api.PeerState_CONNECT:     "connect",
	api.PeerState_ACTIVE:      "active",
	api.PeerState_OPENSENT:    "opensent",
	api.PeerState_OPENCONFIRM: "openconfirm",
	api.PeerState_ESTABLISHED: "established",
}

func stateName(s api.PeerState_SessionState) string {
	if n, ok := sessionStates[s]; ok {
		return n
	}
	return "unknown"
}

// onEvent runs on GoBGP's watcher goroutine: record and return.
func (r *Reflector) onEvent(ev *api.WatchEventResponse) {
	pe := ev.GetPeer()
	if pe == nil || pe.Peer == nil || pe.Peer.State == nil || pe.Type == api.WatchEventResponse_PeerEvent_END_OF_INIT {
		return
	}
	a := r.realAddr(peerAddr(pe.Peer))
	if !a.IsValid() {
		return
	}
	state := stateName(pe.Peer.State.SessionState)
	rid, _ := netip.ParseAddr(pe.Peer.State.RouterId)
	r.mu.Lock()
	s := r.sessions[a]
	if s == nil {
		s = &fleetapi.ReflectorSession{Peer: a}
		r.sessions[a] = s
	}
	changed := s.State != state
	if changed {
		s.State, s.Since = state, time.Now()
	}
	if rid.IsValid() && !rid.IsUnspecified() {
		s.RouterID = rid
	}
	r.mu.Unlock()
	if changed && (state == "established" || state == "idle" || state == "active") {
		r.log.Info("reflector: session", "peer", a.String(), "state", state, "router_id", s.RouterID.String())
	}
}

// Sessions returns every session the reflector has had, with the routes
// accepted from those that are up.
func (r *Reflector) Sessions() []fleetapi.ReflectorSession {
	accepted := map[netip.Addr]uint64{}
	live := map[netip.Addr]string{}
	r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		a := r.realAddr(peerAddr(p))
		if p.State != nil {
			live[a] = stateName(p.State.SessionState)
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				accepted[a] += af.State.Accepted
			}
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]fleetapi.ReflectorSession, 0, len(r.sessions))
	for a, s := range r.sessions {
		c := *s
		if st, ok := live[a]; ok && st != c.State {
			// The watch lags the FSM by an event at most; the FSM wins.
			c.State = st
		} else if !ok && c.State == "established" {
			c.State = "idle" // a dynamic peer is gone once its session is
		}
		c.Routes = accepted[a]
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b fleetapi.ReflectorSession) int { return a.Peer.Compare(b.Peer) })
	return out
}

// Shutdown closes the sessions (Cease) and stops listening.
func (r *Reflector) Shutdown() {
	for _, ln := range r.listeners {
		ln.Close()
	}
	r.stop()
	// GoBGP's Cease goes out through the relays, which then end.
	r.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		n := len(r.relayed)
		r.mu.Unlock()
		if n == 0 {
			break
		}
	}
	r.mu.Lock()
	r.closed = true
	for s := range r.relayed {
		s.Close()
	}
	r.mu.Unlock()
}

// reflectorLog fits the GoBGP log adapter to a reflector. GoBGP's Info
// lines are per-session chatter: they go to debug, and the reflector logs
// session changes itself.
var reflectorLog = bgp.GoBGPLog{Prefix: "reflector: ", InfoLevel: slog.LevelDebug, Routine: reflectorRoutine}

// reflectorRoutine caps GoBGP lines that are routine for a reflector.
func reflectorRoutine(msg string, f gobgplog.Fields) (slog.Level, bool) {
	switch {
	case msg == "failed to close existing tcp connection":
		// A node's connection that died under GoBGP (its agent was
		// killed), closed again as the session is torn down.
		return slog.LevelDebug, true
	case msg == "received notification" && fmt.Sprint(f["Code"]) == "6":
		return slog.LevelInfo, true // Cease: a node's agent stopping cleanly
	}
	return 0, false
}

// Info describes the running reflector for the fleet view: its settings,
// the sessions up and the prefixes it accepts now.
func (r *Reflector) Info(sessions []fleetapi.ReflectorSession) *fleetapi.ReflectorInfo {
	info := r.set.Info()
	for _, ss := range sessions {
		if ss.Established() {
			info.Established++
		}
	}
	r.mu.Lock()
	info.Clients = slices.Clone(r.clients)
	r.mu.Unlock()
	return info
}

// PrefixList writes prefixes for the log: "10.0.0.1/32,10.0.0.2/32".
func PrefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
