package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/bootstrap/openstack"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/sysd"
)

func init() {
	register("agent", "run the node agent: BGP with the controllers, programming the vRouter (agent --config weft.yaml)", runAgent)
}

func runAgent(args []string) error {
	fs := newFlags("agent", "agent [--config FILE] [flags]")
	var opt agent.Options
	// The appliance's PID 1 passes /run/weft/weft.yaml, where it puts
	// the config it found; on an ordinary host the file is the admin's.
	fs.StringVar(&opt.ConfigPath, "config", "/etc/weft/weft.yaml", "the weft.yaml to run (re-read on SIGHUP)")
	fs.StringVar(&opt.VRouterSocket, "vrouter-socket", "/run/weft/vrouter.sock", "the vRouter's control API")
	fs.StringVar(&opt.APISocket, "api-socket", "/run/weft/agent.sock", "where to serve weft ctl")
	fs.StringVar(&opt.MetricsAddr, "metrics", "", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9473)")
	fs.StringVar(&opt.Hostname, "hostname", "", "this node's name in the config's endpoints (default: the hostname)")
	fs.IntVar(&opt.BGPListenPort, "bgp-port", 0, "BGP listen port (default: bgp.listenPort, else 179; -1: do not listen)")
	fs.StringVar(&opt.LastGood, "last-good", "", "where the node's last good config is kept, for weft ctl status (weft init sets it)")
	fs.StringVar(&opt.StateDir, "state-dir", "", "where to keep the CNI attachments and their addresses across restarts (e.g. /var/lib/weft/agent); empty: rebuilt from the vRouter")
	var osFiles openstack.Files
	fs.StringVar(&osFiles.MetaData, "meta-data", "/run/weft/meta_data.json", "the instance's meta_data.json, for join.openstack (weft init writes it)")
	fs.StringVar(&osFiles.VendorData2, "vendor-data2", "/run/weft/vendor_data2.json", "the instance's vendor_data2.json, for join.openstack.vendorData2 (weft init writes it)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	cpuProfile := fs.String("cpuprofile", "", "write a pprof CPU profile of the whole run to this file (profiling the route pipeline)")
	memProfile := fs.String("memprofile", "", "write a pprof heap profile to this file when the agent stops")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer stopProfile()
	}
	if *memProfile != "" {
		defer writeHeapProfile(*memProfile)
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	opt.Log, opt.Version = log, version
	opt.Ready = sysd.Ready
	a, err := agent.New(opt)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			a.Reload() // a refused config is logged and shown by weft ctl status
		}
	}()
	go sysd.Watchdog(ctx, nil)
	if err := startOpenStack(ctx, opt, osFiles, log); err != nil {
		return err
	}
	defer sysd.Stopping()
	return a.Run(ctx)
}

// startOpenStack starts joining OpenStack when the config has
// join.openstack: a part of the agent's process that is a client of its
// local API, like weft ctl (bootstrap/openstack). A changed join.openstack
// takes an agent restart (weft init restarts it for a new config).
func startOpenStack(ctx context.Context, opt agent.Options, files openstack.Files, log *slog.Logger) error {
	b, err := os.ReadFile(opt.ConfigPath)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		return fmt.Errorf("config %s: %w", opt.ConfigPath, err)
	}
	if cfg.Join.OpenStack == nil {
		return nil
	}
	go openstack.Run(ctx, cfg, agentapi.NewClient(opt.APISocket), files, log.With("part", "openstack"))
	return nil
}
