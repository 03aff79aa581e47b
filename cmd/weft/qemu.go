package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/weftnet/weft/qemu"
	"github.com/weftnet/weft/qemu/demo"
)

func init() {
	register("qemu", "run an image in QEMU (qemu run --image DIR [--nics N] [--pxe] …)", runQEMU)
}

// qemuSummaries say what each of qemuCommands does, for the usage.
var qemuSummaries = map[string]string{
	"run":     "boot one node from an image directory (--image DIR)",
	"relay":   "relay a guestfwd connection to HOST:PORT (run by QEMU)",
	"console": "attach to a node's operator console (SOCKET)",
	"demo":    "boot a fleet with a controller on a virtual underlay",
}

// qemuCommands are the subcommands of `weft qemu`.
var qemuCommands = map[string]func(args []string) error{
	"run":     runQEMURun,
	"relay":   runQEMURelay,
	"console": runQEMUConsole,
	"demo":    runQEMUDemo,
}

// runQEMUConsole attaches the terminal to a node's operator console (the
// unix socket `weft qemu demo --keep` prints).
func runQEMUConsole(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: weft qemu console SOCKET")
	}
	c, err := net.Dial("unix", args[0])
	if err != nil {
		return fmt.Errorf("operator console %s: %w (is the node running?)", args[0], err)
	}
	defer c.Close()
	fmt.Fprintln(os.Stderr, "weft qemu: attached; type help, Ctrl-D to leave")
	c.Write([]byte("\n"))
	go io.Copy(os.Stdout, c)
	_, err = io.Copy(c, os.Stdin)
	return err
}

// runQEMURelay is the per-connection command of a guestfwd "cmd:" rule:
// the guest's stream is on stdin/stdout, ADDR the host service.
func runQEMURelay(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: weft qemu relay HOST:PORT (run by QEMU's guestfwd=…-cmd:)")
	}
	return qemu.Relay(context.Background(), args[0], os.Stdin, os.Stdout)
}

func runQEMU(args []string) error {
	if len(args) > 0 {
		if run, ok := qemuCommands[args[0]]; ok {
			return run(args[1:])
		}
	}
	return groupUsage("qemu", args, qemuSummaries)
}

// runQEMURun boots one node from an image directory in the foreground: the
// console on stdout, QEMU's messages on stderr, Ctrl-C stops it.
func runQEMURun(args []string) error {
	fs := newFlags("qemu run", "qemu run --image DIR [flags]")
	imageDir := fs.String("image", "", "image directory from `weft image build` (vmlinux, initramfs.cpio.gz, vmlinuz, boot.ipxe)")
	nics := fs.Int("nics", 1, "number of user-mode NICs (eth0, eth1, …; each its own 10.0.2.0/24)")
	configDrive := fs.String("config-drive", "", "directory (openstack/latest/…) attached as a config-2 drive")
	pxe := fs.Bool("pxe", false, "boot through iPXE from QEMU's TFTP (the image's boot.ipxe) instead of -kernel")
	appendArgs := fs.String("append", "", "extra kernel parameters (not with --pxe: boot.ipxe holds the command line)")
	console := fs.String("console", "", "also write the console to FILE")
	mem := fs.Int("mem", qemu.DefaultMemoryMB, "guest memory in MB")
	name := fs.String("name", qemu.DefaultName, "VM name (its MACs derive from it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *imageDir == "":
		return errors.New("--image is required")
	case *nics < 0:
		return fmt.Errorf("--nics %d: negative", *nics)
	case *pxe && *nics == 0:
		return errors.New("--pxe needs --nics 1 or more")
	case *pxe && *appendArgs != "":
		return errors.New("--append does not apply to --pxe: the kernel command line is in boot.ipxe")
	}

	m := qemu.Machine{
		Name:        *name,
		MemoryMB:    *mem,
		ConfigDrive: *configDrive,
		PXE:         *pxe,
		ConsoleLog:  *console,
		ConsoleOut:  os.Stdout,
	}
	for range *nics {
		m.NICs = append(m.NICs, qemu.NIC{User: &qemu.UserNet{}})
	}
	if *pxe {
		m.NICs[0].User.TFTP = *imageDir
		m.NICs[0].User.BootFile = "boot.ipxe"
	} else {
		m.Kernel = filepath.Join(*imageDir, "vmlinux")
		m.Initrd = filepath.Join(*imageDir, "initramfs.cpio.gz")
		m.Append = *appendArgs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	vm, err := qemu.Start(ctx, m)
	if err != nil {
		return err
	}
	for i, mac := range vm.MACs() {
		fmt.Fprintf(os.Stderr, "weft qemu: %s eth%d mac=%s\n", *name, i, mac)
	}
	fmt.Fprintf(os.Stderr, "weft qemu: %s started (pid %d); Ctrl-C stops it\n", *name, vm.Pid())

	select {
	case <-vm.Done():
	case <-ctx.Done():
	}
	stopped := ctx.Err() != nil
	if err := vm.Stop(); err != nil {
		return err
	}
	if stopped {
		fmt.Fprintf(os.Stderr, "\nweft qemu: %s stopped\n", *name)
		return nil
	}
	// The guest powered off (or crashed QEMU): -no-reboot ends QEMU.
	fmt.Fprintf(os.Stderr, "weft qemu: %s powered off\n", *name)
	return nil
}

// runQEMUDemo is `make demo`.
func runQEMUDemo(args []string) error {
	fs := newFlags("qemu demo", "qemu demo [flags]")
	var opt demo.Options
	fs.StringVar(&opt.Image, "image", "", "image directory from weft image build (required)")
	fs.IntVar(&opt.Nodes, "nodes", 3, "fleet size (2..6)")
	fs.BoolVar(&opt.PXE, "pxe", false, "boot the nodes through iPXE from the controller instead of -kernel")
	fs.BoolVar(&opt.Keep, "keep", false, "keep the fleet running for exploration until Ctrl-C")
	fs.StringVar(&opt.Netns, "netns", "weft-demo", "the fleet segment's network namespace")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if opt.Image == "" {
		return errors.New("--image is required (make demo passes it)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := demo.Run(ctx, opt)
	return err
}
