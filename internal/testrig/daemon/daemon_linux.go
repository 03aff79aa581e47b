// Package daemon runs the processes the test rigs start (weft, containerd,
// kubelet): output kept, killed with the test process (Pdeathsig), and
// stopped by signal and PID.
package daemon

import (
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/syncbuf"
)

// Process is a started daemon.
type Process struct {
	Cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

// Start starts cmd with its stdout and stderr kept, dying with the test.
func Start(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Output is what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends sig to the process and waits for it to exit (SIGKILL after
// 10 s); a process that has ended already is left alone.
func (p *Process) Kill(sig unix.Signal) {
	if p.Exited() {
		return
	}
	unix.Kill(p.Cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		unix.Kill(p.Cmd.Process.Pid, unix.SIGKILL)
		<-p.done
	}
}
