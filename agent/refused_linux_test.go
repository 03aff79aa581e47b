package agent_test

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
)

// One endpoint the vRouter refuses for good (its namespace already has
// an eth0, the name the vRouter gives the endpoint's interface) stops
// nothing else: endpoints and remote routes that come afterwards are
// installed and announced at once, the refused one is reported in `weft
// ctl status` and the metrics and retried with a growing delay, not in a
// loop. An agent restarted with it (its first reconcile refused) runs.
func TestRefusedEndpointStopsNothingElse(t *testing.T) {
	f := newFleet(t, "wtrf", bgpd.FRR, []string{"a", "b"}, fleetConfig{Endpoints: twoEndpoints,
		AgentArgs: []string{"--metrics", "127.0.0.1:9473"}})
	a, b := f.hosts["a"], f.hosts["b"]
	waitRoute(t, a, "leonardo", "10.0.100.3/32", "192.0.2.2", 20*time.Second)

	// bad1's namespace already has an eth0.
	bad := f.l.Endpoint(t, "bad1")
	nettest.Veth(t, bad, "eth0", "", bad, "eth1", "")
	eps := append(twoEndpoints[:len(twoEndpoints):len(twoEndpoints)], epSpec{Name: "bad1", Network: "leonardo", Address: "10.0.10.9/24", Node: "a"})
	f.l.WriteFile(t, "weft.yaml", renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: eps}))
	if err := a.AgentAPI.Reload(); err != nil {
		t.Fatal(err)
	}
	st := waitRefused(t, a, "bad1")
	t.Logf("a refuses %s: %s", st.Op, st.Error)

	// What comes after bad1 is programmed regardless: a local endpoint
	// on a (installed, announced to b) and a remote one from b.
	leo2 := f.l.Endpoint(t, "leo2")
	pg2 := f.l.Endpoint(t, "pg2")
	start := time.Now()
	if err := a.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: "leo2", Network: "leonardo", Address: "10.0.10.6/24", Netns: leo2.Name}); err != nil {
		t.Fatal(err)
	}
	if err := b.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: "pg2", Network: "db", Address: "10.0.100.4/24", Netns: pg2.Name}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, a, "leonardo", "10.0.10.6/32", "local leo2", 5*time.Second)
	waitRoute(t, a, "leonardo", "10.0.100.4/32", "192.0.2.2", 5*time.Second)
	waitRoute(t, b, "db", "10.0.10.6/32", "192.0.2.1", 5*time.Second)
	t.Logf("with bad1 refused: new local and remote routes installed on both nodes in %v (bound 5s)", time.Since(start).Round(time.Millisecond))
	mustPing(t, leo2, "10.0.100.4")
	if hasRoute(t, b, "db", "10.0.10.9/32") {
		t.Error("b has a route to bad1, whose port a's vRouter refused: traffic to it would be dropped")
	}

	// The refusal is retried with backoff: 1, 2, 4 s... so at most 4
	// attempts in 6 s (a loop every second would make 7).
	first := waitRefused(t, a, "bad1")
	time.Sleep(6 * time.Second)
	later := waitRefused(t, a, "bad1")
	if n := later.Attempts - first.Attempts; n < 1 || n > 4 {
		t.Errorf("bad1 attempted %d times in 6 s, want 1..4 (retried with a growing delay)", n)
	}
	t.Logf("bad1: %d attempts in 6 s", later.Attempts-first.Attempts)
	if m := scrape(t, a, "127.0.0.1:9473"); !strings.Contains(m, `weft_vrouter_refused_ops{endpoint="bad1"}`) {
		t.Errorf("metrics lack weft_vrouter_refused_ops for bad1:\n%s", grepLines(m, "refused"))
	}
	if out := a.Agent.Output(); !strings.Contains(out, "vrouter refused an op") || !strings.Contains(out, "endpoint=bad1") {
		t.Errorf("the log does not say what was refused:\n%s", grepLines(out, "refused"))
	}

	// A restarted agent whose first reconcile is refused runs on.
	a.Agent.Kill(unix.SIGKILL)
	a.StartAgent(t, f.cfg, "--metrics", "127.0.0.1:9473")
	waitRefused(t, a, "bad1")
	time.Sleep(2 * time.Second)
	if a.Agent.Exited() {
		t.Fatalf("the restarted agent exited:\n%s", a.Agent.Output())
	}
	mustPing(t, f.eps["leo1"], "10.0.100.3")
}

// waitRefused waits until h's status reports a refused op for endpoint.
func waitRefused(t *testing.T, h *lab.Host, endpoint string) agentapi.Refusal {
	t.Helper()
	var got agentapi.Refusal
	var last agentapi.Status
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := h.AgentAPI.Status()
		if err == nil {
			last = st
			for _, rf := range st.Refused {
				if rf.Endpoint == endpoint && strings.HasPrefix(rf.Op, "put_port") {
					return rf
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: status reports no refused port for %s: %+v", h.Name, endpoint, last)
	return got
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
