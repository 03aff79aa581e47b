// Package bgpd runs a real BGP daemon as a route reflector (FRR's bgpd, gobgpd
// or BIRD 2, from Debian's packages) inside a test's network namespace and
// reads its RIB and sessions back through the daemon's own CLI, so that a
// test asserts what an operator of that reflector would see.
//
// Each daemon runs in the foreground as a child of the test, with its
// config, sockets and log in a directory of its own; it is killed and the
// directory removed when the test ends. On a failed test the daemon's log
// tail is printed.
package bgpd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// Kind is the reflector implementation.
type Kind int

const (
	FRR    Kind = iota + 1 // FRR 8.4 bgpd, without zebra
	GoBGPd                 // Debian's gobgpd 3.10
	BIRD                   // BIRD 2.0 (no EVPN)
)

func (k Kind) String() string {
	switch k {
	case FRR:
		return "frr"
	case GoBGPd:
		return "gobgpd"
	case BIRD:
		return "bird"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Family is an address family, named as GoBGP and OpenConfig name it.
type Family string

const (
	VPNv4       Family = "l3vpn-ipv4-unicast"
	VPNv6       Family = "l3vpn-ipv6-unicast"
	EVPN        Family = "l2vpn-evpn"
	IPv4Unicast Family = "ipv4-unicast"
	IPv6Unicast Family = "ipv6-unicast"
	// RTC is route target membership (RFC 4684), gobgpd only: FRR 8.4
	// has no such address family ("address-family ipv4 rtc" is an
	// unknown command to vtysh -C), nor has BIRD 2.0.12 (an "rtc"
	// channel is a syntax error to bird -p).
	RTC Family = "rtc"
)

// Client is a route reflector client.
type Client struct {
	Address  netip.Addr
	Password string // TCP MD5; empty = none
	// Passive: the reflector waits for the client to connect. By default
	// it also connects, every second, so that a client that listens is
	// reached without waiting for its own retry timer.
	Passive bool
}

// Config describes the reflector.
type Config struct {
	Kind     Kind
	ASN      uint32
	RouterID netip.Addr // IPv4
	// Listen is the reflector's address in its namespace: it listens
	// there (port 179) and sources its sessions from it.
	Listen  netip.Addr
	Clients []Client
	// ClusterID; zero = RouterID.
	ClusterID netip.Addr
	// Families; empty = VPNv4, VPNv6 and EVPN (BIRD: VPNv4 and VPNv6,
	// it has no EVPN).
	Families []Family
	// HoldTime; 0 = the daemon's default (FRR 180 s, gobgpd and BIRD
	// 90 s, less if the client offers less).
	HoldTime time.Duration
	// RestartTime is the graceful restart time the reflector itself
	// announces; 0 = 120 s. Every kind is a graceful restart helper:
	// it keeps a client's routes stale when the client's session drops
	// without a NOTIFICATION.
	RestartTime time.Duration
	// FRRConfig, for FRR only, replaces the generated bgpd.conf (after the
	// log settings): a configuration exactly as an operator wrote it.
	// Clients are then only what Sessions and WaitEstablished look at.
	FRRConfig string
}

// RIBEntry is one path in the reflector's RIB, as its CLI shows it.
type RIBEntry struct {
	RD           string // as the daemon prints it, e.g. "192.0.2.1:3"
	Prefix       netip.Prefix
	Label        uint32 // MPLS label; the VNI for EVPN
	NextHop      netip.Addr
	RouteTargets []string // "64512:100", without the "RT:"/"target:" prefix
	Encaps       []int    // tunnel types of the encapsulation extended communities, in the daemon's order
	RouterMAC    string   // EVPN Router's MAC, lower case
	// TunnelEncap lists the TLV types of the RFC 9012 Tunnel
	// Encapsulation attribute when TunnelEncapVisible (FRR's JSON does
	// not show the attribute; gobgpd decodes it; BIRD prints it as an
	// unknown attribute).
	TunnelEncap        []int
	TunnelEncapVisible bool
	Stale              bool
	Best               bool
	Peer               netip.Addr // the client the path came from
	ExtCommunities     []string   // every extended community, as printed
}

func (e RIBEntry) String() string {
	s := fmt.Sprintf("%s:%v label %d nh %v rt %v encap %v", e.RD, e.Prefix, e.Label, e.NextHop, e.RouteTargets, e.Encaps)
	if e.RouterMAC != "" {
		s += " rmac " + e.RouterMAC
	}
	if e.TunnelEncapVisible {
		s += fmt.Sprintf(" tunnel-encap %v", e.TunnelEncap)
	}
	if e.Stale {
		s += " stale"
	}
	if e.Best {
		s += " best"
	}
	return s + fmt.Sprintf(" from %v", e.Peer)
}

// Session is the reflector's view of one client session.
type Session struct {
	Neighbor    netip.Addr
	State       string // lower case: "established", "active", "idle", ...
	Established bool
}

// Reflector is a running reflector.
type Daemon struct {
	cfg Config
	ns  *nettest.NS
	dir string
	t   testing.TB

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs the reflector in ns and returns once it listens on port 179.
// It is stopped and its files removed when t ends. Missing daemons skip
// the test (fail it under CI).
func Start(t testing.TB, ns *nettest.NS, cfg Config) *Daemon {
	t.Helper()
	testenv.RequireRoot(t)
	switch cfg.Kind {
	case FRR:
		testenv.RequireTools(t, "vtysh", "/usr/lib/frr/bgpd")
	case GoBGPd:
		testenv.RequireTools(t, "gobgpd", "gobgp")
	case BIRD:
		testenv.RequireTools(t, "bird", "birdc")
	default:
		t.Fatalf("reflector: unknown kind %d", int(cfg.Kind))
	}
	testenv.RequireTools(t, "ss")
	if err := cfg.normalize(); err != nil {
		t.Fatalf("reflector config: %v", err)
	}
	// Not t.TempDir: FRR drops to the frr user, which must reach its
	// directory, and TempDir's parents are private to root.
	dir, err := os.MkdirTemp("", "wtb-"+cfg.Kind.String()+"-")
	if err != nil {
		t.Fatalf("reflector: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("reflector: %v", err)
	}
	r := &Daemon{cfg: cfg, ns: ns, dir: dir, t: t}
	if err := r.writeConfig(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("reflector %v: config: %v", cfg.Kind, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reflector %v in %s, log tail:\n%s", cfg.Kind, ns.Name, r.LogTail(40))
		}
		r.Stop()
		os.RemoveAll(dir)
	})
	if err := r.start(); err != nil {
		t.Fatalf("reflector %v in %s: %v\nlog:\n%s", cfg.Kind, ns.Name, err, r.LogTail(40))
	}
	return r
}

func (c *Config) normalize() error {
	if c.ASN == 0 {
		return errors.New("asn: missing")
	}
	if !c.RouterID.Is4() {
		return fmt.Errorf("router ID %v: want IPv4", c.RouterID)
	}
	if !c.Listen.IsValid() {
		return errors.New("listen: missing")
	}
	if !c.ClusterID.IsValid() {
		c.ClusterID = c.RouterID
	}
	if len(c.Families) == 0 {
		c.Families = []Family{VPNv4, VPNv6, EVPN}
		if c.Kind == BIRD {
			c.Families = []Family{VPNv4, VPNv6}
		}
	}
	for i, f := range c.Families {
		switch f {
		case VPNv4, VPNv6, EVPN, IPv4Unicast, IPv6Unicast:
		case RTC:
			if c.Kind != GoBGPd {
				return fmt.Errorf("families[%d]: %v has no route target constraint (RFC 4684)", i, c.Kind)
			}
		default:
			return fmt.Errorf("families[%d]: unknown %q", i, f)
		}
		if f == EVPN && c.Kind == BIRD {
			return fmt.Errorf("families[%d]: BIRD 2 has no EVPN", i)
		}
	}
	if c.RestartTime == 0 {
		c.RestartTime = 120 * time.Second
	}
	if c.FRRConfig != "" && c.Kind != FRR {
		return fmt.Errorf("frr config: for FRR only, not %v", c.Kind)
	}
	for i, cl := range c.Clients {
		if !cl.Address.IsValid() {
			return fmt.Errorf("clients[%d]: address missing", i)
		}
		if strings.ContainsAny(cl.Password, "\"\\\n ") {
			return fmt.Errorf("clients[%d]: password: no quotes, backslashes or spaces, please", i)
		}
	}
	return nil
}

func (r *Daemon) logPath() string { return filepath.Join(r.dir, "daemon.log") }

// LogTail returns the last n lines of the daemon's output and log file.
func (r *Daemon) LogTail(n int) string {
	var lines []string
	for _, f := range []string{r.logPath(), filepath.Join(r.dir, "bgpd.log"), filepath.Join(r.dir, "bird.log")} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		lines = append(lines, "== "+filepath.Base(f))
		l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(l) > n {
			l = l[len(l)-n:]
		}
		lines = append(lines, l...)
	}
	return strings.Join(lines, "\n")
}

func (r *Daemon) start() error {
	out, err := os.OpenFile(r.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	name, args := r.command()
	cmd := r.ns.Command(context.Background(), name, args...)
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed with the test binary.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	return r.waitReady(done)
}

// waitReady waits until the daemon listens on 179 and answers its CLI.
func (r *Daemon) waitReady(done chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return errors.New("the daemon exited")
		default:
		}
		out, err := r.ns.Try(5*time.Second, "ss", "-Hltn", "sport = :179")
		if err == nil && strings.Contains(out, ":179") {
			if _, err := r.Sessions(); err == nil {
				return nil
			} else {
				last = err
			}
		} else {
			last = fmt.Errorf("not listening on 179 yet")
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 20 s: %v", last)
}

// take hands the running process to the one caller that stops it.
func (r *Daemon) take() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	return cmd, done
}

// Stop kills the daemon (SIGTERM, then SIGKILL after 5 s) and waits for
// it; it may be called more than once.
func (r *Daemon) Stop() {
	cmd, done := r.take()
	if cmd == nil {
		return
	}
	unix.Kill(-cmd.Process.Pid, unix.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-done
	}
}

// Kill kills the daemon with SIGKILL: its sessions end without a
// NOTIFICATION, as in a crash.
func (r *Daemon) Kill() {
	cmd, done := r.take()
	if cmd == nil {
		return
	}
	unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	<-done
}

// Restart kills the daemon (SIGKILL, no NOTIFICATION) and starts it again
// with the same configuration; it returns once the new one listens.
func (r *Daemon) Restart(t testing.TB) {
	t.Helper()
	r.Kill()
	if err := r.start(); err != nil {
		t.Fatalf("reflector %v: restart: %v\nlog:\n%s", r.cfg.Kind, err, r.LogTail(40))
	}
}

// cli runs the daemon's CLI in its namespace.
func (r *Daemon) cli(args ...string) (string, error) {
	var name string
	switch r.cfg.Kind {
	case FRR:
		name = "vtysh"
		full := []string{"--vty_socket", r.dir}
		for _, a := range args {
			full = append(full, "-c", a)
		}
		args = full
	case GoBGPd:
		name = "gobgp"
		args = append([]string{"-u", "127.0.0.1", "-p", "50051"}, args...)
	case BIRD:
		name = "birdc"
		args = append([]string{"-s", filepath.Join(r.dir, "bird.ctl")}, args...)
	}
	out, err := r.ns.Try(30*time.Second, name, args...)
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return out, nil
}

// CLI runs one command of the daemon's own CLI (vtysh, gobgp, birdc) and
// returns its output: for what the typed accessors do not read.
func (r *Daemon) CLI(args ...string) (string, error) { return r.cli(args...) }

// Sessions returns the state of every client session.
func (r *Daemon) Sessions() ([]Session, error) {
	switch r.cfg.Kind {
	case FRR:
		return r.frrSessions()
	case GoBGPd:
		return r.gobgpSessions()
	case BIRD:
		return r.birdSessions()
	}
	return nil, errors.New("unknown kind")
}

// VPNv4 returns the l3vpn-ipv4-unicast RIB.
func (r *Daemon) VPNv4() ([]RIBEntry, error) { return r.rib(VPNv4) }

// VPNv6 returns the l3vpn-ipv6-unicast RIB.
func (r *Daemon) VPNv6() ([]RIBEntry, error) { return r.rib(VPNv6) }

// EVPN returns the l2vpn-evpn RIB (type 5 routes; others are skipped).
func (r *Daemon) EVPN() ([]RIBEntry, error) { return r.rib(EVPN) }

// AdjOut returns the paths of f the reflector sends to client (its
// Adj-RIB-Out for that neighbour): from gobgpd whole, from FRR (VPN
// families) with RD, prefix and next hop only.
func (r *Daemon) AdjOut(client netip.Addr, f Family) ([]RIBEntry, error) {
	var (
		out []RIBEntry
		err error
	)
	switch r.cfg.Kind {
	case GoBGPd:
		out, err = r.gobgpTable(f, "neighbor", client.String(), "adj-out")
	case FRR:
		out, err = r.frrAdjOut(f, client)
	default:
		err = errors.New("Adj-RIB-Out is read from gobgpd and FRR only")
	}
	if err != nil {
		return nil, fmt.Errorf("reflector %v: %s Adj-RIB-Out to %v: %w", r.cfg.Kind, f, client, err)
	}
	return out, nil
}

func (r *Daemon) rib(f Family) ([]RIBEntry, error) {
	if f == EVPN && r.cfg.Kind == BIRD {
		return nil, errors.New("BIRD has no EVPN")
	}
	var (
		out []RIBEntry
		err error
	)
	switch r.cfg.Kind {
	case FRR:
		out, err = r.frrRIB(f)
	case GoBGPd:
		out, err = r.gobgpRIB(f)
	case BIRD:
		out, err = r.birdRIB(f)
	}
	if err != nil {
		return nil, fmt.Errorf("reflector %v: %s RIB: %w", r.cfg.Kind, f, err)
	}
	slices.SortFunc(out, func(a, b RIBEntry) int {
		if c := strings.Compare(a.RD, b.RD); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Peer.Compare(b.Peer)
	})
	return out, nil
}

// WaitEstablished waits until the sessions with every given client are
// established, failing t after timeout.
func (r *Daemon) WaitEstablished(t testing.TB, timeout time.Duration, clients ...netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []Session
	var lastErr error
	for {
		last, lastErr = r.Sessions()
		up := 0
		for _, c := range clients {
			for _, s := range last {
				if s.Neighbor == c && s.Established {
					up++
				}
			}
		}
		if lastErr == nil && up == len(clients) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reflector %v: sessions with %v not established after %v: %v (err %v)", r.cfg.Kind, clients, timeout, last, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
