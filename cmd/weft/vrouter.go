package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/init/underlay"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/server"
)

func init() {
	register("vrouter", "run the forwarding engine and its control API (vrouter --underlay ADDR|--underlay-dev IF)", runVRouter)
}

func runVRouter(args []string) error {
	fs := newFlags("vrouter", "vrouter --underlay ADDR|--underlay-dev IF [flags]")
	socket := fs.String("socket", server.DefaultSocket, "control API unix socket")
	bind := fs.String("underlay", "", "underlay address to bind tunnels to and send from")
	dev := fs.String("underlay-dev", "", "take the underlay address (and MTU, followed as it changes) from this interface instead")
	mtu := fs.Int("mtu", 0, "underlay MTU, fixed (default: the interface's with --underlay-dev, followed as a DHCP renewal changes it; else 1500)")
	encaps := fs.String("encap", "mplsoudp,vxlan,mplsogre", "tunnels to open, comma-separated")
	flowQuota := fs.Int("flow-vrf-quota", 0, fmt.Sprintf("flow-table entries one VRF may hold (an allowed flow takes two); beyond, its new flows are decided but not cached (default %d, an eighth of the table)", flow.DefaultMax/flow.DefaultVRFShare))
	fastPath := fs.Bool("fastpath", false, "forward established flows of endpoints in namespaces in the kernel (BPF, TCX or tc); without what it needs, the vRouter says why and runs TAP-only")
	pins := fs.String("fastpath-pins", "", "with --fastpath, pin the programs' links and maps here, so the kernel forwards established flows while the vRouter restarts (a bpffs directory; default /sys/fs/bpf/weft/<socket name>)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	cpuProfile := fs.String("cpuprofile", "", "write a pprof CPU profile of the whole run to this file (profiling the data path)")
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
	if *flowQuota < 0 {
		return fmt.Errorf("--flow-vrf-quota: %d: want 0 (the default) or more", *flowQuota)
	}
	opt := server.Options{Socket: *socket, UnderlayMTU: *mtu, FlowVRFQuota: *flowQuota, FastPath: *fastPath, FastPathPins: *pins, Version: version, Log: log}
	switch {
	case *bind != "" && *dev != "":
		return errors.New("--underlay and --underlay-dev: give one")
	case *bind != "":
		a, err := netip.ParseAddr(*bind)
		if err != nil {
			return fmt.Errorf("--underlay: %w", err)
		}
		opt.Underlay = a
	case *dev != "":
		a, devMTU, err := underlay.BindAddr(*dev, nil)
		if err != nil {
			return fmt.Errorf("--underlay-dev: %w", err)
		}
		opt.Underlay = a
		if opt.UnderlayMTU == 0 {
			opt.UnderlayMTU = devMTU
		}
	}
	for _, name := range strings.Split(*encaps, ",") {
		e, err := packet.ParseEncap(strings.TrimSpace(name))
		if err != nil {
			return fmt.Errorf("--encap: %w", err)
		}
		opt.Encaps = append(opt.Encaps, e)
	}
	s, err := server.New(opt)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dev != "" && *mtu == 0 {
		// The interface's MTU may change under a running vRouter (a DHCP
		// renewal with option 26): follow it through the control API, as
		// PID 1 does on the appliance.
		go underlay.FollowMTU(ctx, log, opt.Underlay, *socket, 10*time.Second)
	}
	return s.Serve(ctx)
}

// writeHeapProfile writes the live heap (after a GC) to path; a failure
// is only logged, the process is stopping.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err == nil {
		runtime.GC()
		err = pprof.WriteHeapProfile(f)
		f.Close()
	}
	if err != nil {
		slog.Error("--memprofile", "err", err)
	}
}

// startCPUProfile profiles until the returned func runs (when the vRouter
// stops on SIGTERM or SIGINT, which Serve returns for).
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
