package agent_test

// Many real nodes: as many `weft agent` + `weft vrouter` pairs in
// namespaces as the machine holds, peered with one reflector (FRR), each
// with an endpoint in leonardo. A new endpoint on one node must become
// reachable from every other (a UDP echo through the overlay, both ways),
// and a node that joins must reach every other.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/nettest"
)

const echoPort = 9999

// nodesFleet starts n nodes (n01, n02, ...) with endpoint e01, e02, ... in
// leonardo (10.0.10.11, .12, ...), each answering a UDP echo, and leaves
// the reflector a client slot for one more node, joinName.
func nodesFleet(t testing.TB, prefix string, n int) *fleet {
	t.Helper()
	var names []string
	var eps []epSpec
	for i := 1; i <= n+1; i++ {
		name := fmt.Sprintf("n%02d", i)
		eps = append(eps, epSpec{Name: fmt.Sprintf("e%02d", i), Network: "leonardo", Address: fmt.Sprintf("10.0.10.%d/24", 10+i), Node: name})
		if i <= n {
			names = append(names, name)
		}
	}
	f := newFleet(t, prefix, bgpd.FRR, names, fleetConfig{Endpoints: eps, ExtraClients: []string{nodeAddr(n + 1).String()}})
	for _, e := range eps {
		udpEcho(t, f.eps[e.Name])
	}
	return f
}

func nodeAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

func epAddr(i int) string { return fmt.Sprintf("10.0.10.%d", 10+i) }

// udpEcho answers every datagram to echoPort in ns, from before the
// endpoint's interface exists.
func udpEcho(t testing.TB, ns *nettest.NS) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", echoPort)); return }); err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// untilEcho sends a datagram from ns to dst's echo every 10 ms until one
// comes back, and returns when; it gives up after d.
func untilEcho(ns *nettest.NS, dst string, d time.Duration) (time.Time, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial("udp4", net.JoinHostPort(dst, strconv.Itoa(echoPort))); return }); err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	buf := make([]byte, 64)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		c.Write([]byte("reach?"))
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "reach?" {
			return time.Now(), nil
		}
	}
	return time.Time{}, fmt.Errorf("no echo from %s in %s after %v", dst, ns.Name, d)
}

// reachFrom runs untilEcho from every endpoint of from at once and returns
// each one's time since start; the first failure is the error.
func reachFrom(f *fleet, from []int, dst string, start time.Time, d time.Duration) ([]time.Duration, error) {
	times := make([]time.Duration, len(from))
	errs := make([]error, len(from))
	var wg sync.WaitGroup
	for k, i := range from {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := untilEcho(f.eps[fmt.Sprintf("e%02d", i)], dst, d)
			times[k], errs[k] = at.Sub(start), err
		}()
	}
	wg.Wait()
	return times, errors.Join(errs...)
}

// newEndpointReach adds endpoint "new<round>" in leonardo on node on (1-based)
// of the n nodes and returns, for every other node, how long after the
// add its endpoint first had an echo back from it; the endpoint is removed
// again. Reaching every node within 10 s is required.
func newEndpointReach(t testing.TB, f *fleet, n, on, round int) []time.Duration {
	t.Helper()
	name := fmt.Sprintf("new%d", round)
	ns := f.l.Endpoint(t, name)
	udpEcho(t, ns)
	addr := fmt.Sprintf("10.0.10.%d", 100+round%150)
	var others []int
	for i := 1; i <= n; i++ {
		if i != on {
			others = append(others, i)
		}
	}
	h := f.hosts[fmt.Sprintf("n%02d", on)]
	start := time.Now()
	if err := h.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: name, Network: "leonardo", Address: addr + "/24", Netns: ns.Name}); err != nil {
		t.Fatal(err)
	}
	times, err := reachFrom(f, others, addr, start, 10*time.Second)
	if err != nil {
		t.Fatalf("a new endpoint on n%02d is not reachable from every other node within 10 s: %v", on, err)
	}
	if err := h.AgentAPI.RemoveEndpoint(name); err != nil {
		t.Fatal(err)
	}
	return times
}

// joinNode starts node n+1 (its endpoint is in the fleet's config from the
// start) and returns how long after its agent started its endpoint had an
// echo from every other node's, and its agent's own convergence.
func joinNode(t testing.TB, f *fleet, n int) (time.Duration, *agentapi.Convergence) {
	t.Helper()
	name := fmt.Sprintf("n%02d", n+1)
	h := f.l.Host(t, name, nodeAddr(n+1).String())
	h.StartVRouter(t)
	start := time.Now()
	h.StartAgent(t, f.cfg)
	f.hosts[name] = h
	var all []int
	for i := 1; i <= n; i++ {
		all = append(all, i)
	}
	// From the joiner to everyone: the joiner's routes to them, and
	// theirs to it (the echo comes back).
	ep := f.eps[fmt.Sprintf("e%02d", n+1)]
	times := make([]time.Duration, n)
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for k, i := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := untilEcho(ep, epAddr(i), 30*time.Second)
			mu.Lock()
			defer mu.Unlock()
			times[k] = at.Sub(start)
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%s joined and does not reach every node within 30 s: %v", name, err)
	}
	var conv *agentapi.Convergence
	waitFor(t, name+"'s convergence", 30*time.Second, func() bool {
		st, err := h.AgentAPI.Status()
		conv = st.LastConvergence
		return err == nil && conv != nil
	})
	return slices.Max(times), conv
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(k, len(s)-1))]
}

// TestNodesReach: 4 real nodes; a new endpoint on one is reachable from
// the 3 others within 10 s, and a fifth node that joins reaches all four
// within 30 s. The times are logged; BenchmarkNodes has the 20-node figures.
func TestNodesReach(t *testing.T) {
	const n = 4
	f := nodesFleet(t, "wtnr", n)
	// The fleet is up when every endpoint reaches node 1's.
	if _, err := reachFrom(f, []int{2, 3, 4}, epAddr(1), time.Now(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	times := newEndpointReach(t, f, n, 2, 0)
	t.Logf("a new endpoint on n02 reachable from %d nodes: p50 %v, max %v", len(times), percentile(times, 50).Round(time.Millisecond),
		slices.Max(times).Round(time.Millisecond))
	join, conv := joinNode(t, f, n)
	t.Logf("n05 joined: it reached all %d nodes %v after its agent started (its convergence: %s, End-of-RIB %s)", n,
		join.Round(time.Millisecond), conv.Took, conv.EndOfRIB)
}

// BenchmarkNodes: WEFT_SCALE_NODES (default 20) real nodes; each op adds an
// endpoint on the next node and times its reachability from all others
// (p50 and p99 over every op's nodes), then a node joins (the time until
// it reaches every node) and the reflector restarts (the time until every
// node has converged again). Run with -benchtime 5x or more.
func BenchmarkNodes(b *testing.B) {
	n := 20
	if s := os.Getenv("WEFT_SCALE_NODES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2 || v > 200 {
			b.Fatalf("WEFT_SCALE_NODES=%q: want 2..200", s)
		}
		n = v
	}
	t0 := time.Now()
	f := nodesFleet(b, "wtnb", n)
	var others []int
	for i := 2; i <= n; i++ {
		others = append(others, i)
	}
	if _, err := reachFrom(f, others, epAddr(1), time.Now(), time.Minute); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d nodes up and reaching each other %v after the start", n, time.Since(t0).Round(time.Millisecond))
	var times []time.Duration
	round := 0
	for b.Loop() {
		times = append(times, newEndpointReach(b, f, n, 1+round%n, round)...)
		round++
	}
	b.ReportMetric(float64(percentile(times, 50).Microseconds())/1000, "ms-reachable-p50")
	b.ReportMetric(float64(percentile(times, 99).Microseconds())/1000, "ms-reachable-p99")
	join, conv := joinNode(b, f, n)
	b.ReportMetric(join.Seconds(), "s-join-reaches-all")
	b.Logf("node %d joined: reached all %v after its agent started (its convergence %s)", n+1, join.Round(time.Millisecond), conv.Took)
	b.ReportMetric(reflectorRestart(b, f).Seconds(), "s-reflector-restart")
}

// reflectorRestart restarts the reflector and returns how long until every
// node's agent has converged again (a convergence established after it).
func reflectorRestart(t testing.TB, f *fleet) time.Duration {
	t.Helper()
	t0 := time.Now()
	f.rr.Restart(t)
	var last time.Duration
	for name, h := range f.hosts {
		waitFor(t, name+"'s convergence after the reflector restart", time.Minute, func() bool {
			st, err := h.AgentAPI.Status()
			c := st.LastConvergence
			if err != nil || c == nil || !c.Established.After(t0) {
				return false
			}
			last = max(last, c.Established.Add(time.Duration(c.Seconds*float64(time.Second))).Sub(t0))
			return true
		})
	}
	return last
}
