package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// BenchmarkEndpointFirstPacket: an endpoint created on node a (through the
// agent's API, as CNI does) -> the first datagram node b's endpoint sends
// it is delivered. It covers the vRouter port, the BGP announcement
// through FRR (tuned: coalesce-time 20 ms) and b's programming.
func BenchmarkEndpointFirstPacket(b *testing.B) {
	f := newFleet(b, "wtbe", bgpd.FRR, []string{"a", "b"}, fleetConfig{Endpoints: twoEndpoints})
	ha, hb := f.hosts["a"], f.hosts["b"]
	waitFor(b, "b's route to leo1", 30*time.Second, func() bool { return hasRoute(b, hb, "db", "10.0.10.5/32") })
	var total time.Duration
	for i := range b.N {
		name := fmt.Sprintf("new%d", i)
		ns := f.l.Endpoint(b, name)
		addr := fmt.Sprintf("10.0.10.%d", 50+i%150)
		got := make(chan time.Time, 1)
		// The endpoint's namespace listens before its interface exists.
		var pc net.PacketConn
		if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:9999"); return }); err != nil {
			b.Fatal(err)
		}
		go func() {
			buf := make([]byte, 64)
			if _, _, err := pc.ReadFrom(buf); err == nil {
				got <- time.Now()
			}
		}()
		stop := make(chan struct{})
		go probe(f.eps["pg1"], addr+":9999", stop)
		start := time.Now()
		if err := ha.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: name, Network: "leonardo", Address: addr + "/24", Netns: ns.Name}); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-got:
			total += at.Sub(start)
		case <-time.After(30 * time.Second):
			b.Fatalf("no packet reached the new endpoint %s in 30 s", addr)
		}
		close(stop)
		pc.Close()
		ha.AgentAPI.RemoveEndpoint(name)
		waitFor(b, "the endpoint's route to go", 10*time.Second, func() bool { return !hasRoute(b, hb, "db", addr+"/32") })
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-first-packet")
}

// probe sends a datagram to dst every 2 ms from ns until stop.
func probe(ns interface{ Do(func() error) error }, dst string, stop chan struct{}) {
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial("udp4", dst); return }); err != nil {
		return
	}
	defer c.Close()
	for {
		select {
		case <-stop:
			return
		case <-time.After(2 * time.Millisecond):
			c.Write([]byte("probe"))
		}
	}
}

// Benchmark100kRoutes and Benchmark1MRoutes: a reflector (FRR) holds n
// VPNv4 routes of network leonardo (an injector loaded them); then node a
// (vRouter and agent) starts, and the clock runs from its session being
// Established (polled every 10 ms) until its vRouter has them all
// (polled every 100 ms). The figures: routes/s, and the agent's memory
// per route, as RSS (VmRSS) when the last route is in, as RSS settled (a
// second after the agent counted the convergence, which ends with giving
// the garbage back: the target is judged on this one) and as Go heap
// live after the last GC (the agent's status).
//
// The baseline, in the same run: a second FRR, a plain client of the same
// reflector started once the reflector holds the table, timed from its
// session's Established (polled every 20 ms) until `show bgp ipv4 vpn
// summary` counts them all (polled every 100 ms). Run with -benchtime 1x.
func Benchmark100kRoutes(b *testing.B) { benchRoutes(b, "wtbr", 100_000) }

// Benchmark1MRoutes is Benchmark100kRoutes with a million routes.
func Benchmark1MRoutes(b *testing.B) { benchRoutes(b, "wtbm", 1_000_000) }

const frrClientAddr = "192.0.2.201"

func benchRoutes(b *testing.B, prefix string, n int) {
	f := newFleet(b, prefix, bgpd.FRR, nil, fleetConfig{Endpoints: []epSpec{twoEndpoints[0]},
		ExtraClients: []string{"192.0.2.1", injectAddr, frrClientAddr}})
	loadReflector(b, f, n)

	frrTook := frrTakesTable(b, f, n)
	b.ReportMetric(float64(n)/frrTook.Seconds(), "FRR-routes/s")

	ha := f.l.Host(b, "a", "192.0.2.1")
	f.hosts["a"] = ha
	ha.StartVRouter(b)
	ha.StartAgent(b, f.cfg)
	rssBefore := rss(b, ha.Agent.Cmd.Process.Pid)
	var heapBefore uint64
	if s, err := ha.AgentAPI.Status(); err == nil {
		heapBefore = s.HeapLive
	}
	base := routeCount(b, ha)
	waitFor(b, "a's session", time.Minute, func() bool { s, err := ha.AgentAPI.Status(); return err == nil && s.PeersUp == 1 })
	start := time.Now()
	deadline := start.Add(10 * time.Minute)
	for i := 1; routeCount(b, ha) < base+n; i++ {
		if i%20 == 0 { // every 2 s: the injector's routes still there
			if got, _ := frrReceived(b, f.rr, injectAddr); got < n {
				b.Fatalf("the reflector holds %d of the injector's %d routes (its session dropped?)", got, n)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("after 10 min a's vRouter has %d of %d routes", routeCount(b, ha)-base, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	rssPeak := rss(b, ha.Agent.Cmd.Process.Pid)
	// Settled: once the agent has counted the convergence (the peer's
	// End-of-RIB installed), and a second later.
	var st agentapi.Status
	waitFor(b, "a's convergence", time.Minute, func() bool {
		s, err := ha.AgentAPI.Status()
		st = s
		return err == nil && s.LastConvergence != nil
	})
	time.Sleep(time.Second)
	rssSettled := rss(b, ha.Agent.Cmd.Process.Pid)
	if s, err := ha.AgentAPI.Status(); err == nil {
		st = s
	}
	b.ReportMetric(float64(n)/took.Seconds(), "routes/s")
	b.ReportMetric(float64(rssPeak-rssBefore)/float64(n), "agent-RSS-bytes/route-at-end")
	b.ReportMetric(float64(rssSettled-rssBefore)/float64(n), "agent-RSS-bytes/route")
	b.ReportMetric(float64(int64(st.HeapLive)-int64(heapBefore))/float64(n), "agent-heap-bytes/route")
	b.ReportMetric(took.Seconds()/frrTook.Seconds(), "time-vs-FRR")
	b.ReportMetric(st.LastConvergence.Seconds, "s-agent-convergence")
	b.Logf("%d routes: Weft %.2f s (%.0f routes/s; the agent's own convergence figure %.2f s), FRR %.2f s (%.0f routes/s); "+
		"agent RSS %d MB at the end, %d MB settled (%d MB at start), heap live %d MB",
		n, took.Seconds(), float64(n)/took.Seconds(), st.LastConvergence.Seconds, frrTook.Seconds(), float64(n)/frrTook.Seconds(),
		rssPeak>>20, rssSettled>>20, rssBefore>>20, st.HeapLive>>20)
}

// loadReflector runs the injector in a host of its own (a child of this
// test binary) and waits until the reflector holds its n routes.
func loadReflector(b *testing.B, f *fleet, n int) {
	inj := f.l.Host(b, "inj", injectAddr)
	cmd := exec.Command("ip", "netns", "exec", inj.NS.Name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WEFT_INJECT_ROUTES="+strconv.Itoa(n))
	out := &strings.Builder{}
	cmd.Stderr, cmd.Stdout = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pollFRR(b, "the reflector to hold the injector's routes", func() bool {
		got, _ := frrReceived(b, f.rr, injectAddr)
		return got >= n
	}, out)
}

// frrTakesTable starts a second FRR as a client of the reflector and
// returns the time from its session's Established until it holds n routes.
func frrTakesTable(b *testing.B, f *fleet, n int) time.Duration {
	h := f.l.Host(b, "frc", frrClientAddr)
	conf := fmt.Sprintf(`router bgp 64512
 bgp router-id %[1]s
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
 neighbor %[2]s remote-as 64512
 neighbor %[2]s timers connect 1
 neighbor %[2]s update-source %[1]s
 address-family ipv4 vpn
  neighbor %[2]s activate
 exit-address-family
`, frrClientAddr, rrAddr)
	c := bgpd.Start(b, h.NS, bgpd.Config{Kind: bgpd.FRR, ASN: 64512, RouterID: netip.MustParseAddr(frrClientAddr),
		Listen: netip.MustParseAddr(frrClientAddr), FRRConfig: conf})
	// FRR's peer uptime counts whole seconds: the clock is this test's,
	// started when the session is first seen Established (polled every
	// 20 ms), stopped when the full count is first seen.
	var start time.Time
	for deadline := time.Now().Add(time.Minute); start.IsZero(); time.Sleep(20 * time.Millisecond) {
		if _, up := frrReceived(b, c, rrAddr); up {
			start = time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("the FRR client's session was not established in 1 min:\n%s", c.LogTail(20))
		}
	}
	pollFRR(b, "the FRR client to hold the table", func() bool {
		got, _ := frrReceived(b, c, rrAddr)
		return got >= n
	}, nil)
	took := time.Since(start)
	c.Stop() // its CPU is not the agent's
	return took
}

// pollFRR waits for cond every 100 ms (each poll runs vtysh, which
// costs FRR's CPU), 10 min at most.
func pollFRR(b *testing.B, what string, cond func() bool, log fmt.Stringer) {
	for deadline := time.Now().Add(10 * time.Minute); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after 10 min waiting for %s; %v", what, log)
		}
	}
}

// frrReceived is the prefixes FRR d received from peer over VPNv4, and
// whether that session is established.
func frrReceived(b *testing.B, d *bgpd.Daemon, peer string) (int, bool) {
	out, err := d.CLI("show bgp ipv4 vpn summary json")
	if err != nil {
		return 0, false
	}
	type summary struct {
		Peers map[string]struct {
			PfxRcd         int    `json:"pfxRcd"`
			State          string `json:"state"`
			PeerUptimeMsec int64  `json:"peerUptimeMsec"`
		} `json:"peers"`
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Peers == nil {
		var wrapped map[string]summary // {"ipv4Vpn": {...}} on some versions
		if json.Unmarshal([]byte(out), &wrapped) == nil {
			for _, w := range wrapped {
				if w.Peers != nil {
					s = w
				}
			}
		}
	}
	p, ok := s.Peers[peer]
	if !ok || p.State != "Established" {
		return 0, false
	}
	return p.PfxRcd, true
}

func routeCount(b testing.TB, h *lab.Host) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := h.Client.Info(ctx, &vrouterv1.InfoRequest{})
	if err != nil {
		b.Fatal(err)
	}
	return int(info.GetTableSizes()["routes"])
}

func rss(b testing.TB, pid int) int64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkEndpointRemoval: one op adds an endpoint on node a, waits for
// node b to have its route, removes it and waits for the reflector (FRR)
// to withdraw it and b's FIB to drop it. The figures are the median
// removal times (TestEndpointAddRemove only requires 5 s). No baseline:
// compare the figures from run to run.
func BenchmarkEndpointRemoval(b *testing.B) {
	f := newFleet(b, "wtbx", bgpd.FRR, []string{"a", "b"}, fleetConfig{Endpoints: twoEndpoints})
	ha, hb := f.hosts["a"], f.hosts["b"]
	waitRoute(b, hb, "db", "10.0.10.5/32", "192.0.2.1", 20*time.Second)
	ns := f.l.Endpoint(b, "leo9")
	var atRR, atB []time.Duration
	for b.Loop() {
		if err := ha.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: "leo9", Network: "leonardo", Address: "10.0.10.9/24", Netns: ns.Name}); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "b's route to the new endpoint", 20*time.Second, func() bool { return hasRoute(b, hb, "db", "10.0.10.9/32") })
		rr, fib := removeEndpoint(b, f, "leo9", "10.0.10.9/32")
		atRR, atB = append(atRR, rr), append(atB, fib)
	}
	b.ReportMetric(median(atRR).Seconds()*1000, "ms-withdrawn-at-reflector")
	b.ReportMetric(median(atB).Seconds()*1000, "ms-gone-from-remote-FIB")
}

// BenchmarkRestartStall: the longest pause of a TCP stream from node a to
// node b while a's agent is killed with SIGKILL and restarted, and while
// the reflector (FRR) restarts; one op is both. The figures are the
// medians over the ops (TestAgentKillAndReflectorRestart only requires
// maxStall). No baseline: compare the figures from run to run.
func BenchmarkRestartStall(b *testing.B) {
	f := restartFleet(b, "wtbk", bgpd.FRR, "", lab.Userspace)
	var agent, reflector []time.Duration
	for b.Loop() {
		gap, _ := killAgentUnderStream(b, f)
		agent = append(agent, gap)
		reflector = append(reflector, restartReflectorUnderStream(b, f))
	}
	b.ReportMetric(median(agent).Seconds()*1000, "ms-stall-agent-kill")
	b.ReportMetric(median(reflector).Seconds()*1000, "ms-stall-reflector-restart")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
