package agent_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
)

// openFiles is the number of file descriptors process pid holds.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open files of %d: %v", pid, err)
	}
	return len(fds)
}

// Probes are bounded and end with their caller. On one node running the
// real vRouter and agent: 500 probes of an address that never answers
// (each would run 5 × 2 s), abandoned by their client after 200 ms, leave
// the agent's open files where they were (before, each left its raw
// socket open for the probe's whole time); more probes at once than the
// agent runs are refused naming the limit; a probe longer than the bound
// is refused; and a probe that reaches its target still works.
func TestProbesBounded(t *testing.T) {
	f := newFleet(t, "wtpb", bgpd.GoBGPd, []string{"a"}, fleetConfig{Endpoints: []epSpec{
		{Name: "leo1", Network: "leonardo", Address: "10.0.10.5/24", Node: "a"},
		{Name: "leo2", Network: "leonardo", Address: "10.0.10.6/24", Node: "a"},
	}})
	a := f.hosts["a"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay)
	waitRoute(t, a, "leonardo", "10.0.10.6/32", "local", 20*time.Second)
	ctx := context.Background()

	var res agentapi.ProbeResult
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res, err = a.AgentAPI.Probe(ctx, agentapi.ProbeRequest{Endpoint: "leo1", To: "10.0.10.6", Count: 1, TimeoutMillis: 1000})
		if (err == nil && res.OK) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !res.OK {
		t.Fatalf("leo1 → leo2: %+v %v, want a reply", res, err)
	}

	pid := a.Agent.Cmd.Process.Pid
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "weft" {
		t.Fatalf("process %d is %q, not the agent", pid, comm)
	}
	before := openFiles(t, pid)

	t.Run("abandoned", func(t *testing.T) {
		const total = 500
		var abandoned, refused atomic.Int32
		for sent := 0; sent < total; {
			var wg sync.WaitGroup
			for range min(agentapi.MaxRunningProbes, total-sent) {
				sent++
				wg.Add(1)
				go func() {
					defer wg.Done()
					pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					defer cancel()
					_, err := a.AgentAPI.Probe(pctx, agentapi.ProbeRequest{Endpoint: "leo1", To: "10.0.10.99", Count: 5, TimeoutMillis: 2000})
					switch {
					case err == nil:
						t.Errorf("a probe of an address that never answers ended in 200 ms without an error")
					case strings.Contains(err.Error(), "probes are running"):
						refused.Add(1) // the previous wave's are still ending
					default:
						abandoned.Add(1)
					}
				}()
			}
			wg.Wait()
		}
		t.Logf("%d probes abandoned, %d refused while the previous ones ended", abandoned.Load(), refused.Load())
		if abandoned.Load() < total/2 {
			t.Errorf("only %d of %d probes ran until abandoned: the test proves little", abandoned.Load(), total)
		}
		// A generous bound for the agent to notice the closed connections;
		// before the fix the sockets stayed for the probes' 10 s.
		var now int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if now = openFiles(t, pid); now <= before+2 || time.Now().After(deadline) {
				break
			}
		}
		if now > before+2 {
			t.Errorf("the agent holds %d open files after %d abandoned probes, %d before", now, total, before)
		}
	})

	t.Run("concurrency", func(t *testing.T) {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		const n = agentapi.MaxRunningProbes + 4
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := a.AgentAPI.Probe(pctx, agentapi.ProbeRequest{Endpoint: "leo1", To: "10.0.10.99", Count: 1, TimeoutMillis: 8000})
				errs <- err
			}()
		}
		want := fmt.Sprintf("%d probes are running, the most an agent runs at once", agentapi.MaxRunningProbes)
		got := 0
		for range n - agentapi.MaxRunningProbes {
			select {
			case err := <-errs:
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("probe %d over the limit: %v, want %q", got+agentapi.MaxRunningProbes+1, err, want)
				}
				got++
			case <-time.After(7 * time.Second):
				t.Fatalf("%d probes over the limit of %d refused, want %d", got, agentapi.MaxRunningProbes, n-agentapi.MaxRunningProbes)
			}
		}
	})

	t.Run("duration", func(t *testing.T) {
		_, err := a.AgentAPI.Probe(ctx, agentapi.ProbeRequest{Endpoint: "leo1", To: "10.0.10.99", Count: 100, TimeoutMillis: 60000})
		if err == nil || !strings.Contains(err.Error(), "more than the 10s a probe may run") {
			t.Errorf("a probe of 100 × 60 s: %v, want refused", err)
		}
	})
}
