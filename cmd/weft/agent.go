package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/bootstrap/kubernetes"
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	opt.Log, opt.Version = log, version
	opt.Ready = sysd.Ready
	cfg, err := readJoins(opt.ConfigPath)
	if err != nil {
		return err
	}
	var pods *kubernetes.Watch
	if k := cfg.Join.Kubernetes; k != nil {
		pods = kubernetes.NewWatch(nodeName(opt), k.DefaultNetwork, log.With("part", "kubernetes"))
		opt.PodNetworks = pods
	}
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
	if cfg.Join.OpenStack != nil {
		// A part of the agent's process that is a client of its local API,
		// like weft ctl. A changed join takes an agent restart (weft init
		// restarts it for a new config).
		go openstack.Run(ctx, cfg, agentapi.NewClient(opt.APISocket), osFiles, log.With("part", "openstack"))
	}
	if pods != nil {
		go kubernetes.Run(ctx, cfg.Join.Kubernetes, nodeName(opt), opt.StateDir, pods,
			agentapi.NewClient(opt.APISocket), log.With("part", "kubernetes"))
	}
	defer sysd.Stopping()
	return a.Run(ctx)
}

// readJoins reads the config for its joins (join.openstack,
// join.kubernetes), which the agent's process starts beside the agent.
func readJoins(path string) (*config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// nodeName is the node's Kubernetes name: --hostname, else the host's.
func nodeName(opt agent.Options) string {
	if opt.Hostname != "" {
		return opt.Hostname
	}
	h, _ := os.Hostname()
	return h
}
