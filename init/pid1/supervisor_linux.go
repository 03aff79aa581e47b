package pid1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Service is a process PID 1 keeps running.
type Service struct {
	Name string
	Path string   // executable
	Args []string // argv, including argv[0]
	Env  []string // nil: PID 1's environment with a default PATH
}

// ServiceExit describes one end of a service process (or a failed start),
// for OnExit.
type ServiceExit struct {
	Service  string
	PID      int
	Status   syscall.WaitStatus
	StartErr error         // the fork/exec failed; Status is meaningless
	Ran      time.Duration // how long it ran
	Next     time.Duration // restart delay; negative when not restarted (stopping)
}

// Supervisor starts services and restarts them when they exit, with an
// exponential backoff (MinBackoff doubling to MaxBackoff) that starts over
// once a process stayed up ResetAfter. Exit statuses come from the Reaper,
// never from a wait of our own (see Reaper). Each service's stdout and
// stderr go, line by line, to Line.
type Supervisor struct {
	Reaper *Reaper
	Log    *slog.Logger
	Clock  Clock
	// Line receives each output line of a service (without the newline).
	Line                               func(service, line string)
	MinBackoff, MaxBackoff, ResetAfter time.Duration
	// OnExit, when set, observes every exit (tests, status).
	OnExit func(ServiceExit)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	svcs   map[string]*supervised
	grace  time.Duration
	devnul *os.File
}

type supervised struct {
	svc     Service
	mu      sync.Mutex
	pid     int  // 0 while not running
	restart bool // Restart asked for: no backoff for the next start
	out     *os.File
	outFD   uintptr
}

// NewSupervisor returns a Supervisor with the backoff of the design
// (1 s doubling to 30 s, reset after 60 s up).
func NewSupervisor(r *Reaper, log *slog.Logger, line func(service, line string)) *Supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{
		Reaper: r, Log: log, Clock: realClock{}, Line: line,
		MinBackoff: time.Second, MaxBackoff: 30 * time.Second, ResetAfter: 60 * time.Second,
		ctx: ctx, cancel: cancel, svcs: map[string]*supervised{}, grace: 10 * time.Second,
	}
}

// Start begins supervising svc. Starting a name twice is an error.
func (s *Supervisor) Start(svc Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return fmt.Errorf("service %s: supervisor stopped", svc.Name)
	}
	if _, ok := s.svcs[svc.Name]; ok {
		return fmt.Errorf("service %s: already supervised", svc.Name)
	}
	if s.devnul == nil {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("service %s: stdin: %w", svc.Name, err)
		}
		s.devnul = f
	}
	// One pipe per service, kept across restarts: its write end is every
	// incarnation's stdout and stderr, its read end feeds Line.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("service %s: output pipe: %w", svc.Name, err)
	}
	if svc.Env == nil {
		svc.Env = defaultEnv()
	}
	st := &supervised{svc: svc, out: w, outFD: w.Fd()}
	s.svcs[svc.Name] = st
	k := keeper{log: s.Log}
	k.once("service output "+svc.Name, func() { s.copyLines(svc.Name, r) })
	s.wg.Add(1)
	k.once("service "+svc.Name, func() {
		defer s.wg.Done()
		s.loop(st)
	})
	return nil
}

// PID returns the running process of a service, 0 when none.
func (s *Supervisor) PID(name string) int {
	s.mu.Lock()
	st := s.svcs[name]
	s.mu.Unlock()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pid
}

// Restart stops a service's process with SIGTERM; it is started again at
// once, without backoff (e.g. the agent after a new config).
func (s *Supervisor) Restart(name string) error {
	s.mu.Lock()
	st := s.svcs[name]
	s.mu.Unlock()
	if st == nil {
		return fmt.Errorf("service %s: not supervised", name)
	}
	st.mu.Lock()
	pid := st.pid
	st.restart = true
	st.mu.Unlock()
	if pid == 0 {
		return nil // between incarnations: the flag makes the next start immediate
	}
	return s.Reaper.Signal(pid, syscall.SIGTERM, true)
}

// Stop ends supervision: every service gets SIGTERM (its whole process
// group), then SIGKILL after grace. It returns once they are gone or a few
// seconds after grace.
func (s *Supervisor) Stop(grace time.Duration) {
	s.mu.Lock()
	s.grace = grace
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace + 5*time.Second):
		s.Log.Warn("services did not stop in time")
	}
}

func (s *Supervisor) loop(st *supervised) {
	name := st.svc.Name
	bo := backoff{min: s.MinBackoff, max: s.MaxBackoff}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   st.svc.Env,
		Files: []uintptr{s.devnul.Fd(), st.outFD, st.outFD},
		// Own session and process group: stopping a service reaches
		// whatever it started, and it has no controlling terminal.
		Sys: &syscall.SysProcAttr{Setsid: true},
	}
	for s.ctx.Err() == nil {
		started := s.Clock.Now()
		pid, exited, err := s.Reaper.Start(func() (int, error) {
			return syscall.ForkExec(st.svc.Path, st.svc.Args, attr)
		})
		if err != nil {
			next := bo.Next()
			s.Log.Error("service did not start", "service", name, "path", st.svc.Path, "err", err, "retry_in", next)
			s.observe(ServiceExit{Service: name, StartErr: err, Next: next})
			if s.Clock.Sleep(s.ctx, next) != nil {
				return
			}
			continue
		}
		st.mu.Lock()
		st.pid = pid
		st.mu.Unlock()
		s.Log.Info("service started", "service", name, "pid", pid)

		var ws syscall.WaitStatus
		select {
		case ws = <-exited:
		case <-s.ctx.Done():
			ws = s.stopProcess(name, pid, exited)
			st.mu.Lock()
			st.pid = 0
			st.mu.Unlock()
			s.observe(ServiceExit{Service: name, PID: pid, Status: ws, Ran: s.Clock.Now().Sub(started), Next: -1})
			return
		}
		ran := s.Clock.Now().Sub(started)
		st.mu.Lock()
		st.pid = 0
		immediate := st.restart
		st.restart = false
		st.mu.Unlock()
		if ran >= s.ResetAfter {
			bo.Reset()
		}
		var next time.Duration
		if immediate {
			bo.Reset()
		} else {
			next = bo.Next()
		}
		if s.ctx.Err() != nil {
			next = -1
		}
		s.Log.Warn("service exited", "service", name, "pid", pid, "status", describeStatus(ws), "ran", ran.Round(time.Millisecond), "restart_in", next)
		s.observe(ServiceExit{Service: name, PID: pid, Status: ws, Ran: ran, Next: next})
		if next > 0 && s.Clock.Sleep(s.ctx, next) != nil {
			return
		}
	}
}

// stopProcess sends SIGTERM to the process group, SIGKILL after the grace,
// and returns the exit status (zero when it never came).
func (s *Supervisor) stopProcess(name string, pid int, exited <-chan syscall.WaitStatus) syscall.WaitStatus {
	s.mu.Lock()
	grace := s.grace
	s.mu.Unlock()
	if err := s.Reaper.Signal(pid, syscall.SIGTERM, true); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.Log.Warn("stopping service", "service", name, "pid", pid, "signal", "SIGTERM", "err", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case ws := <-exited:
		return ws
	case <-t.C:
	}
	s.Log.Warn("service ignored SIGTERM, killing it", "service", name, "pid", pid, "grace", grace)
	if err := s.Reaper.Signal(pid, syscall.SIGKILL, true); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.Log.Warn("stopping service", "service", name, "pid", pid, "signal", "SIGKILL", "err", err)
	}
	select {
	case ws := <-exited:
		return ws
	case <-time.After(5 * time.Second):
		return 0
	}
}

func (s *Supervisor) observe(e ServiceExit) {
	if s.OnExit != nil {
		s.OnExit(e)
	}
}

// copyLines forwards a service's output line by line; an overlong line is
// cut into pieces rather than buffered without bound.
func (s *Supervisor) copyLines(name string, r io.Reader) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 && s.Line != nil {
			s.Line(name, strings.TrimRight(string(b), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// defaultEnv is PID 1's environment with a PATH (the kernel gives init none).
func defaultEnv() []string {
	env := os.Environ()
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return env
		}
	}
	return append(env, "PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/")
}
