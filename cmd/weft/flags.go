package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
)

// Every subcommand parses its flags the same way, with the standard
// library's flag package: -h or --help prints the command's usage (its
// synopsis lines, then its flags) and succeeds; a bad flag prints the
// error and the usage once and exits with status 2. A flag's usage text
// never repeats its default: flag prints "(default …)" itself.

// usageError is a flag error that flag has printed already, with the usage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// newFlags is a subcommand's flag set; synopsis are its usage lines
// without "weft " (default: "NAME [flags]").
func newFlags(name string, synopsis ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if len(synopsis) == 0 {
		synopsis = []string{name + " [flags]"}
	}
	fs.Usage = func() {
		w := fs.Output()
		for i, s := range synopsis {
			lead := "usage: "
			if i > 0 {
				lead = "       "
			}
			fmt.Fprintf(w, "%sweft %s\n", lead, s)
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; its error is flag.ErrHelp (help was asked for
// and printed) or a usageError (printed with the usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err}
}

// exitCode is the exit status for a subcommand's error, and whether the
// error still needs printing.
func exitCode(err error) (code int, print bool) {
	var ue usageError
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	case errors.As(err, &ue):
		return 2, false
	}
	return 1, true
}

// groupUsage answers a command that has subcommands (ctl, qemu, config,
// image) when args name none of them: the list on -h, --help or help
// (success), else the list and a usage error.
func groupUsage(name string, args []string, summaries map[string]string) error {
	w := os.Stderr
	fmt.Fprintf(w, "usage: weft %s COMMAND [flags]\n\ncommands:\n", name)
	for _, c := range slices.Sorted(maps.Keys(summaries)) {
		fmt.Fprintf(w, "  %-10s %s\n", c, summaries[c])
	}
	fmt.Fprintf(w, "\nweft %s COMMAND --help shows a command's flags.\n", name)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
		return flag.ErrHelp
	}
	if len(args) == 0 {
		return usageError{fmt.Errorf("weft %s: a command is required", name)}
	}
	fmt.Fprintf(w, "weft %s: unknown command %q\n", name, args[0])
	return usageError{fmt.Errorf("weft %s: unknown command %q", name, args[0])}
}
