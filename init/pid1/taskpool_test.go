package pid1

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/controller/fleetapi"
)

// The pool runs at most its workers at once, holds at most its queue
// more, and refuses the rest without running them.
func TestTaskPoolBounds(t *testing.T) {
	const workers, queued = 4, 16
	p := newTaskPool(workers, queued)
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	var running, most, ran atomic.Int32
	task := func() {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		started <- struct{}{}
		<-release
		running.Add(-1)
		ran.Add(1)
	}
	for range workers {
		if !p.submit(task) {
			t.Fatal("a task refused by an idle pool")
		}
	}
	for range workers {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("the workers did not start their tasks")
		}
	}
	accepted, refused := 0, 0
	for range 100 {
		if p.submit(task) {
			accepted++
		} else {
			refused++
		}
	}
	if accepted != queued || refused != 100-queued {
		t.Errorf("with every worker busy: %d accepted, %d refused; want %d and %d", accepted, refused, queued, 100-queued)
	}
	close(release)
	p.close()
	if got := ran.Load(); got != workers+queued {
		t.Errorf("%d tasks ran, want %d", got, workers+queued)
	}
	if got := most.Load(); got != workers {
		t.Errorf("%d tasks ran at once, want at most %d", got, workers)
	}
}

// A probe the controller accepts is one the agent runs, and PID 1 does
// not hold more probes at once than the agent runs.
func TestProbeBoundsAgree(t *testing.T) {
	if fleetapi.MaxProbeDuration > agentapi.MaxProbeDuration {
		t.Errorf("the controller accepts probes of %v, the agent runs them for at most %v", fleetapi.MaxProbeDuration, agentapi.MaxProbeDuration)
	}
	if probeWorkers > agentapi.MaxRunningProbes {
		t.Errorf("PID 1 runs %d probes at once, the agent at most %d", probeWorkers, agentapi.MaxRunningProbes)
	}
}
