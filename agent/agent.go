package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
)

// Options configure the agent.
type Options struct {
	// ConfigPath is the weft.yaml to run; it is read again on Reload.
	ConfigPath string
	// VRouterSocket is the vRouter's control API; "" = /run/weft/vrouter.sock.
	VRouterSocket string
	// APISocket is where the agent serves `weft ctl`; "" = /run/weft/agent.sock.
	APISocket string
	// MetricsAddr, if set, serves Prometheus metrics on /metrics there.
	MetricsAddr string
	// Hostname picks this node's endpoints from the config; "" = os.Hostname.
	Hostname string
	// BGPListenPort overrides bgp.listenPort (tests run several agents).
	BGPListenPort int
	// SyncTimeout bounds how long a restarted agent keeps the remote routes
	// it found in the vRouter while BGP relearns them; 0 = 30 s.
	SyncTimeout time.Duration
	Version     string
	Log         *slog.Logger
	// Ready is called once the agent has programmed the vRouter and
	// started BGP (systemd's READY=1).
	Ready func()
}

// Agent is a running node agent.
type Agent struct {
	opt Options
	log *slog.Logger

	vr       *client.Client
	info     *vrouterv1.InfoReply
	underlay netip.Addr
	tunnels  []packet.Encap
	rmac     packet.MAC

	mu       sync.Mutex
	cfg      *config.Config
	cfgErr   error // the last reload's, if it failed
	routerID netip.Addr
	runtime  map[string]LocalEndpoint // added through the API (CNI), recovered from the vRouter
	received map[bgp.Key]bgp.Route
	// retained are paths withdrawn while their peer was not stable (down,
	// or not yet past End-of-RIB and a grace period): a reflector that
	// restarts flushes what it relays, and forwarding must not stop for it.
	retained  map[bgp.Key]retainedPath
	sessions  map[netip.Addr]*peerState
	installed *Installed
	plan      *Plan
	desired   *Desired
	speaker   *bgp.Speaker
	synced    bool
	stats     reconcileStats

	kick chan struct{}
}

type reconcileStats struct {
	Count    uint64
	Last     time.Time
	Duration time.Duration
	Ops      int
	Err      string
}

// New loads the configuration; Run does the rest. An invalid
// configuration is refused with the path of each fault.
func New(opt Options) (*Agent, error) {
	if opt.VRouterSocket == "" {
		opt.VRouterSocket = "/run/weft/vrouter.sock"
	}
	if opt.APISocket == "" {
		opt.APISocket = "/run/weft/agent.sock"
	}
	if opt.SyncTimeout == 0 {
		opt.SyncTimeout = 30 * time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: hostname: %w", err)
		}
		opt.Hostname = h
	}
	cfg, err := loadConfig(opt.ConfigPath)
	if err != nil {
		return nil, err
	}
	if cfg.BGP == nil {
		return nil, fmt.Errorf("agent: %s: bgp: required (the agent's asn and controllers)", opt.ConfigPath)
	}
	return &Agent{opt: opt, log: opt.Log, cfg: cfg, runtime: map[string]LocalEndpoint{},
		received: map[bgp.Key]bgp.Route{}, retained: map[bgp.Key]retainedPath{}, sessions: map[netip.Addr]*peerState{},
		kick: make(chan struct{}, 1)}, nil
}

func loadConfig(path string) (*config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: config: %w", err)
	}
	c, err := config.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("agent: config %s: %w", path, err)
	}
	return c, nil
}

// Run connects to the vRouter, programs it, runs BGP and serves the local
// API until ctx ends. On return the BGP sessions are abandoned without a
// NOTIFICATION: the controllers keep this node's routes as stale and the
// vRouter keeps forwarding, so a restarted agent takes over seamlessly.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "config", a.opt.ConfigPath, "hostname", a.opt.Hostname, "vrouter", a.opt.VRouterSocket)
	vr, err := client.DialRetry(ctx, a.opt.VRouterSocket)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer vr.Close()
	a.vr = vr
	info, err := vr.Info(ctx, &vrouterv1.InfoRequest{})
	if err != nil {
		return fmt.Errorf("agent: vrouter info: %w", err)
	}
	if err := a.adoptVRouter(info); err != nil {
		return err
	}
	inst, err := a.dump(ctx)
	if err != nil {
		return err
	}
	restarting := len(inst.Ports) > 0
	a.mu.Lock()
	a.installed = inst
	a.recoverRuntimeEndpoints()
	a.routerID = a.chooseRouterID()
	a.synced = !restarting
	a.ensureStaticNetns()
	a.mu.Unlock()
	if !a.routerID.IsValid() {
		return errors.New("agent: no router ID: set node.routerID, or give the vRouter an IPv4 underlay address")
	}
	a.log.Info("vrouter found", "underlay", a.underlay, "encaps", fmt.Sprint(a.tunnels), "ports", len(inst.Ports),
		"routes", len(inst.Routes), "restarting", restarting, "router_id", a.routerID)

	// Local endpoints first, so that their labels exist before they are
	// announced.
	if err := a.reconcile(ctx); err != nil {
		a.log.Warn("first reconcile", "err", err)
	}
	a.mu.Lock()
	routes := announcements(a.cfg, a.endpointsLocked(), a.plan, a.routerID, a.underlay, a.tunnels, a.rmac)
	bcfg := a.bgpConfig(restarting, routes)
	a.mu.Unlock()
	sp, err := bgp.Start(ctx, bcfg)
	if err != nil {
		return fmt.Errorf("agent: bgp: %w", err)
	}
	a.mu.Lock()
	a.speaker = sp
	a.mu.Unlock()
	cancelSub := sp.Subscribe(a.onEvent)
	defer cancelSub()
	defer sp.Abandon()

	api, err := a.serveAPI()
	if err != nil {
		return err
	}
	defer api.Close()
	if a.opt.MetricsAddr != "" {
		m, err := a.serveMetrics(a.opt.MetricsAddr)
		if err != nil {
			return err
		}
		defer m.Close()
	}
	if restarting {
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(a.opt.SyncTimeout):
				a.markSynced("sync timeout")
			}
		}()
	}
	if a.opt.Ready != nil {
		a.opt.Ready()
	}
	a.log.Info("agent ready", "peers", len(bcfg.Peers), "announced", len(routes))
	return a.loop(ctx)
}

// adoptVRouter takes the underlay and tunnels from the vRouter's Info.
func (a *Agent) adoptVRouter(info *vrouterv1.InfoReply) error {
	u, err := netip.ParseAddr(info.GetUnderlay().GetAddress())
	if err != nil {
		return fmt.Errorf("agent: the vRouter has no underlay address (%q): start it with --underlay or --underlay-dev", info.GetUnderlay().GetAddress())
	}
	a.info = info
	a.underlay = u
	a.tunnels = nil
	for _, e := range info.GetUnderlay().GetEncaps() {
		if e := e.Packet(); e != packet.EncapNone {
			a.tunnels = append(a.tunnels, e)
		}
	}
	copy(a.rmac[:], info.GetUnderlay().GetRouterMac())
	return nil
}

func (a *Agent) dump(ctx context.Context) (*Installed, error) {
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	objs, err := a.vr.DumpAll(dctx)
	if err != nil {
		return nil, fmt.Errorf("agent: reading the vRouter's state: %w", err)
	}
	return FromDump(objs)
}

func (a *Agent) chooseRouterID() netip.Addr {
	switch {
	case a.cfg.BGP.RouterID.IsValid():
		return a.cfg.BGP.RouterID
	case a.cfg.Node.RouterID.IsValid():
		return a.cfg.Node.RouterID
	case a.underlay.Is4():
		return a.underlay
	}
	return netip.Addr{}
}

// recoverRuntimeEndpoints takes back the endpoints an earlier agent
// created through the API: ports the vRouter has that the config lacks.
func (a *Agent) recoverRuntimeEndpoints() {
	static := map[string]bool{}
	for _, e := range a.cfg.LocalEndpoints(a.opt.Hostname) {
		static[e.Name] = true
	}
	for _, p := range a.installed.Ports {
		if static[p.GetName()] {
			continue
		}
		vrf := a.installed.VRFs[p.GetVrf()]
		if vrf == nil || len(p.GetAddresses()) == 0 || a.cfg.Network(vrf.GetName()) == nil {
			continue
		}
		addr, err := netip.ParsePrefix(p.GetAddresses()[0])
		if err != nil {
			continue
		}
		ep := LocalEndpoint{Name: p.GetName(), Network: vrf.GetName(), Address: addr, Netns: p.GetNetns()}
		a.runtime[ep.Name] = ep
		a.log.Info("endpoint recovered from the vRouter", "endpoint", ep.Name, "network", ep.Network, "address", ep.Address)
	}
}

// endpointsLocked lists this node's endpoints: the config's, then the
// runtime ones, by name.
func (a *Agent) endpointsLocked() []LocalEndpoint {
	var out []LocalEndpoint
	seen := map[string]bool{}
	for _, e := range a.cfg.LocalEndpoints(a.opt.Hostname) {
		ep := LocalEndpoint{Name: e.Name, Network: e.Network, Address: e.Address, Netns: e.Netns, Anycast: e.Anycast}
		if ep.Netns == "" {
			ep.Netns = e.Name
		}
		if len(e.MAC) == 6 {
			ep.MAC = packet.MAC(e.MAC)
		}
		out = append(out, ep)
		seen[e.Name] = true
	}
	names := make([]string, 0, len(a.runtime))
	for n := range a.runtime {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, a.runtime[n])
	}
	return out
}

func (a *Agent) bgpConfig(restarting bool, routes []bgp.Route) bgp.Config {
	b := a.cfg.BGP
	cfg := bgp.Config{RouterID: a.routerID, ASN: b.ASN, ListenPort: b.ListenPort, GracefulRestart: true,
		Restarting: restarting, Routes: routes, Logger: a.log.With("component", "bgp")}
	if a.opt.BGPListenPort != 0 {
		cfg.ListenPort = a.opt.BGPListenPort
	}
	cfg.Peers = a.peers()
	return cfg
}

func (a *Agent) peers() []bgp.Peer {
	b := a.cfg.BGP
	var peers []bgp.Peer
	for _, c := range b.Controllers {
		p := bgp.Peer{Address: c.Address, Port: c.Port, ASN: c.ASN, Password: c.Password,
			HoldTime:  time.Duration(orInt(c.HoldTime, b.HoldTime)) * time.Second,
			Keepalive: time.Duration(b.Keepalive) * time.Second, ConnectRetry: time.Duration(b.ConnectRetry) * time.Second}
		if a.underlay.Is4() == c.Address.Is4() {
			p.LocalAddress = a.underlay
		}
		peers = append(peers, p)
	}
	return peers
}

func orInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

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

type retainedPath struct {
	route bgp.Route
	since time.Time
}

// peerState is what the agent tracks of a session for retention and for
// knowing when a restarted agent has relearnt its routes.
type peerState struct {
	up    bool
	since time.Time           // established since
	eor   map[bgp.Family]bool // End-of-RIB received since established
}

// stable reports whether p is established, has sent an End-of-RIB since,
// and has been so for grace.
func (a *Agent) stableLocked(addr netip.Addr, grace time.Duration, now time.Time) bool {
	p := a.sessions[addr]
	return p != nil && p.up && len(p.eor) > 0 && now.Sub(p.since) >= grace
}

// onEvent takes BGP's news; it must return quickly.
func (a *Agent) onEvent(ev bgp.Event) {
	now := time.Now()
	switch ev.Kind {
	case bgp.RouteAdded:
		a.mu.Lock()
		a.received[ev.Route.Key()] = ev.Route
		delete(a.retained, ev.Route.Key())
		a.mu.Unlock()
		a.schedule()
	case bgp.RouteWithdrawn:
		k := ev.Route.Key()
		a.mu.Lock()
		if r, ok := a.received[k]; ok {
			delete(a.received, k)
			peer := ev.Route.Peer
			if !peer.IsValid() {
				peer = r.Peer
			}
			// Every withdrawal waits a moment: GoBGP may report the paths a
			// dropped session takes with it before the session's state.
			if r.Peer != peer && peer.IsValid() {
				r.Peer = peer
			}
			a.retained[k] = retainedPath{route: r, since: now}
		}
		a.mu.Unlock()
		a.schedule()
	case bgp.EndOfRIB:
		a.mu.Lock()
		if p := a.sessions[ev.Peer]; p != nil {
			p.eor[ev.Family] = true
		}
		a.mu.Unlock()
		if ev.Family == bgp.VPNv4 {
			// The other families' End-of-RIB follow within moments (they are
			// sent together); deletes wait a little more for them.
			time.AfterFunc(time.Second, func() { a.markSynced("end-of-rib from " + ev.Peer.String()) })
		}
	case bgp.PeerState:
		a.mu.Lock()
		p := a.sessions[ev.Peer]
		if p == nil {
			p = &peerState{}
			a.sessions[ev.Peer] = p
		}
		up := ev.State == bgp.StateEstablished
		if up && !p.up {
			p.since, p.eor = now, map[bgp.Family]bool{}
		}
		p.up = up
		a.mu.Unlock()
		a.log.Info("bgp session", "peer", ev.Peer, "state", ev.State.String(), "reason", ev.Reason)
	}
}

func (a *Agent) markSynced(why string) {
	a.mu.Lock()
	was := a.synced
	a.synced = true
	a.mu.Unlock()
	if !was {
		a.log.Info("routes relearnt; stale remote routes may go now", "why", why)
		a.schedule()
	}
}

// expireRetained lets go of retained paths once their peer is stable
// again (they were not re-announced: they are gone) or they are too old.
func (a *Agent) expireRetained(now time.Time) {
	a.mu.Lock()
	n := 0
	for k, rp := range a.retained {
		p := a.sessions[rp.route.Peer]
		explicit := now.Sub(rp.since) >= confirmWithdraw && p != nil && p.up && len(p.eor) > 0 && p.since.Before(rp.since)
		if explicit || now.Sub(rp.since) > retainMax || a.stableLocked(rp.route.Peer, retainGrace, now) {
			delete(a.retained, k)
			n++
		}
	}
	a.mu.Unlock()
	if n > 0 {
		a.log.Debug("withdrawn paths let go", "paths", n)
		a.schedule()
	}
}

func (a *Agent) hasRetained() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.retained) > 0
}

// allPathsLocked is what desired state is computed from: the received
// best paths, and those retained over a peer's restart.
func (a *Agent) allPathsLocked() map[bgp.Key]bgp.Route {
	if len(a.retained) == 0 {
		return a.received
	}
	all := make(map[bgp.Key]bgp.Route, len(a.received)+len(a.retained))
	for k, rp := range a.retained {
		all[k] = rp.route
	}
	for k, r := range a.received {
		all[k] = r
	}
	return all
}

// schedule asks the loop for a reconcile.
func (a *Agent) schedule() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// loop reconciles when asked (changes come in bursts: wait a moment and
// take them together) and watches the vRouter for a restart.
func (a *Agent) loop(ctx context.Context) error {
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()
	expire := time.NewTicker(100 * time.Millisecond)
	defer expire.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping: sessions abandoned, the vRouter keeps forwarding")
			return nil
		case <-a.kick:
			time.Sleep(10 * time.Millisecond)
			if err := a.reconcile(ctx); err != nil {
				a.log.Warn("reconcile failed; retrying", "err", err)
				retry.Reset(time.Second)
			}
		case <-retry.C:
			a.schedule()
		case <-check.C:
			a.checkVRouter(ctx)
		case now := <-expire.C:
			if a.hasRetained() {
				a.expireRetained(now)
			}
		}
	}
}

// checkVRouter notices a vRouter that restarted (it has lost every port)
// and programs it again from scratch.
func (a *Agent) checkVRouter(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := a.vr.Info(cctx, &vrouterv1.InfoRequest{})
	if err != nil {
		a.log.Warn("vrouter unreachable", "err", err)
		return
	}
	if info.GetStartedUnix() == a.info.GetStartedUnix() {
		return
	}
	a.log.Warn("the vRouter restarted: programming it again", "started", time.Unix(info.GetStartedUnix(), 0))
	if err := a.adoptVRouter(info); err != nil {
		a.log.Error("vrouter", "err", err)
		return
	}
	inst, err := a.dump(ctx)
	if err != nil {
		a.log.Error("vrouter", "err", err)
		return
	}
	a.mu.Lock()
	a.installed = inst
	a.mu.Unlock()
	a.schedule()
}

// maxOpsPerApply keeps each Apply well under gRPC's message limit.
const maxOpsPerApply = 4000

// reconcile computes desired state, applies the difference to the vRouter
// and updates the announcements: puts first, then announcements, then
// withdrawals, then deletes, so that traffic always finds what a route
// promises.
func (a *Agent) reconcile(ctx context.Context) error {
	start := time.Now()
	a.mu.Lock()
	in := Inputs{Config: a.cfg, Underlay: a.underlay, Endpoints: a.endpointsLocked(), Tunnels: a.tunnels,
		Paths: pathsFrom(a.allPathsLocked())}
	d := Compute(in)
	p := MakePlan(d, a.installed)
	synced := a.synced
	a.mu.Unlock()

	var puts, dels []*vrouterv1.Op
	for _, op := range p.Ops {
		if isDelete(op) {
			dels = append(dels, op)
		} else {
			puts = append(puts, op)
		}
	}
	if !synced {
		// Until BGP has relearnt the routes, what a restarted agent finds
		// in the vRouter stays: deleting it would blackhole traffic.
		dels = nil
	}
	err := a.applyOps(ctx, puts)
	if err == nil {
		a.mu.Lock()
		a.plan, a.desired = p, d
		sp := a.speaker
		var want []bgp.Route
		if sp != nil {
			want = announcements(a.cfg, a.endpointsLocked(), p, a.routerID, a.underlay, a.tunnels, a.rmac)
		}
		a.mu.Unlock()
		if sp != nil {
			a.announce(sp, want)
		}
		err = a.applyOps(ctx, dels)
	}
	a.mu.Lock()
	a.stats.Count++
	a.stats.Last, a.stats.Duration, a.stats.Ops = start, time.Since(start), len(puts)+len(dels)
	a.stats.Err = ""
	if err != nil {
		a.stats.Err = err.Error()
	}
	a.mu.Unlock()
	if n := len(puts) + len(dels); n > 0 {
		a.log.Info("reconciled", "ops", n, "kinds", opKinds(puts, dels), "took", time.Since(start).Round(time.Microsecond), "synced", synced)
	}
	return err
}

// applyOps sends ops in batches and mirrors what was applied; a refused
// batch makes the agent read the vRouter back before the next try.
func (a *Agent) applyOps(ctx context.Context, ops []*vrouterv1.Op) error {
	for len(ops) > 0 {
		n := min(len(ops), maxOpsPerApply)
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := a.vr.Apply(actx, &vrouterv1.ApplyRequest{Ops: ops[:n]})
		cancel()
		if err != nil {
			if inst, derr := a.dump(ctx); derr == nil {
				a.mu.Lock()
				a.installed = inst
				a.mu.Unlock()
			}
			return fmt.Errorf("vrouter apply: %w", err)
		}
		a.mu.Lock()
		a.installed.Apply(ops[:n])
		a.mu.Unlock()
		ops = ops[n:]
	}
	return nil
}

// announce makes the speaker advertise exactly want.
func (a *Agent) announce(sp *bgp.Speaker, want []bgp.Route) {
	keep := map[bgp.Key]bool{}
	for _, r := range want {
		keep[r.Key()] = true
		if err := sp.Announce(r); err != nil && !errors.Is(err, bgp.ErrStopped) {
			a.log.Warn("announce", "prefix", r.Prefix, "family", r.Family.String(), "err", err)
		}
	}
	for _, r := range sp.Announced() {
		if !keep[r.Key()] {
			if err := sp.Withdraw(r); err != nil && !errors.Is(err, bgp.ErrStopped) {
				a.log.Warn("withdraw", "prefix", r.Prefix, "family", r.Family.String(), "err", err)
			}
		}
	}
}

// Reload reads the config file again. An invalid file changes nothing:
// the running state stays, and the error (naming each path at fault) is
// returned and shown by `weft ctl status`.
func (a *Agent) Reload() error {
	cfg, err := loadConfig(a.opt.ConfigPath)
	if err == nil && cfg.BGP == nil {
		err = fmt.Errorf("agent: config %s: bgp: required", a.opt.ConfigPath)
	}
	a.mu.Lock()
	if err != nil {
		a.cfgErr = err
		a.mu.Unlock()
		a.log.Error("config reload refused; keeping the running config", "err", err)
		return err
	}
	a.cfg, a.cfgErr = cfg, nil
	a.ensureStaticNetns()
	sp := a.speaker
	peers := a.peers()
	a.mu.Unlock()
	if sp != nil {
		if err := sp.UpdatePeers(peers); err != nil {
			a.log.Warn("bgp peers", "err", err)
		}
	}
	a.log.Info("config reloaded", "config", a.opt.ConfigPath)
	a.schedule()
	return nil
}

// AddEndpoint adds a runtime endpoint (what CNI does for a pod).
func (a *Agent) AddEndpoint(ep LocalEndpoint) error {
	a.mu.Lock()
	n := a.cfg.Network(ep.Network)
	if n == nil {
		a.mu.Unlock()
		return fmt.Errorf("network: no network is called %q", ep.Network)
	}
	if !ep.Address.IsValid() {
		a.mu.Unlock()
		return errors.New("address: required")
	}
	if ep.Name == "" {
		a.mu.Unlock()
		return errors.New("name: required")
	}
	for _, e := range a.endpointsLocked() {
		if e.Name == ep.Name && e != ep {
			a.mu.Unlock()
			return fmt.Errorf("name: endpoint %q exists with other settings", ep.Name)
		}
	}
	if ep.Netns == "" {
		ep.Netns = ep.Name
	}
	a.runtime[ep.Name] = ep
	a.mu.Unlock()
	if err := ensureNetns(ep.Netns); err != nil {
		return err
	}
	a.schedule()
	return nil
}

// RemoveEndpoint removes a runtime endpoint; it is withdrawn first.
func (a *Agent) RemoveEndpoint(name string) error {
	a.mu.Lock()
	_, ok := a.runtime[name]
	delete(a.runtime, name)
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("endpoint %q: not a runtime endpoint of this agent (static endpoints come from the config)", name)
	}
	a.schedule()
	return nil
}

// ensureNetns creates a named namespace for an endpoint that has none
// yet; a path (CNI's /proc/…/ns/net) must exist already.
func ensureNetns(ns string) error {
	if ns == "" || ns[0] == '/' {
		return nil
	}
	return port.EnsureNamedNetns(ns)
}

// ensureStaticNetns creates the namespaces of the config's endpoints.
func (a *Agent) ensureStaticNetns() {
	for _, e := range a.endpointsLocked() {
		if err := ensureNetns(e.Netns); err != nil {
			a.log.Warn("endpoint namespace", "endpoint", e.Name, "netns", e.Netns, "err", err)
		}
	}
}

// sortedNames is for stable output.
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// opKinds summarises ops for the log: "put_route:3 delete_next_hop:1".
func opKinds(lists ...[]*vrouterv1.Op) string {
	counts := map[string]int{}
	var order []string
	for _, ops := range lists {
		for _, op := range ops {
			k := fmt.Sprintf("%T", op.GetOp())
			k = strings.TrimPrefix(k, "*vrouterv1.Op_")
			if counts[k] == 0 {
				order = append(order, k)
			}
			counts[k]++
		}
	}
	var b strings.Builder
	for i, k := range order {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", k, counts[k])
	}
	return b.String()
}
