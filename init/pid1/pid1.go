// Package pid1 is `weft init`, PID 1 of the Weft appliance: early mounts,
// console logging, kernel modules by modalias, entropy, the node bring-up
// (config drive, underlay, config sources; see Bringup), hostname, zombie
// reaping (Reaper), supervision of `weft vrouter` and `weft agent`
// (Supervisor), and orderly poweroff or reboot on signals.
//
// PID 1 never exits: when init exits the kernel panics. Every failure is a
// verdict on the console (init/steps) and the node keeps retrying.
//
// Signals to PID 1 (as busybox init, so operators' habits work):
//
//	SIGTERM, SIGINT, SIGUSR2  orderly poweroff
//	SIGUSR1                   orderly reboot
//
// `weft init --poweroff` and `weft init --reboot`, run on the node, send
// them.
package pid1

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Options are what the weft binary tells PID 1 about itself.
type Options struct {
	// HaveCommand reports whether this binary has a subcommand; a service
	// whose subcommand is missing is reported skipped ("not in this build")
	// instead of crash-looping. nil: every service is assumed present.
	HaveCommand func(name string) bool
	// Version is reported to the controller.
	Version string
}

// controlFlags parses `weft init` arguments when not PID 1.
func controlFlags(args []string, out io.Writer) (reboot, poweroff bool, err error) {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.BoolVar(&reboot, "reboot", false, "ask PID 1 for an orderly reboot (SIGUSR1)")
	fs.BoolVar(&poweroff, "poweroff", false, "ask PID 1 for an orderly poweroff (SIGTERM)")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: weft init            (as PID 1: /init of the Weft image)\n       weft init --reboot | --poweroff")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return false, false, err
	}
	switch {
	case fs.NArg() > 0:
		return false, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case reboot && poweroff:
		return false, false, errors.New("--reboot and --poweroff exclude each other")
	}
	return reboot, poweroff, nil
}
