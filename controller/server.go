package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/controller/access"
	"github.com/weftnet/weft/controller/boot"
	"github.com/weftnet/weft/controller/check"
	"github.com/weftnet/weft/controller/dhcp"
	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/httpx"
	"github.com/weftnet/weft/controller/identity"
	"github.com/weftnet/weft/controller/inventory"
	"github.com/weftnet/weft/controller/metadata"
	"github.com/weftnet/weft/controller/pki"
	"github.com/weftnet/weft/controller/rr"
)

// Options configure a Server.
type Options struct {
	// Inventory is the inventory file. It is read again on Reload and,
	// while Serve runs, whenever it (or its configFile) changes.
	Inventory string
	// Reflector runs the embedded route reflector; nil = none.
	Reflector *rr.Config
	// DHCP runs the DHCPv4 server for the inventory's nodes; nil = none.
	DHCP *dhcp.Config
	// Boot serves the boot files of `weft image build` and an iPXE
	// script; nil = none.
	Boot *boot.Config
	// State is the controller's state directory (created 0700): its CA
	// (pki.KeyFile, pki.CertFile), the operator token
	// (access.TokenFile), kept across restarts, and the operators' unix
	// socket (SocketFile). Required.
	State string
	// Log; nil = slog.Default().
	Log *slog.Logger
	// WatchInterval is how often Serve checks the inventory files for
	// changes; 0 = 1 s, negative = never.
	WatchInterval time.Duration

	now func() time.Time // tests
}

// Server is the controller: metadata service, fleet view, reflector,
// DHCP and boot files, reachability checks.
type Server struct {
	opt    Options
	log    *slog.Logger
	now    func() time.Time
	inv    atomic.Pointer[inventory.Inventory]
	state  *fleet.State
	rrSet  *rr.Settings // nil without the reflector
	boot   *boot.Files  // nil without boot files
	checks *check.Store
	ids    *identity.Store // the nodes' credentials and armed claims
	ca     *pki.CA
	// operator admits operators to the fleet view, the probes and the
	// web page.
	operator *access.Operator
	// listen is the HTTP listener's address while Serve runs: the port
	// (and, when bound to one, the address) of the URLs DHCP hands out.
	listen atomic.Pointer[netip.AddrPort]
	// quit is closed when Serve stops, to end long polls.
	quit     chan struct{}
	quitOnce sync.Once

	mu     sync.Mutex
	invErr string                // why the inventory's current content was refused
	stamps map[string]fileStamp  // of the files the last load read
	rr     *rr.Reflector         // while Serve runs
	dhcp   *dhcp.Server          // while Serve runs
	leases map[string]netip.Addr // by node: what the controller's DHCP leased it

	reloadMu sync.Mutex
}

// New loads the inventory (an invalid one is an error) and checks the
// reflector's settings against it. Nothing listens until Serve.
func New(opt Options) (*Server, error) {
	if abs, err := filepath.Abs(opt.Inventory); err == nil {
		opt.Inventory = abs // the path operators read in errors, from anywhere
	}
	s := &Server{opt: opt, log: opt.Log, now: opt.now, state: fleet.NewState(), checks: check.NewStore(), ids: identity.NewStore(), quit: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	// Stamped before reading, so a change while reading is seen later.
	s.stamps = preStamps(opt.Inventory)
	inv, err := inventory.Load(opt.Inventory)
	if err != nil {
		return nil, err
	}
	s.inv.Store(inv)
	if err := s.loadState(); err != nil {
		return nil, err
	}
	// Every node with an inventory address may claim once from it: a
	// controller keeps credentials in memory, so nodes that run on
	// through its restart claim again (see DESIGN.md).
	s.ids.ArmAll(inv, func(string) bool { return true }, identity.ByStart, s.now())
	if opt.Reflector != nil {
		set, err := rr.Resolve(*opt.Reflector, inv)
		if err != nil {
			return nil, err
		}
		if err := s.perNodePasswords(&set); err != nil {
			return nil, err
		}
		s.rrSet = &set
	}
	if opt.DHCP != nil {
		if err := dhcp.Validate(*opt.DHCP); err != nil {
			return nil, err
		}
	}
	if opt.Boot != nil {
		bc := *opt.Boot
		bc.CA = s.ca.Pin()
		b, err := boot.New(bc)
		if err != nil {
			return nil, err
		}
		s.boot = b
	}
	return s, nil
}

// loadState reads (on the first start: creates) the CA and the operator
// token in the state directory.
func (s *Server) loadState() error {
	dir := s.opt.State
	if dir == "" {
		return errors.New("the controller's state directory is required")
	}
	ca, created, err := pki.Load(dir)
	if err != nil {
		return fmt.Errorf("state %s: %w", dir, err)
	}
	if created {
		s.log.Info("created the controller's CA: nodes pin it with weft.ca=", "ca", ca.Pin().String(), "file", filepath.Join(dir, pki.CertFile))
	}
	token, created, err := access.LoadToken(dir)
	if err != nil {
		return fmt.Errorf("state %s: %w", dir, err)
	}
	if created {
		s.log.Info("created the operator token", "file", filepath.Join(dir, access.TokenFile))
	}
	s.ca, s.operator = ca, access.NewOperator(token)
	return nil
}

// CA is the pin of the controller's CA (weft.ca=).
func (s *Server) CA() fleetapi.Pin { return s.ca.Pin() }

// Inventory returns the inventory being served.
func (s *Server) Inventory() *inventory.Inventory { return s.inv.Load() }

// Reload reads the inventory again. A refused one leaves the last good
// inventory in service; the error (also logged, and shown in the fleet
// view) says why.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	path := s.opt.Inventory
	pre := preStamps(path)
	inv, err := inventory.Load(path)
	if err != nil {
		s.mu.Lock()
		s.invErr = err.Error()
		s.stamps = pre
		s.mu.Unlock()
		s.log.Error("inventory refused; serving the last good one", "inventory", path, "err", err)
		return err
	}
	var set *rr.Settings
	if s.rrSet != nil {
		rs, err := rr.Resolve(s.reflectorConfig(), inv)
		if err != nil {
			s.mu.Lock()
			s.invErr = err.Error()
			s.stamps = pre
			s.mu.Unlock()
			s.log.Error("inventory refused: it does not agree with the reflector; serving the last good one", "inventory", path, "err", err)
			return err
		}
		set = &rs
	}
	old := s.inv.Swap(inv)
	s.state.Prune(inv)
	s.checks.Forget(inv, s.now())
	s.ids.Forget(func(node string) bool { return inv.Node(node) != nil })
	s.ids.ArmAll(inv, func(node string) bool { return old == nil || old.Node(node) == nil }, identity.ByStart, s.now())
	s.mu.Lock()
	s.invErr = ""
	s.stamps = pre
	refl, d := s.rr, s.dhcp
	if set != nil && !set.Fixed {
		// What a reflector started later accepts (Serve starts it under
		// reloadMu, so it sees this or is running already).
		s.rrSet.Clients = set.Clients
	}
	s.mu.Unlock()
	if d != nil {
		defer d.Warnings()
	}
	added, removed := nodeDiff(old, inv)
	s.log.Info("inventory reloaded", "inventory", path, "nodes", len(inv.Nodes), "added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
	if set != nil {
		if set.Password != s.rrSet.Password && (s.rrSet.Secret == nil || s.rrSet.FleetPassword) {
			s.log.Warn("reflector: the fleet's BGP password changed; restart the controller to apply it (sessions keep the old one)")
		}
		for _, w := range set.Warnings {
			s.log.Warn("reflector: " + w)
		}
		if refl != nil && !set.Fixed {
			if err := refl.SetClients(context.Background(), set.Clients); err != nil {
				s.log.Error("reflector: updating the accepted prefixes", "err", err)
			}
		}
		s.keyNodes()
	}
	return nil
}

func (s *Server) reflectorConfig() rr.Config {
	c := *s.opt.Reflector
	if c.ASN == 0 {
		c.ASN = s.rrSet.ASN // as started: a reload cannot change it
	}
	if !c.RouterID.IsValid() {
		c.RouterID = s.rrSet.RouterID
	}
	return c
}

func nodeDiff(old, cur *inventory.Inventory) (added, removed []string) {
	for _, n := range cur.Nodes {
		if old == nil || old.Node(n.Name) == nil {
			added = append(added, n.Name)
		}
	}
	if old != nil {
		for _, n := range old.Nodes {
			if cur.Node(n.Name) == nil {
				removed = append(removed, n.Name)
			}
		}
	}
	return added, removed
}

// fileStamp tells whether a file changed: what stat says (nanosecond
// modification times make a same-size rewrite visible).
type fileStamp struct {
	mod  time.Time
	size int64
	err  bool
}

func stampOf(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: true}
	}
	return fileStamp{mod: st.ModTime(), size: st.Size()}
}

// preStamps stamps the inventory and the configFile it names (even when
// the inventory is refused: fixing that file must trigger a reload too).
// Taken before a load, so that a change during the load is seen later.
func preStamps(path string) map[string]fileStamp {
	m := map[string]fileStamp{}
	for _, f := range inventory.Files(path) {
		m[f] = stampOf(f)
	}
	return m
}

// changed reports whether any watched file differs from its stamp.
func (s *Server) changed() bool {
	s.mu.Lock()
	stamps := s.stamps
	s.mu.Unlock()
	for path, st := range stamps {
		if stampOf(path) != st {
			return true
		}
	}
	return false
}

// Fleet returns the fleet view now.
func (s *Server) Fleet() fleetapi.Fleet {
	inv := s.inv.Load()
	var info *fleetapi.ReflectorInfo
	var sessions []fleetapi.ReflectorSession
	s.mu.Lock()
	refl, invErr := s.rr, s.invErr
	if refl == nil && s.rrSet != nil {
		info = s.rrSet.Info() // configured, not (yet) running
		sessions = []fleetapi.ReflectorSession{}
	}
	s.mu.Unlock()
	if refl != nil {
		sessions = refl.Sessions()
		info = refl.Info(sessions)
	}
	f := s.state.Snapshot(inv, info, sessions, s.now())
	f.InventoryError = invErr
	if s.boot != nil {
		f.Boot = s.boot.Info()
	}
	s.mu.Lock()
	d := s.dhcp
	s.mu.Unlock()
	if d != nil {
		f.DHCP = d.Info()
	}
	for i := range f.Nodes {
		n := &f.Nodes[i]
		if a, ok := s.ids.Armed(n.Name); ok {
			if n.Identity == nil {
				n.Identity = &fleetapi.Identity{}
			}
			n.Identity.Armed = &a
		}
	}
	return f
}

// bootURL returns option 67 for iPXE clients of the DHCP server at
// server: the boot script on this controller, at the listener's address
// when it is bound to one, else at server. Nil without boot files.
func (s *Server) bootURL() func(server netip.Addr) string {
	if s.boot == nil {
		return nil
	}
	port := 80
	var bound netip.Addr
	if ap := s.listen.Load(); ap != nil {
		port = int(ap.Port())
		if a := ap.Addr().Unmap(); a.Is4() && !a.IsUnspecified() {
			bound = a
		}
	}
	return func(server netip.Addr) string {
		if bound.IsValid() {
			server = bound
		}
		return "http://" + boot.HostPort(server, port) + boot.ScriptPath
	}
}

func (s *Server) bootHandler() *boot.Handler {
	return &boot.Handler{Files: s.boot, Inv: s.inv.Load, State: s.state, Log: s.log, Now: s.now}
}

// Handler serves the controller's HTTP API and web page (see the package
// documentation); the fleet view, the probes and the page only to
// operators, every POST only as JSON. Serve puts it behind TLS and on the
// operators' unix socket. It works without Serve, except for the
// reflector.
func (s *Server) Handler() http.Handler {
	inv := s.inv.Load
	checks := s.checkHandlers()
	bootH := s.bootHandler()
	op := s.operator.Only
	openstack := &metadata.Handler{Inv: inv, State: s.state, Log: s.log, Now: s.now, UserData: s.userData()}
	ids := &identity.Handlers{Inv: inv, Store: s.ids, State: s.state, Log: s.log, Now: s.now}
	mux := http.NewServeMux()
	// The version list is public, as Nova's; a node's documents need its
	// credential.
	mux.Handle("/openstack", openstack)
	mux.Handle("/openstack/{$}", openstack)
	mux.Handle("/openstack/", s.ids.Require(openstack))
	// Node routes: each for the credential's own node.
	mux.HandleFunc("POST "+fleetapi.ClaimPath, ids.Claim)
	mux.Handle("POST /weft/v1/nodes/{name}/report", s.ids.Own(&fleet.Reports{Inv: inv, State: s.state, Log: s.log, Now: s.now}))
	mux.Handle("GET /weft/v1/nodes/{name}/tasks", s.ids.Own(http.HandlerFunc(checks.Tasks)))
	mux.Handle("POST /weft/v1/probes/{id}/result", s.ids.Require(http.HandlerFunc(checks.Result)))
	// Operator routes.
	mux.Handle("GET /weft/v1/fleet", op(http.HandlerFunc(s.serveFleet)))
	mux.Handle("POST /weft/v1/probes", op(http.HandlerFunc(checks.Post)))
	mux.Handle("GET /weft/v1/probes", op(http.HandlerFunc(checks.List)))
	mux.Handle("GET /weft/v1/probes/{id}", op(http.HandlerFunc(checks.Get)))
	mux.Handle("POST /weft/v1/nodes/{name}/arm", op(http.HandlerFunc(ids.Arm)))
	mux.HandleFunc("GET "+boot.ScriptPath, bootH.Script)
	mux.HandleFunc("GET "+boot.Dir+"{file}", bootH.File)
	mux.Handle("GET /{$}", op(&fleet.Page{Fleet: s.Fleet, Checks: checks.Recent, Log: s.log}))
	return access.JSONPosts(mux)
}

func (s *Server) checkHandlers() *check.Handlers {
	return &check.Handlers{Inv: s.inv.Load, Store: s.checks, State: s.state, Log: s.log, Now: s.now, Quit: s.quit}
}

func (s *Server) serveFleet(w http.ResponseWriter, r *http.Request) {
	f := s.Fleet()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		httpx.Plain(w, http.StatusInternalServerError, "weft controller: %v", err)
		return
	}
	b = append(b, '\n')
	httpx.Send(w, "application/json", b)
}

// Serve runs the controller until ctx ends: HTTP on ln, the reflector when
// configured, the inventory watcher. It then shuts down cleanly: HTTP
// requests in flight finish (5 s at most) and the reflector closes its
// sessions with a Cease.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.rrSet != nil {
		// Not while a reload changes the accepted prefixes: it would
		// update neither the settings the reflector starts with nor the
		// reflector.
		s.reloadMu.Lock()
		s.mu.Lock()
		set := *s.rrSet
		s.mu.Unlock()
		refl, err := rr.Start(ctx, set, s.log)
		if err != nil {
			s.reloadMu.Unlock()
			return err
		}
		s.mu.Lock()
		s.rr = refl
		s.mu.Unlock()
		s.keyNodes()
		s.reloadMu.Unlock()
		defer func() {
			s.mu.Lock()
			s.rr = nil
			s.mu.Unlock()
			refl.Shutdown()
		}()
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		s.listen.Store(&ap)
	}
	if s.opt.DHCP != nil {
		stop, err := s.startDHCP(*s.opt.DHCP)
		if err != nil {
			return err
		}
		defer stop()
	}
	if s.boot != nil {
		s.boot.Log(s.log)
	}
	conf, err := s.tlsConfig()
	if err != nil {
		return err
	}
	inv := s.inv.Load()
	base := "https://" + ln.Addr().String() + "/"
	pin := s.ca.Pin().String()
	attrs := []any{"listen", ln.Addr().String(), "ca", pin, "inventory", inv.Path, "nodes", len(inv.Nodes),
		"metadata", base + "openstack/latest/", "fleet", base + "weft/v1/fleet", "web", base,
		"socket", filepath.Join(s.opt.State, SocketFile), "token", filepath.Join(s.opt.State, access.TokenFile)}
	if inv.ConfigPath != "" {
		attrs = append(attrs, "config", inv.ConfigPath)
	}
	if s.rrSet != nil {
		s.mu.Lock()
		st := *s.rrSet
		s.mu.Unlock()
		attrs = append(attrs, "bgp_listen", st.Info().Listen, "asn", st.ASN, "router_id", st.RouterID.String(),
			"bgp_clients", rr.PrefixList(st.Clients), "md5", st.Password != "" || st.Secret != nil, "md5_per_node", st.Secret != nil)
		for _, w := range st.Warnings {
			s.log.Warn("reflector: " + w)
		}
	}
	s.log.Info("weft controller serving (nodes boot with weft.config="+base+" weft.ca="+pin+"; plain http serves only the boot files)", attrs...)

	sv, err := s.startHTTP(ln, conf)
	if err != nil {
		return err
	}
	watchDone := make(chan struct{})
	wctx, stopWatch := context.WithCancel(ctx)
	go func() {
		defer close(watchDone)
		s.watch(wctx)
	}()
	checks := s.checkHandlers()
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				checks.Expire() // logs checks as they expire, not when next read
			}
		}
	}()
	defer func() {
		stopWatch()
		<-watchDone
		<-sweepDone
	}()
	var served error
	select {
	case served = <-sv.errc:
	case <-ctx.Done():
	}
	s.log.Info("weft controller stopping")
	s.quitOnce.Do(func() { close(s.quit) })
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, hs := range sv.all {
		wg.Go(func() {
			if err := hs.Shutdown(sctx); err != nil {
				hs.Close()
			}
		})
	}
	wg.Wait()
	if served != nil {
		return fmt.Errorf("http: %w", served)
	}
	s.log.Info("weft controller stopped")
	return nil
}

// watch reloads the inventory when one of its files changes. Polling, not
// inotify: editors replace files, and an inventory on a mounted volume
// changes by rename of a symlink; a stat a second sees all of it.
func (s *Server) watch(ctx context.Context) {
	every := s.opt.WatchInterval
	if every == 0 {
		every = time.Second
	}
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.changed() {
			s.Reload() // logs its outcome
		}
	}
}

// startDHCP starts the DHCP server for the inventory's nodes until stop.
func (s *Server) startDHCP(cfg dhcp.Config) (stop func(), err error) {
	d, stopServer, err := dhcp.Start(cfg, dhcp.Deps{Inv: s.inv.Load, BootURL: s.bootURL, State: s.state, Log: s.log, Now: s.now,
		Arm: func(node string, addr netip.Addr) {
			s.ids.Arm(node, addr, identity.ByDHCP, s.now())
			s.leased(node, addr)
		}})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.dhcp = d
	s.mu.Unlock()
	if ap := s.listen.Load(); ap != nil && s.boot != nil {
		in := d.Info()
		a := ap.Addr().Unmap()
		if a.IsLoopback() || (a.Is4() && !a.IsUnspecified() && !slices.ContainsFunc(in.Addresses, func(p netip.Prefix) bool { return p.Addr() == a })) {
			s.log.Warn("dhcp: iPXE clients are sent to the HTTP listener's address, which is not one of the DHCP interface's: make sure the nodes reach it (or listen on :PORT)",
				"listen", ap.String(), "interface", in.Interface, "boot_file", in.BootFile)
		}
	}
	d.Warnings()
	return func() {
		stopServer()
		s.mu.Lock()
		s.dhcp = nil
		s.mu.Unlock()
	}, nil
}
