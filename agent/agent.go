package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/packet"
)

// Options configure the agent.
type Options struct {
	// ConfigPath is the weft.yaml to run; it is read again on Reload.
	ConfigPath string
	// VRouterSocket is the vRouter's control API; "" = /run/weft/vrouter.sock.
	VRouterSocket string
	// APISocket is where the agent serves `weft ctl`; "" = agentapi.DefaultSocket.
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
	// LastGood says where the node keeps its last good config, for the
	// status ("persistent: /dev/vdb1 (WEFT-STATE)"); weft init sets it,
	// "" on a host without weft init.
	LastGood string
	// StateDir is where the agent keeps what must outlive it: the CNI
	// attachments and their addresses (attachments.json); "" = nowhere
	// (a diskless node: they are rebuilt from the vRouter's ports).
	StateDir string
	// PodNetworks, if set (join.kubernetes), names the network of a CNI
	// attachment that names its pod; nil = the request's network.
	PodNetworks PodNetworks
	Version     string
	Log         *slog.Logger
	// Ready is called once the agent has programmed the vRouter and
	// started BGP (systemd's READY=1).
	Ready func()
}

// PodNetworks names a Kubernetes pod's Weft network (bootstrap/kubernetes
// implements it; the agent knows no Kubernetes). "" = none named: the CNI
// request's network applies.
type PodNetworks interface {
	PodNetwork(ctx context.Context, namespace, name string) (string, error)
}

// Agent is a running node agent. Its parts each hold their own lock:
// declared (config and endpoints), rib (BGP's paths, retention and
// graceful restart) and reconciler (the vRouter's state and what is
// announced); the local API and the metrics read them.
type Agent struct {
	opt  Options
	log  *slog.Logger
	decl *declared
	rib  *rib
	r    *reconciler
	att  *attachments
	kick chan struct{}
}

// New loads the configuration; Run does the rest. An invalid
// configuration is refused with the path of each fault.
func New(opt Options) (*Agent, error) {
	if opt.VRouterSocket == "" {
		opt.VRouterSocket = "/run/weft/vrouter.sock"
	}
	if opt.APISocket == "" {
		opt.APISocket = agentapi.DefaultSocket
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
			return nil, fmt.Errorf("hostname: %w", err)
		}
		opt.Hostname = h
	}
	cfg, err := loadConfig(opt.ConfigPath, opt.Hostname)
	if err != nil {
		return nil, err
	}
	if cfg.BGP == nil {
		return nil, fmt.Errorf("%s: bgp: required (the agent's asn and controllers)", opt.ConfigPath)
	}
	a := &Agent{opt: opt, log: opt.Log, kick: make(chan struct{}, 1)}
	a.decl = newDeclared(opt.Hostname, cfg, opt.Log)
	a.rib = newRIB(opt.Log, a.schedule)
	a.r = &reconciler{log: opt.Log, decl: a.decl, rib: a.rib, endpoints: newEndpointCheck(opt.Log)}
	a.att = newAttachments(opt.StateDir, opt.Log)
	return a, nil
}

// loadConfig reads the config file as this node applies it (its nodes
// entry, matched by hostname or a NIC's MAC, see config.ForNode).
func loadConfig(path, hostname string) (*config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := config.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c.ForNode(hostname, localMACs()), nil
}

// localMACs are the MAC addresses of this namespace's interfaces.
func localMACs() []net.HardwareAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []net.HardwareAddr
	for _, i := range ifs {
		if len(i.HardwareAddr) == 6 {
			out = append(out, i.HardwareAddr)
		}
	}
	return out
}

// Run connects to the vRouter, programs it, runs BGP and serves the local
// API until ctx ends. On return the BGP sessions are abandoned without a
// NOTIFICATION: the controllers keep this node's routes as stale and the
// vRouter keeps forwarding, so a restarted agent takes over seamlessly.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "config", a.opt.ConfigPath, "hostname", a.opt.Hostname, "vrouter", a.opt.VRouterSocket)
	vr, err := client.DialRetry(ctx, a.opt.VRouterSocket)
	if err != nil {
		return err // names the socket
	}
	defer vr.Close()
	a.r.vr = vr
	inst, err := a.r.start(ctx)
	if err != nil {
		return err
	}
	restarting := len(inst.Ports) > 0
	a.decl.recoverRuntime(inst)
	a.redeclare()
	var underlay netip.Addr
	var tunnels []packet.Encap
	a.r.view(func(fw *forwarding) { underlay, tunnels = fw.underlay, fw.tunnels })
	routerID := chooseRouterID(a.decl.config(), underlay)
	a.r.setRouterID(routerID)
	a.rib.setSynced(!restarting)
	if !routerID.IsValid() {
		return errors.New("no router ID: set node.routerID, or give the vRouter an IPv4 underlay address")
	}
	a.log.Info("vrouter found", "underlay", underlay, "encaps", fmt.Sprint(tunnels), "ports", len(inst.Ports),
		"routes", len(inst.Routes), "restarting", restarting, "router_id", routerID)

	// Local endpoints first, so that their labels exist before they are
	// announced.
	firstRetry, err := a.r.reconcile(ctx)
	if err != nil {
		a.log.Warn("first reconcile", "err", err)
	}
	var routes []bgp.Route
	a.r.view(func(fw *forwarding) { routes = a.r.announcementsLocked(fw.plan) })
	bcfg := a.bgpConfig(restarting, routes, routerID, underlay)
	sp, err := bgp.Start(ctx, bcfg)
	if err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	a.r.setSpeaker(sp)
	cancelSub := sp.Subscribe(a.rib.onEvent)
	defer cancelSub()
	defer sp.Abandon()

	api, err := newAPIServer(a).serve(a.opt.APISocket)
	if err != nil {
		return err
	}
	defer api.Close()
	if a.opt.MetricsAddr != "" {
		m, err := serveMetrics(a.opt.MetricsAddr, collector{r: a.r, rib: a.rib}, a.log)
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
				a.rib.markSynced("sync timeout")
			}
		}()
	}
	if a.opt.Ready != nil {
		a.opt.Ready()
	}
	a.log.Info("agent ready", "peers", len(bcfg.Peers), "announced", len(routes))
	return a.loop(ctx, firstRetry, err)
}

func chooseRouterID(cfg *config.Config, underlay netip.Addr) netip.Addr {
	switch {
	case cfg.BGP.RouterID.IsValid():
		return cfg.BGP.RouterID
	case cfg.Node.RouterID.IsValid():
		return cfg.Node.RouterID
	case underlay.Is4():
		return underlay
	}
	return netip.Addr{}
}

func (a *Agent) bgpConfig(restarting bool, routes []bgp.Route, routerID, underlay netip.Addr) bgp.Config {
	b := a.decl.config().BGP
	cfg := bgp.Config{RouterID: routerID, ASN: b.ASN, Hostname: a.opt.Hostname, ListenPort: b.ListenPort, GracefulRestart: true,
		Restarting: restarting, Routes: routes, RouteTargetConstraint: b.RTCEnabled(), Logger: a.log.With("component", "bgp")}
	if a.opt.BGPListenPort != 0 {
		cfg.ListenPort = a.opt.BGPListenPort
	}
	cfg.Peers = bgpPeers(b, underlay)
	switch b.TunnelAttribute {
	case config.TunnelAttrAll:
		cfg.TunnelEncap = bgp.TunnelEncapAll
	case config.TunnelAttrNone:
		cfg.TunnelEncap = bgp.TunnelEncapNone
	}
	return cfg
}

func bgpPeers(b *config.BGP, underlay netip.Addr) []bgp.Peer {
	var peers []bgp.Peer
	for _, c := range b.Controllers {
		p := bgp.Peer{Address: c.Address, Port: c.Port, ASN: c.ASN, Password: c.Password,
			HoldTime:  time.Duration(orInt(c.HoldTime, b.HoldTime)) * time.Second,
			Keepalive: time.Duration(b.Keepalive) * time.Second, ConnectRetry: time.Duration(b.ConnectRetry) * time.Second}
		if underlay.Is4() == c.Address.Is4() {
			p.LocalAddress = underlay
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

// schedule asks the loop for a reconcile.
func (a *Agent) schedule() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// loop reconciles when asked (changes come in bursts: wait a moment and
// take them together), when an op the vRouter refused is due again, and
// watches the vRouter for a restart. due and err are the first
// reconcile's.
func (a *Agent) loop(ctx context.Context, due time.Time, err error) error {
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()
	expire := time.NewTicker(100 * time.Millisecond)
	defer expire.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	// after sets the retry timer from a reconcile's outcome: a vRouter
	// that could not be asked is asked again in a second, a refused op
	// when its backoff ends.
	after := func(due time.Time, err error) {
		switch {
		case err != nil:
			a.log.Warn("reconcile failed; retrying", "err", err)
			retry.Reset(time.Second)
		case !due.IsZero():
			retry.Reset(max(time.Until(due), 10*time.Millisecond))
		}
	}
	after(due, err)
	for {
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping: sessions abandoned, the vRouter keeps forwarding")
			return nil
		case <-a.kick:
			time.Sleep(10 * time.Millisecond)
			after(a.r.reconcile(ctx))
		case <-retry.C:
			a.schedule()
		case <-check.C:
			if a.r.checkVRouter(ctx) {
				a.schedule()
			}
		case now := <-expire.C:
			if a.rib.hasRetained() {
				a.rib.expireRetained(now)
			}
		}
	}
}

// Reload reads the config file again. An invalid file changes nothing:
// the running state stays, and the error (naming each path at fault) is
// returned and shown by `weft ctl status`.
func (a *Agent) Reload() error {
	cfg, err := loadConfig(a.opt.ConfigPath, a.opt.Hostname)
	if err == nil && cfg.BGP == nil {
		err = fmt.Errorf("config %s: bgp: required", a.opt.ConfigPath)
	}
	if err == nil {
		var underlay, routerID netip.Addr
		a.r.view(func(fw *forwarding) { underlay, routerID = fw.underlay, fw.routerID })
		if e := needsRestart(a.decl.config(), cfg, routerID, underlay); e != nil {
			err = fmt.Errorf("config %s: %w", a.opt.ConfigPath, e)
		}
	}
	a.decl.reloaded(cfg, err)
	if err != nil {
		a.log.Error("config reload refused; keeping the running config", "err", err)
		return err
	}
	var sp *bgp.Speaker
	var peers []bgp.Peer
	a.r.view(func(fw *forwarding) { sp, peers = fw.speaker, bgpPeers(cfg.BGP, fw.underlay) })
	if sp != nil {
		if err := sp.UpdatePeers(peers); err != nil {
			a.log.Warn("bgp peers", "err", err)
		}
	}
	a.log.Info("config reloaded", "config", a.opt.ConfigPath)
	a.schedule()
	return nil
}

// needsRestart refuses a reload that changes what the BGP speaker was
// started with (GoBGP cannot change its ASN, router ID or listening port
// while it runs): accepting it would show the new value while the
// sessions keep the old one.
func needsRestart(running, next *config.Config, routerID, underlay netip.Addr) error {
	var diffs []string
	if a, b := running.BGP.ASN, next.BGP.ASN; a != b {
		diffs = append(diffs, fmt.Sprintf("bgp.asn %d -> %d", a, b))
	}
	if id := chooseRouterID(next, underlay); routerID.IsValid() && id != routerID {
		diffs = append(diffs, fmt.Sprintf("router ID %v -> %v", routerID, id))
	}
	if a, b := running.BGP.ListenPort, next.BGP.ListenPort; a != b {
		diffs = append(diffs, fmt.Sprintf("bgp.listenPort %d -> %d", a, b))
	}
	if a, b := running.BGP.RTCEnabled(), next.BGP.RTCEnabled(); a != b {
		// The rtc family is in the OPEN: the sessions would have to reset.
		diffs = append(diffs, fmt.Sprintf("bgp.routeTargetConstraint %v -> %v", a, b))
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: needs a restart of the agent (weft agent); the running config is kept", strings.Join(diffs, ", "))
}

// redeclare takes the CNI attachments back: those the vRouter has are
// adopted by the IPAM (a diskless node's only record of them); those only
// the state file has (a vRouter that restarted while the agent was down)
// are declared again while their namespace exists, and otherwise keep
// their addresses until CNI's DEL or GC.
func (a *Agent) redeclare() {
	eps, _ := a.decl.endpoints()
	for _, rec := range a.att.adopt(eps) {
		if _, err := os.Stat(rec.Netns); err != nil {
			a.log.Warn("attachment's namespace is gone; its addresses stay reserved until CNI's DEL or GC",
				"endpoint", rec.name(), "err", err)
			continue
		}
		if _, err := a.decl.add(rec.endpoint()); err != nil {
			a.log.Warn("attachment not declared again", "endpoint", rec.name(), "err", err)
		}
	}
}

// AddEndpoint adds a runtime endpoint (what CNI does for a pod).
func (a *Agent) AddEndpoint(ep LocalEndpoint) error {
	ep, err := a.decl.add(ep)
	if err != nil {
		return err
	}
	if err := ensureNetns(ep.Netns); err != nil {
		return err
	}
	a.schedule()
	return nil
}

// RemoveEndpoint removes a runtime endpoint; it is withdrawn first.
func (a *Agent) RemoveEndpoint(name string) error {
	if !a.decl.remove(name) {
		return fmt.Errorf("endpoint %q: not a runtime endpoint of this agent (static endpoints come from the config)", name)
	}
	a.schedule()
	return nil
}
