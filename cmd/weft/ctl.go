package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"
)

func init() {
	register("ctl", "operator commands (ctl fleet --controller URL, ctl fleet probe --from NODE/ENDPOINT --to ADDR)", runCtl)
}

// ctlSummaries say what each of ctlCommands does, for the usage.
var ctlSummaries = map[string]string{
	"status":    "the agent: router ID, sessions, endpoints, routes, last reconcile, refused ops",
	"peers":     "BGP sessions: state, flaps, routes received/accepted/sent per family",
	"routes":    "what the vRouter forwards [--network N]",
	"endpoints": "endpoints; endpoints add NAME --network N --address A/L; endpoints delete NAME",
	"flows":     "the vRouter's flow table",
	"probe":     "a reachability check from an endpoint (--endpoint E --to ADDR)",
	"config":    "the running weft.yaml; config --reload; config check FILE",
	"fleet":     "the controller's fleet view; fleet probe, fleet arm NODE (--controller URL --ca PIN --token-file FILE, or the local socket)",
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
	return groupUsage("ctl", args, ctlSummaries)
}

// runCtlFleet prints the controller's fleet view; `ctl fleet probe` runs a
// probe.
func runCtlFleet(args []string) error {
	if len(args) > 0 && args[0] == "probe" {
		return runCtlFleetProbe(args[1:])
	}
	if len(args) > 0 && args[0] == "arm" {
		return runCtlFleetArm(args[1:])
	}
	fs := newFlags("ctl fleet", "ctl fleet [--controller URL --ca PIN|FILE --token-file FILE] [-o table|json]")
	cf := addControllerFlags(fs)
	output := fs.String("o", "table", "output: table or json")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the controller")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *output != "table" && *output != "json":
		return fmt.Errorf("-o %q: want table or json", *output)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	f, err := c.Fleet(ctx)
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

// runCtlFleetArm re-arms a node's identity claim: `weft ctl fleet arm
// NODE [--address ADDR]`, for a node that rebooted without the
// controller's DHCP, or whose credential someone else claimed.
func runCtlFleetArm(args []string) error {
	fs := newFlags("ctl fleet arm", "ctl fleet arm NODE [--address ADDR] [--controller URL --ca PIN|FILE --token-file FILE]")
	cf := addControllerFlags(fs)
	address := fs.String("address", "", "the address the node's claim will come from (default: its inventory address)")
	var node string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		node, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var addr netip.Addr
	switch {
	case node == "":
		return errors.New("the node's name is required: ctl fleet arm NODE")
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *address != "":
		a, err := netip.ParseAddr(*address)
		if err != nil {
			return fmt.Errorf("--address %q: not an IP address", *address)
		}
		addr = a
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := c.Arm(ctx, node, addr)
	if err != nil {
		return err
	}
	fmt.Printf("node %s: its next identity claim from %s is accepted (once)\n", a.Node, a.Address)
	return nil
}

// errProbeFailed makes `weft ctl fleet probe` exit with status 1 once the
// result is printed.
var errProbeFailed = errors.New("the probe failed")

// runCtlFleetProbe has a node's agent check, from one of its endpoints,
// that an address answers, and prints the result: `weft ctl fleet probe
// --from node-1/red-1 --to 10.1.0.12 [--tcp 5432]`. A failed or expired
// probe is exit status 1.
func runCtlFleetProbe(args []string) error {
	fs := newFlags("ctl fleet probe", "ctl fleet probe --from NODE/ENDPOINT --to ADDR [--tcp PORT] [flags]")
	cf := addControllerFlags(fs)
	from := fs.String("from", "", "NODE/ENDPOINT: the inventory node and its endpoint to probe from (required)")
	to := fs.String("to", "", "the address to reach (required)")
	tcp := fs.Int("tcp", 0, "connect to this TCP port instead of sending ICMP echo requests")
	count := fs.Int("count", 0, fmt.Sprintf("echo requests (or connections) to try (default %d echo requests, 1 connection)", fleetapi.DefaultProbeCount))
	timeout := fs.Duration("timeout", fleetapi.DefaultProbeTimeout, "how long each echo request or connection may take")
	output := fs.String("o", "table", "output: table or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	node, endpoint, ok := strings.Cut(*from, "/")
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *from == "":
		return errors.New("--from NODE/ENDPOINT is required")
	case !ok || node == "" || endpoint == "":
		return fmt.Errorf("--from %q: want NODE/ENDPOINT (like node-1/red-1)", *from)
	case *to == "":
		return errors.New("--to ADDR is required")
	case *output != "table" && *output != "json":
		return fmt.Errorf("-o %q: want table or json", *output)
	case *timeout < time.Millisecond || *timeout > time.Minute:
		return fmt.Errorf("--timeout %v: want 1ms..1m", *timeout)
	case *count < 0:
		return fmt.Errorf("--count %d: want 1 or more", *count)
	}
	addr, err := netip.ParseAddr(*to)
	if err != nil {
		return fmt.Errorf("--to %q: not an IP address", *to)
	}
	req := fleetapi.ProbeRequest{Node: node, Endpoint: endpoint, To: addr, Kind: fleetapi.ProbeICMP,
		Count: *count, TimeoutMillis: int(*timeout / time.Millisecond)}
	if *tcp != 0 {
		if *tcp < 1 || *tcp > 65535 {
			return fmt.Errorf("--tcp %d: want a port, 1..65535", *tcp)
		}
		req.Kind, req.Port = fleetapi.ProbeTCP, *tcp
	}
	// Interrupting stops the wait; the probe itself runs its course.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cf.client()
	if err != nil {
		return err
	}
	p, err := c.Probe(ctx, req)
	if err != nil {
		return err
	}
	id := p.ID
	if p, err = c.WaitProbe(ctx, id); err != nil {
		return fmt.Errorf("probe %s: %w", id, err)
	}
	if *output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return err
		}
	} else {
		line := p.Summary()
		if p.State == fleetapi.ProbeDone && p.RTTMicros > 0 && !strings.Contains(p.Detail, "rtt") {
			line += fmt.Sprintf(" (rtt %.1f ms)", float64(p.RTTMicros)/1000)
		}
		fmt.Println(line)
	}
	if p.State != fleetapi.ProbeDone || !p.OK {
		return errProbeFailed
	}
	return nil
}
