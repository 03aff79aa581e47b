package pid1

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/init/steps"
)

// stopGrace is how long services get between SIGTERM and SIGKILL at poweroff.
const stopGrace = 10 * time.Second

// handleSignals turns signals into an orderly poweroff or reboot.
func (n *node) handleSignals() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	for sig := range c {
		n.requestShutdown(sig == syscall.SIGUSR1, sig.String())
	}
}

// requestShutdown starts the orderly poweroff (or reboot) once, whoever
// asks: a signal, or Ironic's conductor through the agent API.
func (n *node) requestShutdown(reboot bool, by string) {
	cmd, what := unix.LINUX_REBOOT_CMD_POWER_OFF, "poweroff"
	if reboot {
		cmd, what = unix.LINUX_REBOOT_CMD_RESTART, "reboot"
	}
	n.shutdownOnce.Do(func() {
		n.log.Warn("shutting down", "action", what, "by", by)
		n.rec.Report(StepShutdown, steps.Waiting, what+" requested by "+by, "action", what)
		n.keeper.once("shutdown", func() { n.shutdown(cmd, what) })
	})
}

// shutdown stops everything in order and powers off or reboots. Whatever
// fails on the way, it ends in reboot(2); if even that fails, PID 1 stays
// up (exiting would panic the kernel).
func (n *node) shutdown(cmd int, what string) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("panic during shutdown, going down anyway", "panic", fmt.Sprint(r))
		}
		if err := n.rec.Flush(); err != nil { // the status file's last state
			n.log.Warn("writing boot status", "err", err)
		}
		unix.Sync()
		err := unix.Reboot(cmd)
		n.log.Error("reboot(2) failed; the node stays up", "action", what, "err", err)
	}()
	n.cancel() // bring-up, module watch
	n.sup.Stop(stopGrace)
	// Everything else: SIGTERM, a short grace, SIGKILL. kill(-1) reaches
	// every process but PID 1; the reaper collects them.
	_ = unix.Kill(-1, unix.SIGTERM)
	for deadline := time.Now().Add(3 * time.Second); userProcesses() > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	_ = unix.Kill(-1, unix.SIGKILL)
	if n.net != nil {
		if err := n.net.Close(); err != nil {
			n.log.Warn("stopping the underlay", "err", err)
		}
	}
	unix.Sync()
	for _, err := range unmountAll() {
		n.log.Debug("unmount at shutdown", "err", err)
	}
	n.log.Warn("going down", "action", what)
}

// userProcesses counts the processes besides PID 1 that still run a
// program. kill(-1, 0) cannot tell: it also succeeds on kernel threads,
// which have an empty cmdline (as zombies do, which the reaper collects).
func userProcesses() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(b) > 0 {
			n++
		}
	}
	return n
}
