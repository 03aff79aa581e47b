package pid1

// Real child processes (/bin/sh) against the real reaper: nothing here is
// faked but the clock of the restart backoff. The tests run one after the
// other (no t.Parallel): two reapers in one process would take each other's
// children.

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// startReaper runs a Reaper until the test ends.
func startReaper(t *testing.T) *Reaper {
	t.Helper()
	r := NewReaper(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func forkSh(script string) func() (int, error) {
	return func() (int, error) {
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", script}, &syscall.ProcAttr{
			Env: []string{"PATH=/bin:/usr/bin"}, Sys: &syscall.SysProcAttr{Setsid: true},
		})
	}
}

func waitStatus(t *testing.T, c <-chan syscall.WaitStatus) syscall.WaitStatus {
	t.Helper()
	select {
	case ws := <-c:
		return ws
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status within 10s")
	}
	return 0
}

func TestReaperDispatchesByPID(t *testing.T) {
	testenv.RequireTools(t, "sh")
	r := startReaper(t)
	var mu sync.Mutex
	var orphans []int
	r.mu.Lock()
	r.OnOrphan = func(pid int, ws syscall.WaitStatus) { mu.Lock(); orphans = append(orphans, pid); mu.Unlock() }
	r.mu.Unlock()

	// Start several children at once, exiting in reverse order, some at
	// once (the race Start closes); each status must reach its own pid.
	type child struct {
		pid  int
		c    <-chan syscall.WaitStatus
		code int
	}
	var kids []child
	for i := range 6 {
		script := "exit " + string(rune('0'+i))
		if i%2 == 1 {
			script = "sleep 0." + string(rune('0'+(6-i))) + "; " + script
		}
		pid, c, err := r.Start(forkSh(script))
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, child{pid, c, i})
	}
	for _, k := range kids {
		ws := waitStatus(t, k.c)
		if !ws.Exited() || ws.ExitStatus() != k.code {
			t.Errorf("pid %d: %s, want exit status %d", k.pid, describeStatus(ws), k.code)
		}
	}
	pid, c, err := r.Start(forkSh("kill -TERM $$"))
	if err != nil {
		t.Fatal(err)
	}
	if ws := waitStatus(t, c); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("pid %d: %s, want killed by SIGTERM", pid, describeStatus(ws))
	}
	if err := r.Signal(pid, syscall.SIGTERM, false); err == nil {
		t.Error("Signal to a reaped pid succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(orphans) != 0 {
		t.Errorf("registered children reported as orphans: %v", orphans)
	}
}

func TestReaperReapsOrphans(t *testing.T) {
	testenv.RequireTools(t, "sh", "sleep")
	// As a subreaper the test process adopts its grandchildren, as PID 1
	// adopts every orphan.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		testenv.Unavailable(t, "PR_SET_CHILD_SUBREAPER: "+err.Error())
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	r := startReaper(t)
	got := make(chan int, 4)
	r.mu.Lock()
	r.OnOrphan = func(pid int, ws syscall.WaitStatus) { got <- pid }
	r.mu.Unlock()

	pid, c, err := r.Start(forkSh("sleep 0.2 & echo $! >/dev/null; exit 0"))
	if err != nil {
		t.Fatal(err)
	}
	if ws := waitStatus(t, c); ws.ExitStatus() != 0 {
		t.Fatalf("parent: %s", describeStatus(ws))
	}
	select {
	case orphan := <-got:
		if orphan == pid {
			t.Errorf("the registered parent %d was reported as an orphan", pid)
		}
		// Gone for good: no zombie left behind.
		if err := unix.Kill(orphan, 0); err == nil {
			t.Errorf("orphan %d still exists after reaping", orphan)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the orphaned sleep was not reaped")
	}
}

// testSupervisor returns a Supervisor on a fresh reaper whose backoff runs
// on a fake clock; exits are sent to the returned channel.
func testSupervisor(t *testing.T, clock Clock) (*Supervisor, <-chan ServiceExit, func() []string) {
	t.Helper()
	r := startReaper(t)
	var mu sync.Mutex
	var lines []string
	s := NewSupervisor(r, nil, func(svc, line string) {
		mu.Lock()
		lines = append(lines, svc+": "+line)
		mu.Unlock()
	})
	s.Clock = clock
	exits := make(chan ServiceExit, 64)
	s.OnExit = func(e ServiceExit) { exits <- e }
	t.Cleanup(func() { s.Stop(time.Second) })
	return s, exits, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(lines) }
}

func nextExit(t *testing.T, exits <-chan ServiceExit) ServiceExit {
	t.Helper()
	select {
	case e := <-exits:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no service exit within 10s")
	}
	return ServiceExit{}
}

func TestSupervisorRestartBackoff(t *testing.T) {
	testenv.RequireTools(t, "sh")
	clock := newFakeClock()
	s, exits, _ := testSupervisor(t, clock)
	if err := s.Start(Service{Name: "crash", Path: "/bin/sh", Args: []string{"sh", "-c", "exit 1"}}); err != nil {
		t.Fatal(err)
	}
	var got []time.Duration
	pids := map[int]bool{}
	for range 8 {
		e := nextExit(t, exits)
		if e.StartErr != nil || !e.Status.Exited() || e.Status.ExitStatus() != 1 {
			t.Fatalf("exit %+v: %s", e, describeStatus(e.Status))
		}
		pids[e.PID] = true
		got = append(got, e.Next)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("restart delays %v, want %v", got, want)
	}
	if len(pids) != 8 {
		t.Errorf("%d distinct pids over 8 runs", len(pids))
	}
}

func TestSupervisorBackoffResetsAfterLongRun(t *testing.T) {
	testenv.RequireTools(t, "sh")
	clock := newFakeClock()
	clock.step = 61 * time.Second // every run looks 61 s long
	s, exits, _ := testSupervisor(t, clock)
	if err := s.Start(Service{Name: "flaky", Path: "/bin/sh", Args: []string{"sh", "-c", "exit 2"}}); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if e := nextExit(t, exits); e.Next != time.Second {
			t.Errorf("after a run of %v the delay is %v, want 1s", e.Ran, e.Next)
		}
	}
}

func TestSupervisorMissingBinaryRetries(t *testing.T) {
	s, exits, _ := testSupervisor(t, newFakeClock())
	if err := s.Start(Service{Name: "ghost", Path: "/nonexistent/weft", Args: []string{"weft", "agent"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second} {
		e := nextExit(t, exits)
		if e.StartErr == nil || e.Next != want {
			t.Errorf("exit %+v, want a start error and delay %v", e, want)
		}
	}
}

func TestSupervisorOutputAndStop(t *testing.T) {
	testenv.RequireTools(t, "sh", "sleep")
	s, exits, lines := testSupervisor(t, realClock{})
	// Ignores SIGTERM (and so does its sleep): Stop must escalate to SIGKILL.
	script := `echo hello; echo oops >&2; trap "" TERM; sleep 30`
	if err := s.Start(Service{Name: "stubborn", Path: "/bin/sh", Args: []string{"sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(lines()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := lines(); !slices.Equal(got, []string{"stubborn: hello", "stubborn: oops"}) {
		t.Errorf("output lines %q", got)
	}
	pid := s.PID("stubborn")
	if pid == 0 {
		t.Fatal("no pid while running")
	}
	start := time.Now()
	s.Stop(300 * time.Millisecond)
	took := time.Since(start)
	e := nextExit(t, exits)
	if !e.Status.Signaled() || e.Status.Signal() != syscall.SIGKILL || e.Next >= 0 {
		t.Errorf("stop: %s next %v, want killed by SIGKILL and no restart", describeStatus(e.Status), e.Next)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("Stop took %v with a 300ms grace", took)
	}
	// The whole process group went: the sleep too. It was orphaned when sh
	// died, so its new parent reaps it a moment later; until then it is a
	// zombie that kill(2) still finds.
	for unix.Kill(-pid, 0) == nil {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("process group %d survived Stop", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSupervisorRestartIsImmediate(t *testing.T) {
	testenv.RequireTools(t, "sh", "sleep")
	s, exits, _ := testSupervisor(t, newFakeClock())
	if err := s.Start(Service{Name: "agent", Path: "/bin/sh", Args: []string{"sh", "-c", "exec sleep 30"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.PID("agent") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	first := s.PID("agent")
	if err := s.Restart("agent"); err != nil {
		t.Fatal(err)
	}
	e := nextExit(t, exits)
	if e.PID != first || e.Next != 0 || e.Status.Signal() != syscall.SIGTERM {
		t.Errorf("restart: pid %d (first %d) %s next %v", e.PID, first, describeStatus(e.Status), e.Next)
	}
	for s.PID("agent") == 0 || s.PID("agent") == first {
		if time.Now().After(deadline) {
			t.Fatal("not started again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Start(Service{Name: "agent", Path: "/bin/true"}); err == nil {
		t.Error("a second service of the same name was accepted")
	}
}
