//go:debug multipathtcp=0

// Command weft is the one binary of Weft: PID 1 of the appliance image, the
// vRouter, the agent, the operator CLI and the build/test tooling. One static
// binary keeps the initramfs small and every part at the same version.
//
// Each subcommand lives in its own file here and registers itself; this file
// only dispatches. The work is done in the packages.
package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// command is one subcommand: run receives the arguments after its name.
type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	os.Exit(run(os.Args))
}

func run(argv []string) int {
	name, args := dispatch(argv)
	if name == "" || name == "help" || name == "-h" || name == "--help" {
		usage()
		if name == "" {
			return 2
		}
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "weft: unknown command %q\n", name)
		usage()
		return 2
	}
	err := cmd.run(args)
	code, print := exitCode(err)
	if print {
		fmt.Fprintf(os.Stderr, "weft %s: %v\n", name, err)
	}
	return code
}

// dispatch picks the subcommand: from argv[0] when the binary is invoked
// under another name (/init as PID 1, a CNI plugin), else from argv[1].
func dispatch(argv []string) (string, []string) {
	if len(argv) == 0 {
		return "", nil
	}
	switch base := filepath.Base(argv[0]); {
	case base == "init" || (os.Getpid() == 1 && base != "weft"):
		return "init", argv[1:]
	case strings.HasPrefix(base, "weft-"):
		return strings.TrimPrefix(base, "weft-"), argv[1:]
	case len(argv) == 1 && os.Getenv("CNI_COMMAND") != "":
		// A runtime runs /opt/cni/bin/weft with no arguments and the
		// command in CNI_COMMAND.
		return "cni", nil
	}
	if len(argv) < 2 {
		return "", nil
	}
	return argv[1], argv[2:]
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: weft <command> [arguments]\n\ncommands:")
	for _, name := range slices.Sorted(maps.Keys(commands)) {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(os.Stderr, "\nweft COMMAND --help shows a command's flags.")
}
