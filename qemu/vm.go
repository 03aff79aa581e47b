package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary is the QEMU system emulator Start runs, looked up on PATH.
const Binary = "qemu-system-x86_64"

// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// ErrExited is wrapped by WaitFor's error when QEMU ended before the
// pattern appeared.
var ErrExited = errors.New("qemu exited")

// tailLines is how much console a WaitFor error carries.
const tailLines = 30

// VM is one running QEMU. Its methods are safe for concurrent use.
type VM struct {
	name  string
	args  []string
	macs  []net.HardwareAddr
	cmd   *exec.Cmd
	start time.Time
	con   *console
	errb  *ringBuffer

	done    chan struct{} // closed once QEMU has exited and is cleaned up
	exitErr error         // cmd.Wait's result, valid after done

	stopOnce sync.Once
	stopErr  error
}

// Start checks what m needs (QEMU, the kernel, the tools for a config drive,
// the iPXE ROM for PXE), builds the config drive and starts QEMU in its own
// process group with the serial console captured. The VM is stopped when
// ctx ends, or by Stop; QEMU also dies with this process (PR_SET_PDEATHSIG).
// When a NIC listens on a socket segment, Start returns once QEMU's port is
// bound, so the connecting VM can be started next.
func Start(ctx context.Context, m Machine) (*VM, error) {
	if m.Name == "" {
		m.Name = DefaultName
	}
	fail := func(err error) (*VM, error) { return nil, fmt.Errorf("qemu %q: %w", m.Name, err) }
	if err := m.validate(); err != nil {
		return fail(err)
	}
	macs, err := resolveMACs(m.Name, m.NICs)
	if err != nil {
		return fail(err)
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return fail(fmt.Errorf("%s not found: run make deps (Debian package qemu-system-x86)", Binary))
	}
	if err := preflight(&m, bin); err != nil {
		return fail(err)
	}

	var tmp, drive string
	cleanup := func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}
	if m.ConfigDrive != "" {
		if tmp, err = os.MkdirTemp("", "weft-qemu-"); err != nil {
			return fail(err)
		}
		build, name := BuildConfigDrive, "config-2.iso"
		if m.ConfigDriveFS == FSVFAT {
			build, name = BuildConfigDriveVFAT, "config-2.img"
		}
		drive = filepath.Join(tmp, name)
		if err := build(ctx, m.ConfigDrive, drive); err != nil {
			cleanup()
			return fail(err)
		}
	}
	var logFile *os.File
	if m.ConsoleLog != "" {
		if logFile, err = os.Create(m.ConsoleLog); err != nil {
			cleanup()
			return fail(fmt.Errorf("console_log: %w", err))
		}
	}

	vm := &VM{
		name: m.Name,
		args: buildArgs(&m, macs, drive),
		macs: macs,
		errb: &ringBuffer{max: 64 << 10},
		done: make(chan struct{}),
	}
	vm.cmd = exec.Command(bin, vm.args...)
	var taps []*os.File
	for i, n := range m.NICs {
		if n.TAP == nil {
			continue
		}
		f, err := openTAP(n.TAP.Netns, n.TAP.Ifname, n.TAP.Bridge)
		if err != nil {
			for _, t := range taps {
				t.Close()
			}
			cleanup()
			return fail(fmt.Errorf("nics[%d].tap: %w", i, err))
		}
		taps = append(taps, f)
	}
	vm.cmd.ExtraFiles = taps
	defer func() {
		// QEMU has its own copies once started.
		for _, t := range taps {
			t.Close()
		}
	}()
	vm.cmd.Stdin = nil // /dev/null: QEMU must not put a terminal into raw mode
	vm.cmd.Stderr = vm.errb
	vm.cmd.SysProcAttr = sysProcAttr()
	// Children QEMU spawns (guestfwd cmd:) could hold the pipes open.
	vm.cmd.WaitDelay = 2 * time.Second
	vm.start = time.Now()
	var outs []io.Writer
	if logFile != nil { // not a nil *os.File in an interface
		outs = append(outs, logFile)
	}
	vm.con = newConsole(vm.start, append(outs, m.ConsoleOut)...)
	vm.cmd.Stdout = vm.con
	if err := vm.cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		cleanup()
		return fail(fmt.Errorf("starting %s: %w", bin, err))
	}

	go func() {
		err := vm.cmd.Wait()
		// Whatever QEMU left behind in its group goes with it.
		_ = signalGroup(vm.cmd.Process.Pid, syscall.SIGKILL)
		if logFile != nil {
			if cerr := logFile.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("console_log: %w", cerr)
			}
		}
		cleanup()
		vm.exitErr = err
		close(vm.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			vm.Stop()
		case <-vm.done:
		}
	}()

	for i, n := range m.NICs {
		if n.Socket == nil || n.Socket.Listen == "" {
			continue
		}
		if err := vm.waitListening(ctx, netip.MustParseAddrPort(n.Socket.Listen)); err != nil {
			vm.Stop()
			return fail(fmt.Errorf("nics[%d].socket.listen: %w", i, err))
		}
	}
	return vm, nil
}

// preflight checks the files and firmware m needs, so that a missing piece
// is named before QEMU starts instead of buried in its stderr.
func preflight(m *Machine, bin string) error {
	for _, f := range []struct{ field, path string }{{"kernel", m.Kernel}, {"initrd", m.Initrd}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.field, err)
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("%s: %s is not a regular file", f.field, f.path)
		}
	}
	if m.ConfigDrive != "" {
		if st, err := os.Stat(m.ConfigDrive); err != nil {
			return fmt.Errorf("config_drive: %w", err)
		} else if !st.IsDir() {
			return fmt.Errorf("config_drive: %s is not a directory", m.ConfigDrive)
		}
	}
	for i, n := range m.NICs {
		if u := n.User; u != nil && u.TFTP != "" {
			if st, err := os.Stat(u.TFTP); err != nil {
				return fmt.Errorf("nics[%d].user.tftp: %w", i, err)
			} else if !st.IsDir() {
				return fmt.Errorf("nics[%d].user.tftp: %s is not a directory", i, u.TFTP)
			}
			if u.BootFile != "" {
				if _, err := os.Stat(filepath.Join(u.TFTP, u.BootFile)); err != nil {
					return fmt.Errorf("nics[%d].user.boot_file: %w", i, err)
				}
			}
		}
	}
	if m.PXE {
		return checkPXEROM(bin, m.NICs[0].model())
	}
	return nil
}

// pxeROMs are the option ROMs QEMU 7.2's default machine loads for each
// NIC model; Debian's ipxe-qemu ships them in /usr/lib/ipxe/qemu.
var pxeROMs = map[string]string{
	"virtio-net-pci": "efi-virtio.rom",
	"e1000":          "efi-e1000.rom",
}

// checkPXEROM finds the NIC's iPXE ROM in QEMU's firmware directories (as
// `qemu -L help` lists them): without it -boot n has nothing to boot with
// and SeaBIOS just says "No bootable device".
func checkPXEROM(bin, model string) error {
	rom := pxeROMs[model]
	out, err := exec.Command(bin, "-L", "help").Output()
	if err != nil {
		return fmt.Errorf("pxe: listing firmware directories (%s -L help): %w", bin, err)
	}
	dirs := strings.Fields(string(out))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, rom)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("pxe: the %s ROM %s is in none of QEMU's firmware directories %v: install Debian package ipxe-qemu (run make deps)", model, rom, dirs)
}

// waitListening returns once QEMU listens on ap, read from /proc/net/tcp:
// probing by connecting would use up the one connection QEMU accepts, and
// probing by binding could take the port from QEMU.
func (vm *VM) waitListening(ctx context.Context, ap netip.AddrPort) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	limit := time.After(10 * time.Second)
	for {
		ok, err := listening(ap)
		if err != nil || ok {
			return err
		}
		select {
		case <-vm.done:
			return fmt.Errorf("qemu exited before listening on %s: %s", ap, vm.exitStatus())
		case <-ctx.Done():
			return ctx.Err()
		case <-limit:
			return fmt.Errorf("qemu does not listen on %s after 10s", ap)
		case <-t.C:
		}
	}
}

// Stop ends QEMU: SIGTERM to its process group, SIGKILL after StopGrace,
// then waits for it and removes the config drive image. It returns nil
// after a clean stop, and QEMU's failure when QEMU had already ended with
// one on its own. Calling Stop again returns the same result.
func (vm *VM) Stop() error {
	vm.stopOnce.Do(func() {
		select {
		case <-vm.done:
			if vm.exitErr != nil {
				vm.stopErr = fmt.Errorf("qemu %q had exited: %w (stderr: %s)", vm.name, vm.exitErr, strings.TrimSpace(vm.errb.String()))
			}
		default:
			_ = signalGroup(vm.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-vm.done:
			case <-time.After(StopGrace):
				_ = signalGroup(vm.cmd.Process.Pid, syscall.SIGKILL)
				<-vm.done
			}
		}
		if err := vm.con.writeErr(); err != nil && vm.stopErr == nil {
			vm.stopErr = fmt.Errorf("qemu %q: console log: %w", vm.name, err)
		}
	})
	return vm.stopErr
}

// Wait blocks until QEMU exits (the guest powered off with -no-reboot, or
// Stop) and returns its exit error: nil for status 0.
func (vm *VM) Wait() error {
	<-vm.done
	return vm.exitErr
}

// Done is closed once QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Console is the whole console so far, ANSI escapes and \r stripped.
func (vm *VM) Console() string { return vm.con.String() }

// Stderr is the last 64 KiB QEMU wrote to its stderr.
func (vm *VM) Stderr() string { return vm.errb.String() }

// MACs are the NICs' MAC addresses, in NIC order.
func (vm *VM) MACs() []net.HardwareAddr { return vm.macs }

// Pid is QEMU's process id (also its process group).
func (vm *VM) Pid() int { return vm.cmd.Process.Pid }

// WaitFor returns the first console line matching re: its submatches
// (FindStringSubmatch) and when it arrived, as time since Start. Each call
// searches from the start of the console, so a marker printed before the
// call is found; while waiting it scans only lines that are new since its
// last look. re is matched against one complete line at a time (without
// its newline; ANSI escapes and \r stripped): a line still being written
// is not matched until its newline arrives, so that `label=(\S+)$` cannot
// match half a word; after QEMU's exit the unterminated last line counts.
//
// On ctx's end or QEMU's exit it returns a *WaitError (wrapping ctx.Err()
// or ErrExited) carrying the last 30 console lines and QEMU's exit status
// and stderr.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, time.Duration, error) {
	next, exited := 0, false
	for {
		lines, part, changed := vm.con.snapshot(next)
		for _, l := range lines {
			if sm := re.FindStringSubmatch(l.text); sm != nil {
				return sm, l.at, nil
			}
		}
		next += len(lines)
		if exited {
			// QEMU is gone: the unterminated last line is final now.
			if sm := re.FindStringSubmatch(part.text); part.text != "" && sm != nil {
				return sm, part.at, nil
			}
			return nil, time.Since(vm.start), vm.waitError(re, ErrExited)
		}
		select {
		case <-changed:
		case <-vm.done:
			// One more scan: the console is complete once QEMU is reaped.
			exited = true
		case <-ctx.Done():
			return nil, time.Since(vm.start), vm.waitError(re, ctx.Err())
		}
	}
}

// WaitCount waits until n console lines match re (a marker that repeats,
// such as a retry's verdict) and returns the n-th match and its time.
func (vm *VM) WaitCount(ctx context.Context, re *regexp.Regexp, n int) ([]string, time.Duration, error) {
	next, seen, exited := 0, 0, false
	for {
		lines, _, changed := vm.con.snapshot(next)
		for _, l := range lines {
			if sm := re.FindStringSubmatch(l.text); sm != nil {
				if seen++; seen >= n {
					return sm, l.at, nil
				}
			}
		}
		next += len(lines)
		if exited {
			return nil, time.Since(vm.start), vm.waitError(re, fmt.Errorf("%w after %d of %d matches", ErrExited, seen, n))
		}
		select {
		case <-changed:
		case <-vm.done:
			exited = true
		case <-ctx.Done():
			return nil, time.Since(vm.start), vm.waitError(re, fmt.Errorf("%w after %d of %d matches", ctx.Err(), seen, n))
		}
	}
}

// WaitError is WaitFor's failure: what was awaited, why it stopped, and
// what the VM had to say.
type WaitError struct {
	Name    string
	Pattern string
	Elapsed time.Duration // since Start
	Err     error         // ctx.Err() or ErrExited
	Exit    string        // QEMU's exit status; "running" if it still runs
	Stderr  string        // QEMU's stderr (trimmed)
	Tail    []string      // the last console lines
}

func (e *WaitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "qemu %q: waiting for /%s/ after %.1fs: %v; qemu: %s", e.Name, e.Pattern, e.Elapsed.Seconds(), e.Err, e.Exit)
	if e.Stderr != "" {
		fmt.Fprintf(&b, "; stderr: %s", e.Stderr)
	}
	fmt.Fprintf(&b, "\nlast %d console lines:", len(e.Tail))
	for _, l := range e.Tail {
		b.WriteString("\n  | ")
		b.WriteString(l)
	}
	return b.String()
}

func (e *WaitError) Unwrap() error { return e.Err }

func (vm *VM) waitError(re *regexp.Regexp, err error) error {
	return &WaitError{
		Name:    vm.name,
		Pattern: re.String(),
		Elapsed: time.Since(vm.start),
		Err:     err,
		Exit:    vm.exitStatus(),
		Stderr:  strings.TrimSpace(vm.errb.String()),
		Tail:    vm.con.tail(tailLines),
	}
}

func (vm *VM) exitStatus() string {
	select {
	case <-vm.done:
		if vm.exitErr == nil {
			return "exit status 0"
		}
		return vm.exitErr.Error()
	default:
		return "running"
	}
}
