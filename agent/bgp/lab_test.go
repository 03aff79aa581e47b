package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// A lab is one reflector in a namespace of its own, with a bridge that the
// test process (in its own namespace, see TestMain) and child speakers join
// by veth. Addresses: 198.18.<id>.1 the reflector, .11-.19 in-process
// speakers, .21-.29 child speakers. 198.18.0.0/15 is the benchmarking range
// (RFC 2544): never anyone's real address.
type lab struct {
	t    testing.TB
	id   int
	rrNS *nettest.NS
	rr   *bgpd.Daemon
	self *nettest.NS
	kind bgpd.Kind
}

const testASN = 64512

var labSeq atomic.Int32

var (
	selfOnce sync.Once
	selfNS   *nettest.NS
	selfErr  error
)

// self is the test process's own namespace, as a nettest.NS.
func self(t testing.TB) *nettest.NS {
	t.Helper()
	testenv.RequireRoot(t)
	if os.Getenv(envInNetns) == "" {
		testenv.Unavailable(t, "not re-executed in a network namespace of its own")
	}
	selfOnce.Do(func() {
		h, err := netns.Get()
		if err != nil {
			selfErr = err
			return
		}
		nl, err := netlink.NewHandle()
		if err != nil {
			selfErr = err
			return
		}
		if lo, err := nl.LinkByName("lo"); err == nil {
			nl.LinkSetUp(lo)
		}
		selfNS = &nettest.NS{Name: "", Handle: h, NL: nl}
	})
	if selfErr != nil {
		t.Fatalf("own namespace: %v", selfErr)
	}
	return selfNS
}

func (l *lab) addr(host int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(l.id), byte(host)})
}

func (l *lab) rrAddr() netip.Addr { return l.addr(1) }

// node is the i-th in-process speaker's address (0-based).
func (l *lab) node(i int) netip.Addr { return l.addr(11 + i) }

// childAddr is the i-th child speaker's address.
func (l *lab) childAddr(i int) netip.Addr { return l.addr(21 + i) }

type labOpts struct {
	nodes    int // in-process speakers' addresses
	children int // child namespaces
	rr       bgpd.Config
}

// newLab builds the topology and starts the reflector.
func newLab(t testing.TB, kind bgpd.Kind, o labOpts) *lab {
	t.Helper()
	return newLabWith(t, kind, o, nil)
}

// newLabWith lets edit change the reflector's config once the lab's
// addresses are known.
func newLabWith(t testing.TB, kind bgpd.Kind, o labOpts, edit func(*lab, *bgpd.Config)) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	me := self(t)
	l := &lab{t: t, id: int(labSeq.Add(1)), self: me, kind: kind}
	if l.id > 250 {
		t.Fatal("too many labs in one process")
	}
	l.rrNS = nettest.New(t, fmt.Sprintf("wtb-r%d", l.id))
	l.rrNS.Bridge(t, "br0")
	l.rrNS.Up(t, "br0", l.rrAddr().String()+"/24")
	// The test process's side: one veth with every in-process address.
	hostIf := fmt.Sprintf("wtb%d", l.id)
	nettest.Veth(t, me, hostIf, "", l.rrNS, "self", "")
	l.rrNS.Attach(t, "br0", "self")
	link, err := me.NL.LinkByName(hostIf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { me.NL.LinkDel(link) })
	for i := range o.nodes {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: l.node(i).AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := me.NL.AddrAdd(link, a); err != nil {
			t.Fatalf("address %v: %v", l.node(i), err)
		}
	}
	for i := range o.children {
		cns := nettest.New(t, fmt.Sprintf("wtb-c%d-%d", l.id, i))
		nettest.Veth(t, cns, "eth0", l.childAddr(i).String()+"/24", l.rrNS, fmt.Sprintf("c%d", i), "")
		l.rrNS.Attach(t, "br0", fmt.Sprintf("c%d", i))
	}
	cfg := o.rr
	cfg.Kind = kind
	if cfg.ASN == 0 {
		cfg.ASN = testASN
	}
	cfg.RouterID, cfg.Listen = l.rrAddr(), l.rrAddr()
	if cfg.Clients == nil {
		for i := range o.nodes {
			cfg.Clients = append(cfg.Clients, bgpd.Client{Address: l.node(i)})
		}
		for i := range o.children {
			cfg.Clients = append(cfg.Clients, bgpd.Client{Address: l.childAddr(i)})
		}
	}
	if edit != nil {
		edit(l, &cfg)
	}
	l.rr = bgpd.Start(t, l.rrNS, cfg)
	return l
}

func (l *lab) childNS(i int) string { return fmt.Sprintf("wtb-c%d-%d", l.id, i) }

// speakerConfig is a node's speaker at addr, peering with the reflector.
func (l *lab) speakerConfig(addr netip.Addr) Config {
	return Config{
		RouterID:        addr,
		ASN:             testASN,
		ListenAddresses: []string{addr.String()},
		Peers: []Peer{{
			Address:      l.rrAddr(),
			LocalAddress: addr,
			ConnectRetry: time.Second,
		}},
		Logger: testLogger(l.t, addr.String()),
	}
}

// start starts a speaker and stops it (Cease) at test end.
func startSpeaker(t testing.TB, cfg Config) *Speaker {
	t.Helper()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start %v: %v", cfg.RouterID, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// waitUp waits until every peer of s is established and returns how long
// that took.
func waitUp(t testing.TB, s *Speaker, timeout time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	var ps []PeerStatus
	for time.Since(t0) < timeout {
		ps = s.Peers()
		up := 0
		for _, p := range ps {
			if p.State == StateEstablished {
				up++
			}
		}
		if up == len(ps) && up > 0 {
			return time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%v: sessions not established after %v: %v", s.cfg.RouterID, timeout, ps)
	return 0
}

// waitAllUp waits until every peer of every speaker is established and
// returns, for each speaker, how long after t0 it was.
func waitAllUp(t testing.TB, t0 time.Time, timeout time.Duration, ss ...*Speaker) []time.Duration {
	t.Helper()
	up := make([]time.Duration, len(ss))
	for {
		pending := 0
		for i, s := range ss {
			if up[i] != 0 {
				continue
			}
			ps, n := s.Peers(), 0
			for _, p := range ps {
				if p.State == StateEstablished {
					n++
				}
			}
			if n == len(ps) && n > 0 {
				up[i] = time.Since(t0)
			} else {
				pending++
			}
		}
		if pending == 0 {
			return up
		}
		if time.Since(t0) > timeout {
			for _, s := range ss {
				t.Logf("%v: %v", s.cfg.RouterID, s.Peers())
			}
			t.Fatalf("sessions not established after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger sends warnings and worse to the test log (GoBGP's info lines
// would drown it); WEFT_BGP_DEBUG=1 shows everything.
func testLogger(t testing.TB, who string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WEFT_BGP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("speaker", who)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	defer func() { recover() }() // a log line after the test ended
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// recorder keeps a subscription's events, and the current received table.
type recorder struct {
	mu     sync.Mutex
	cond   *sync.Cond
	events []timedEvent
	table  map[Key]Route
	init   bool
}

type timedEvent struct {
	at time.Time
	Event
}

func record(s *Speaker) *recorder {
	r := &recorder{table: make(map[Key]Route)}
	r.cond = sync.NewCond(&r.mu)
	s.Subscribe(func(e Event) {
		r.mu.Lock()
		r.events = append(r.events, timedEvent{time.Now(), e})
		switch e.Kind {
		case RouteAdded:
			r.table[e.Route.Key()] = e.Route
		case RouteWithdrawn:
			delete(r.table, e.Route.Key())
		case InitialTableDone:
			r.init = true
		}
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	return r
}

// wait polls cond (under the recorder's lock) until it holds.
func (r *recorder) wait(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(timeout)
	done := make(chan struct{})
	defer close(done)
	go func() {
		// Wake the waiter at the deadline.
		select {
		case <-time.After(timeout):
			r.mu.Lock()
			r.cond.Broadcast()
			r.mu.Unlock()
		case <-done:
		}
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still waiting for %s; table: %v", timeout, what, r.tableLocked())
		}
		r.cond.Wait()
	}
	return time.Since(t0)
}

func (r *recorder) tableLocked() []Route {
	var out []Route
	for _, rt := range r.table {
		out = append(out, rt)
	}
	sortRoutes(out)
	return out
}

func (r *recorder) get(k Key) (Route, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt, ok := r.table[k]
	return rt, ok
}

func (r *recorder) eventsSince(t0 time.Time) []timedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []timedEvent
	for _, e := range r.events {
		if !e.at.Before(t0) {
			out = append(out, e)
		}
	}
	return out
}

// pollRR polls the reflector's RIB until cond holds on it.
func pollRR(t testing.TB, timeout time.Duration, what string, get func() ([]bgpd.RIBEntry, error), cond func([]bgpd.RIBEntry) bool) ([]bgpd.RIBEntry, time.Duration) {
	t.Helper()
	t0 := time.Now()
	var last []bgpd.RIBEntry
	var err error
	for {
		last, err = get()
		if err == nil && cond(last) {
			return last, time.Since(t0)
		}
		if time.Since(t0) > timeout {
			t.Fatalf("reflector: after %v, still waiting for %s: %v (err %v)", timeout, what, last, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findRIB(es []bgpd.RIBEntry, rd string, p netip.Prefix) (bgpd.RIBEntry, bool) {
	for _, e := range es {
		if e.RD == rd && e.Prefix == p {
			return e, true
		}
	}
	return bgpd.RIBEntry{}, false
}

// child is a speaker in a child process (the test binary again, in a
// child namespace of the lab).
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

func (l *lab) startChild(t testing.TB, i int, spec childSpec) *child {
	t.Helper()
	spec.Config.Logger = nil // the child makes its own
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable() // not /proc/self/exe: ip would resolve that to itself
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.childNS(i), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+string(b))
	cmd.Stderr = tWriter{t}
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: in, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill() })
	return c
}

// expect waits for a line starting with prefix and returns it.
func (c *child) expect(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited while waiting for %q", prefix)
			}
			if strings.HasPrefix(l, "ERROR") {
				t.Fatalf("child: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("child: no %q after %v", prefix, timeout)
		}
	}
}

// kill is kill -9: the kernel closes the sockets, no NOTIFICATION.
func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(unix.SIGKILL)
	<-c.done
}

// generatedRoute is the i-th route of a bulk test from a node.
func generatedRoute(node netip.Addr, f Family, i int) Route {
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	r := Route{Family: f, Prefix: p, NextHop: node}
	if f == VPNv4 {
		r.RD = NewRD(node, 1)
		r.Label = 16 + uint32(i)%(maxMPLSLabel-16)
		r.RouteTargets = []RouteTarget{as2RT(testASN, 100)}
		r.Encaps = []packet.Encap{packet.EncapMPLSoUDP}
	}
	return r
}
