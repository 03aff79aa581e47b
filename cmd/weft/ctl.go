package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/controller"
)

func init() {
	register("ctl", "operator commands (ctl fleet --controller URL)", runCtl)
}

// ctlCommands are the subcommands of `weft ctl`.
var ctlCommands = map[string]func(args []string) error{
	"fleet": runCtlFleet,
}

func runCtl(args []string) error {
	if len(args) > 0 {
		if run, ok := ctlCommands[args[0]]; ok {
			return run(args[1:])
		}
	}
	return fmt.Errorf("usage: weft ctl {%s} …", strings.Join(slices.Sorted(maps.Keys(ctlCommands)), "|"))
}

// runCtlFleet prints the controller's fleet view.
func runCtlFleet(args []string) error {
	fs := flag.NewFlagSet("ctl fleet", flag.ContinueOnError)
	url := fs.String("controller", os.Getenv("WEFT_CONTROLLER"), "the controller's URL, http://HOST[:PORT]/ (default $WEFT_CONTROLLER)")
	output := fs.String("o", "table", "output: table or json")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the controller")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *url == "":
		return errors.New("--controller is required (or set WEFT_CONTROLLER)")
	case *output != "table" && *output != "json":
		return fmt.Errorf("-o %q: want table or json", *output)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	f, err := (&controller.Client{URL: *url}).Fleet(ctx)
	if err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(f)
	}
	return f.WriteTable(os.Stdout)
}
