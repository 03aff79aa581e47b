package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// The agent's operator commands: `weft ctl status|peers|routes|endpoints|
// flows|config`, against the agent's local API.
func init() {
	ctlCommands["status"] = ctlAgent("status", func(c *agentapi.Client, fs *flag.FlagSet, out output) error {
		s, err := c.Status()
		if err != nil {
			return err
		}
		if out.json {
			return out.encode(s)
		}
		w := out.table()
		row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
		row("hostname", s.Hostname)
		row("version", s.Version)
		row("router id", s.RouterID)
		row("underlay", s.Underlay+"  ("+strings.Join(s.Encaps, ", ")+")")
		if s.VRouterReady {
			row("vrouter", "ready")
		} else {
			row("vrouter", "not answering: "+s.VRouterError)
		}
		if s.FastPath != "" {
			row("fast path", s.FastPath)
		}
		for _, n := range s.FastPathNotes {
			row("  kernel", n)
		}
		row("config", s.Config)
		if s.ConfigErr != "" {
			row("config error", s.ConfigErr+"  (the running config is kept)")
		}
		if s.LastGood != "" {
			row("last good config", s.LastGood)
		}
		row("bgp peers", fmt.Sprintf("%d of %d established", s.PeersUp, s.Peers))
		row("synced", s.Synced)
		row("endpoints", s.Endpoints)
		row("routes", s.Routes)
		row("announced", s.Announced)
		last := "never"
		if !s.LastRun.IsZero() {
			last = fmt.Sprintf("%s ago, took %s", time.Since(s.LastRun).Round(time.Millisecond), s.LastTook)
		}
		row("last reconcile", last)
		if c := s.LastConvergence; c != nil {
			row("last convergence", fmt.Sprintf("%s from %s Established (End-of-RIB after %s), %s ago", c.Took, c.Peer, c.EndOfRIB,
				time.Since(c.Established).Round(time.Second)))
		}
		if s.HeapLive > 0 {
			row("memory", fmt.Sprintf("%.1f MiB of heap live after the last GC", float64(s.HeapLive)/(1<<20)))
		}
		if len(s.RouteTargets) > 0 {
			row("route targets asked", strings.Join(s.RouteTargets, " "))
		}
		for _, n := range s.Networks {
			row("network "+n.Network, fmt.Sprintf("%d received, %d accepted, %d installed", n.Received, n.Accepted, n.Installed))
		}
		for _, w := range s.NextHopWarnings {
			row("next hop warning", fmt.Sprintf("%d paths from %s: %s", w.Paths, w.Peer, w.Example))
		}
		if s.LastErr != "" {
			row("reconcile error", s.LastErr)
		}
		for _, rf := range s.Refused {
			row("refused", fmt.Sprintf("%s (endpoint %s): %s; %d attempts, next in %s", rf.Op, dash(rf.Endpoint), rf.Error,
				rf.Attempts, time.Until(rf.NextRetry).Round(time.Second)))
		}
		return w.Flush()
	})
	ctlCommands["peers"] = ctlAgent("peers", func(c *agentapi.Client, fs *flag.FlagSet, out output) error {
		ps, err := c.Peers()
		if err != nil {
			return err
		}
		if out.json {
			return out.encode(ps)
		}
		w := out.table()
		fmt.Fprintln(w, "PEER\tASN\tSTATE\tUPTIME\tFLAPS\tROUTES (rcvd/accepted/sent)\tMALFORMED (withdrawn/discarded/reset)\tLAST ERROR")
		for _, p := range ps {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%s\t%d/%d/%d\t%s\n", p.Address, p.ASN, p.State, dash(p.Uptime), p.Flaps,
				strings.Join(p.Families, ", "), p.TreatAsWithdraw, p.AttributeDiscards, p.MalformedResets, dash(p.LastError))
		}
		return w.Flush()
	})
	ctlCommands["routes"] = ctlAgent("routes", func(c *agentapi.Client, fs *flag.FlagSet, out output) error {
		rs, err := c.Routes(fs.Lookup("network").Value.String())
		if err != nil {
			return err
		}
		if out.json {
			return out.encode(rs)
		}
		w := out.table()
		fmt.Fprintln(w, "NETWORK\tPREFIX\tVIA")
		for _, r := range rs {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Network, r.Prefix, r.Via)
		}
		return w.Flush()
	}, "network")
	ctlCommands["endpoints"] = runCtlEndpoints
	ctlCommands["flows"] = ctlAgent("flows", func(c *agentapi.Client, fs *flag.FlagSet, out output) error {
		f, err := c.Flows()
		if err != nil {
			return err
		}
		if out.json {
			return out.encode(f)
		}
		w := out.table()
		fmt.Fprintln(w, "VRF\tSRC\tDST\tPROTO\tALLOWED\tRULE\tPACKETS\tBYTES\tDIRECTION\tPATH")
		for _, x := range f.GetFlows() {
			dir := "forward"
			if x.GetReverse() {
				dir = "reverse"
			}
			fmt.Fprintf(w, "%d\t%s:%d\t%s:%d\t%d\t%v\t%d\t%d\t%d\t%s\t%s\n", x.GetVrf(), x.GetSrc(), x.GetSrcPort(), x.GetDst(), x.GetDstPort(),
				x.GetProtocol(), x.GetAllowed(), x.GetRule(), x.GetPackets(), x.GetBytes(), dir, flowPath(x))
		}
		fmt.Fprintf(w, "(%d flows)\n", f.GetTotal())
		if err := w.Flush(); err != nil {
			return err
		}
		// Each VRF's share of the table: a VRF at its quota has its new
		// flows decided but not cached, and their replies denied.
		w = out.table()
		fmt.Fprintln(w, "VRF\tENTRIES\tQUOTA\tNOT CACHED (AT QUOTA)")
		for _, v := range f.GetVrfs() {
			fmt.Fprintf(w, "%d\t%d\t%d\t%d\n", v.GetVrf(), v.GetEntries(), v.GetQuota(), v.GetQuotaHits())
		}
		return w.Flush()
	})
	ctlCommands["config"] = runCtlConfig
	ctlCommands["probe"] = runCtlProbe
}

// runCtlProbe checks from one of this node's endpoints:
//
//	weft ctl probe --endpoint leo1 --to 10.0.100.3 [--tcp 5432]
//
// It exits with an error when the target does not answer.
func runCtlProbe(args []string) error {
	fs, sock, o := agentFlags("probe", []string{"ctl probe --endpoint E --to ADDR [--tcp PORT] [flags]"}, "endpoint", "to")
	port := fs.Int("tcp", 0, "connect to this TCP port instead of pinging")
	count := fs.Int("count", 3, "ICMP echoes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req := agentapi.ProbeRequest{Endpoint: fs.Lookup("endpoint").Value.String(), To: fs.Lookup("to").Value.String(), Count: *count}
	if req.Endpoint == "" || req.To == "" {
		return errors.New("--endpoint and --to are required")
	}
	if *port != 0 {
		req.Kind, req.Port = "tcp", *port
	}
	r, err := agentapi.NewClient(*sock).Probe(context.Background(), req)
	if err != nil {
		return err
	}
	if *o == "json" {
		if err := (output{json: true, w: os.Stdout}).encode(r); err != nil {
			return err
		}
	} else {
		fmt.Println(r.Detail)
	}
	if !r.OK {
		return fmt.Errorf("%s does not reach %s", req.Endpoint, req.To)
	}
	return nil
}

// output is the -o choice.
type output struct {
	json bool
	w    io.Writer
}

func (o output) encode(v any) error {
	enc := json.NewEncoder(o.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (o output) table() *tabwriter.Writer { return tabwriter.NewWriter(o.w, 0, 4, 2, ' ', 0) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// agentFlags are what every agent command takes, and the string flags
// named in strings (described in agentFlagUsage); synopsis as newFlags.
func agentFlags(name string, synopsis []string, strings ...string) (*flag.FlagSet, *string, *string) {
	fs := newFlags("ctl "+name, synopsis...)
	sock := fs.String("agent", envOr("WEFT_AGENT", agentapi.DefaultSocket), "the agent's API socket (taken from $WEFT_AGENT when set)")
	o := fs.String("o", "table", "output: table or json")
	for _, s := range strings {
		fs.String(s, "", agentFlagUsage[s])
	}
	return fs, sock, o
}

// agentFlagUsage describes the string flags of the agent commands.
var agentFlagUsage = map[string]string{
	"network":  "the network: the endpoint's (endpoints add), the one to list (routes)",
	"address":  "the endpoint's address and prefix length, A/L",
	"netns":    "the endpoint's network namespace (default: its name)",
	"mac":      "the endpoint's MAC (default: one the vRouter picks)",
	"endpoint": "the endpoint to probe from",
	"to":       "the address to reach",
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// ctlAgent makes a read-only agent command.
func ctlAgent(name string, run func(*agentapi.Client, *flag.FlagSet, output) error, extra ...string) func([]string) error {
	return func(args []string) error {
		syn := "ctl " + name + " [flags]"
		if len(extra) > 0 {
			syn = "ctl " + name + " [--" + extra[0] + " N] [flags]"
		}
		fs, sock, o := agentFlags(name, append([]string{syn}, synopsis[name]...), extra...)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		if *o != "table" && *o != "json" {
			return fmt.Errorf("-o %q: want table or json", *o)
		}
		return run(agentapi.NewClient(*sock), fs, output{json: *o == "json", w: os.Stdout})
	}
}

// runCtlEndpoints lists endpoints, or adds/deletes a runtime one:
//
//	weft ctl endpoints
//	weft ctl endpoints add NAME --network N --address A/L [--netns NS] [--mac M]
//	weft ctl endpoints delete NAME
func runCtlEndpoints(args []string) error {
	if len(args) > 0 && (args[0] == "add" || args[0] == "delete") {
		verb := args[0]
		var fs *flag.FlagSet
		var sock *string
		if verb == "add" {
			fs, sock, _ = agentFlags("endpoints add", endpointsSynopsis[1:2], "network", "address", "netns", "mac")
		} else {
			fs, sock, _ = agentFlags("endpoints delete", endpointsSynopsis[2:])
		}
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			if err := parseFlags(fs, args[1:]); err != nil {
				return err
			}
			err := fmt.Errorf("weft ctl endpoints %s: NAME is required", verb)
			fmt.Fprintln(fs.Output(), err)
			fs.Usage()
			return usageError{err}
		}
		name := args[1]
		if err := parseFlags(fs, args[2:]); err != nil {
			return err
		}
		c := agentapi.NewClient(*sock)
		if verb == "delete" {
			return c.RemoveEndpoint(name)
		}
		get := func(k string) string { return fs.Lookup(k).Value.String() }
		if get("network") == "" || get("address") == "" {
			return errors.New("--network and --address are required")
		}
		return c.AddEndpoint(agentapi.Endpoint{Name: name, Network: get("network"), Address: get("address"), Netns: get("netns"), MAC: get("mac")})
	}
	return ctlAgent("endpoints", func(c *agentapi.Client, fs *flag.FlagSet, out output) error {
		eps, err := c.Endpoints()
		if err != nil {
			return err
		}
		if out.json {
			return out.encode(eps)
		}
		w := out.table()
		fmt.Fprintln(w, "NAME\tNETWORK\tADDRESS\tMAC\tLABEL\tPORT\tNETNS\tDEVICE\tSOURCE\tALLOWED\tCONTAINER\tIFNAME\tPOD")
		for _, e := range eps {
			addr := e.Address
			if e.Address6 != "" {
				addr += "," + e.Address6
			}
			pod := ""
			if e.PodName != "" {
				pod = e.PodNamespace + "/" + e.PodName
			}
			src := e.Source
			if e.NeutronPort != "" {
				src = "neutron port " + e.NeutronPort
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Network, addr, dash(e.MAC), e.Label, e.Port,
				dash(e.Netns), dash(e.Device), src, dash(strings.Join(e.AllowedSources, ",")), dash(e.ContainerID), dash(e.IfName), dash(pod))
		}
		return w.Flush()
	})(args)
}

// endpointsSynopsis are the usage lines of `weft ctl endpoints`.
var endpointsSynopsis = []string{
	"ctl endpoints [flags]",
	"ctl endpoints add NAME --network N --address A/L [--netns NS] [--mac M] [flags]",
	"ctl endpoints delete NAME [flags]",
}

// synopsis are the usage lines of the agent commands beyond the first.
var synopsis = map[string][]string{"endpoints": endpointsSynopsis[1:]}

// runCtlConfig prints the running config, reloads it, or checks a file:
//
//	weft ctl config [--reload]
//	weft ctl config check FILE
func runCtlConfig(args []string) error {
	if len(args) > 0 && args[0] == "check" {
		return configCheck(args[1:], os.Stdout, os.Stderr)
	}
	fs, sock, _ := agentFlags("config", []string{"ctl config [--reload] [flags]", "ctl config check [--kind weft|network_data|meta_data] FILE"})
	reload := fs.Bool("reload", false, "make the agent read its config file again (an invalid one is refused)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c := agentapi.NewClient(*sock)
	if *reload {
		if err := c.Reload(); err != nil {
			return err
		}
		fmt.Println("reloaded")
		return nil
	}
	b, err := c.Config()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// flowPath says which path carried a flow's packets: the engine alone,
// or the in-kernel fast path for all but the engine's share (a flow's
// first packets always take the engine).
func flowPath(f *vrouterv1.Flow) string {
	if k := f.GetKernelPackets(); k > 0 {
		return fmt.Sprintf("kernel %d/%d", k, f.GetPackets())
	}
	return "engine"
}
