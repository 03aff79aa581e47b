package agent_test

import (
	"bufio"
	"context"
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
	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/internal/routetarget"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
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

// Benchmark100kRoutes: a BGP speaker announces 100k VPNv4 routes with
// leonardo's route target through FRR; the figure is the time from the
// injector's session being established (its first Announce) until node
// a's vRouter has them all installed (routes/s), and the agent's resident
// memory per route. It has no baseline of its own: the nearest figure is
// agent/bgp's BenchmarkRoutes (the same routes through FRR into a bare
// speaker, no agent or vRouter), a separate run. Run with -benchtime 1x.
func Benchmark100kRoutes(b *testing.B) {
	const n = 100000
	f := newFleet(b, "wtbr", bgpd.FRR, []string{"a"}, fleetConfig{Endpoints: []epSpec{twoEndpoints[0]}, ExtraClients: []string{"192.0.2.200"}})
	ha := f.hosts["a"]
	waitFor(b, "a's session", 30*time.Second, func() bool { s, err := ha.AgentAPI.Status(); return err == nil && s.PeersUp == 1 })
	rssBefore := rss(b, ha.Agent.Cmd.Process.Pid)
	base := routeCount(b, ha)

	// The injector runs as a child of this test binary in its own host on
	// the fabric (GoBGP's sockets cannot be pinned to a namespace in-process).
	inj := f.l.Host(b, "inj", "192.0.2.200")
	cmd := exec.Command("ip", "netns", "exec", inj.NS.Name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WEFT_INJECT_ROUTES="+strconv.Itoa(n))
	out := &strings.Builder{}
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The clock starts when the injector says its session is established
	// and it begins announcing: the process start, the generation of the
	// routes and the BGP handshake are not the agent's work.
	established := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == injectorEstablished {
				close(established)
			}
		}
	}()
	select {
	case <-established:
	case <-time.After(time.Minute):
		b.Fatalf("the injector's session was not established in 1 min:\n%s", out)
	}
	start := time.Now()
	deadline := time.Now().Add(5 * time.Minute)
	for routeCount(b, ha) < base+n {
		if time.Now().After(deadline) {
			b.Fatalf("after 5 min a's vRouter has %d of %d routes; injector:\n%s", routeCount(b, ha)-base, n, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	rssAfter := rss(b, ha.Agent.Cmd.Process.Pid)
	b.ReportMetric(float64(n)/took.Seconds(), "routes/s")
	b.ReportMetric(float64(rssAfter-rssBefore)/n, "agent-RSS-bytes/route")
	b.ReportMetric(took.Seconds(), "s-to-program-100k")
}

// injectorEstablished is the line the injector prints on stdout once its
// session is established, just before its first Announce.
const injectorEstablished = "ESTABLISHED"

// injectRoutes is Benchmark100kRoutes's injector, run by TestMain in a
// child of the test binary: once its session to the reflector is
// established it announces n VPNv4 routes and holds them until the
// benchmark kills it.
func injectRoutes(n int) error {
	rt := bgp.RouteTarget{Type: routetarget.AS2, ASN: 64512, Local: 100}
	routes := make([]bgp.Route, 0, n)
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(100 + i>>16), byte(i >> 8), byte(i)})
		routes = append(routes, bgp.Route{Family: bgp.VPNv4, RD: bgp.NewRD(netip.MustParseAddr("192.0.2.200"), 1),
			Prefix: netip.PrefixFrom(a, 32), Label: uint32(16 + i), NextHop: netip.MustParseAddr("192.0.2.200"),
			RouteTargets: []bgp.RouteTarget{rt}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, OriginVN: 100})
	}
	sp, err := bgp.Start(context.Background(), bgp.Config{RouterID: netip.MustParseAddr("192.0.2.200"), ASN: 64512, ListenPort: -1,
		Peers: []bgp.Peer{{Address: netip.MustParseAddr(rrAddr), ConnectRetry: time.Second}}})
	if err != nil {
		return err
	}
	defer sp.Stop()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if ps := sp.Peers(); len(ps) == 1 && ps[0].State == bgp.StateEstablished {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("session to %s not established in 1 min: %v", rrAddr, sp.Peers())
		}
	}
	fmt.Println(injectorEstablished)
	for _, r := range routes {
		if err := sp.Announce(r); err != nil {
			return err
		}
	}
	time.Sleep(10 * time.Minute) // killed by the benchmark
	return nil
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
