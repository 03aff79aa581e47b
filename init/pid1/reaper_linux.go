package pid1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Reaper is PID 1's one wait loop. Every process whose parent dies is
// re-parented to PID 1, which must wait for it or the process table fills
// with zombies. One loop calls wait4(-1) and dispatches each exit status by
// pid: to the supervisor for the processes it started, to OnOrphan for the
// rest.
//
// Why one loop and not exec.Cmd.Wait: a wait4(-1) reaper and a per-child
// wait4(pid) (or Go's waitid on a pidfd) race for the same child, and when
// the reaper wins the other side loses the exit status (ECHILD). So
// supervised children are started through Reaper.Start, which forks while
// holding the reaper's lock and registers the pid before releasing it; the
// loop reaps only under that lock. A child that exits at once is therefore
// never reaped before its pid is registered. The consequence for the rest
// of PID 1: nothing in this process may start children with exec.Cmd or
// os.StartProcess and wait for them; start them with Reaper.Start.
type Reaper struct {
	Log *slog.Logger
	// OnOrphan is called (under the reaper's lock: be quick) for a reaped
	// process nobody registered; nil logs it at debug level.
	OnOrphan func(pid int, ws syscall.WaitStatus)

	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
}

// NewReaper returns a Reaper; call Run to start reaping.
func NewReaper(log *slog.Logger) *Reaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reaper{Log: log, waiting: map[int]chan syscall.WaitStatus{}}
}

// Run reaps on every SIGCHLD until ctx is done. A slow tick reaps too, in
// case a signal is ever lost; extra wait4 calls with WNOHANG cost nothing.
func (r *Reaper) Run(ctx context.Context) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-tick.C:
		}
	}
}

// reap collects every exited child.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none has exited
		}
		if c, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			c <- ws // buffered, never blocks
			continue
		}
		if r.OnOrphan != nil {
			r.OnOrphan(pid, ws)
		} else {
			r.Log.Debug("reaped", "pid", pid, "status", describeStatus(ws))
		}
	}
}

// Start runs start (which must fork a child and return its pid, e.g.
// syscall.ForkExec) with reaping held off, and returns a channel that
// receives the child's exit status exactly once.
func (r *Reaper) Start(start func() (int, error)) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	c := make(chan syscall.WaitStatus, 1)
	r.waiting[pid] = c
	return pid, c, nil
}

// Signal sends sig to pid (to its process group when group is set) if pid
// is a registered child not yet reaped. Holding the lock makes this safe
// against pid reuse: the pid cannot be recycled before we reap it.
func (r *Reaper) Signal(pid int, sig syscall.Signal, group bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiting[pid]; !ok {
		return fmt.Errorf("pid %d: %w", pid, os.ErrProcessDone)
	}
	target := pid
	if group {
		target = -pid
	}
	return syscall.Kill(target, sig)
}

// describeStatus renders an exit status for log lines.
func describeStatus(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		s := "killed by " + ws.Signal().String()
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}
