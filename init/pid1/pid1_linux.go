package pid1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/init/kmod"
	"github.com/weftnet/weft/init/steps"
	"github.com/weftnet/weft/init/underlay"
	"github.com/weftnet/weft/internal/atomicfile"
)

// Paths PID 1 writes (DESIGN.md; the agent reads them).
const (
	RunDir         = "/run/weft"
	BootStatusPath = RunDir + "/boot-status.json"
	ConfigPath     = RunDir + "/weft.yaml" // the validated weft.yaml for `weft agent --config`
	MetaDataPath   = RunDir + "/meta_data.json"
	NetDataPath    = RunDir + "/network_data.json"
	// VendorData2Path holds vendor_data2.json: the node's own
	// join.openstack credential, when Nova's vendordata gives one.
	VendorData2Path = RunDir + "/vendor_data2.json"
	StoreDir        = "/var/lib/weft" // last good config: the state disk mounted here, else RAM
)

// Step names Main reports itself (the bring-up's are in bringup.go).
const (
	StepMounts   = "mounts"
	StepModules  = "modules"
	StepEntropy  = "entropy"
	StepCmdline  = "cmdline"
	StepHostname = "hostname"
	StepServices = "services"
	StepShutdown = "shutdown"
)

// Main is `weft init`. As PID 1 it boots the node and never returns.
// Otherwise it takes --reboot or --poweroff and signals PID 1.
func (o Options) Main(args []string) error {
	if os.Getpid() != 1 {
		reboot, poweroff, err := controlFlags(args, os.Stderr)
		if err != nil {
			return err
		}
		switch {
		case reboot:
			return signalInit(syscall.SIGUSR1)
		case poweroff:
			return signalInit(syscall.SIGTERM)
		}
		return fmt.Errorf("not PID 1 (pid %d): `weft init` is the /init of the Weft image; here it only takes --reboot or --poweroff", os.Getpid())
	}
	o.runPID1(args)
	// Everything runs in goroutines under the keeper now; the main
	// goroutine parks for good, since PID 1 returning would panic the
	// kernel.
	select {}
}

func signalInit(sig syscall.Signal) error {
	if err := syscall.Kill(1, sig); err != nil {
		return fmt.Errorf("signalling PID 1 with %v: %w", sig, err)
	}
	return nil
}

// node is the running PID 1.
type node struct {
	opts   Options
	level  slog.LevelVar
	stamp  *stampWriter
	log    *slog.Logger
	rec    *steps.Recorder
	keeper keeper
	reaper *Reaper
	sup    *Supervisor
	net    *underlay.Manager
	state  *stateStore // where the last good config is kept
	exe    string
	// fastPath starts the vRouter with --fastpath (weft.fastpath on the
	// kernel command line).
	fastPath bool

	ctx    context.Context // cancelled at shutdown
	cancel context.CancelFunc

	modMu       sync.Mutex
	loader      *kmod.Loader
	kernel      string
	modLoaded   int
	modFailures []string
	modHot      atomic.Int64

	svcMu        sync.Mutex
	svcRunning   map[string]bool // started by startServices
	svcReported  bool            // startServices reported once
	shutdownOnce sync.Once
}

// runPID1 boots the node: it returns once the bring-up runs in the
// background.
func (o Options) runPID1(args []string) {
	n := &node{opts: o}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	// Mounts first: /dev/console, /proc and /run are needed by the rest.
	mounted, mountErrs := mountEarly()
	consoleErr := setupConsole()
	console := NewConsole(os.Stdout)
	n.stamp = &stampWriter{out: console, uptime: uptime}
	n.log = newLogger(n.stamp, &n.level)
	n.rec = steps.New(console, BootStatusPath, nil) // the console line is the log
	n.keeper = keeper{log: n.log, rec: n.rec}
	if consoleErr != nil {
		n.log.Warn("console", "err", consoleErr)
	}
	n.log.Info("weft init starting", "args", args)

	// Reaping and signals before anything forks or can fail.
	n.reaper = NewReaper(n.log)
	n.reaper.OnOrphan = func(pid int, ws syscall.WaitStatus) {
		n.log.Debug("reaped orphan", "pid", pid, "status", describeStatus(ws))
	}
	n.keeper.loop("reaper", func() { n.reaper.Run(context.Background()) })
	n.keeper.loop("signals", n.handleSignals)
	n.sup = NewSupervisor(n.reaper, n.log, func(svc, line string) { n.stamp.line("%s: %s", svc, line) })
	if exe, err := os.Executable(); err == nil {
		n.exe = exe
	} else {
		n.exe = "/bin/weft"
		n.log.Warn("own executable unknown, using /bin/weft for services", "err", err)
	}

	if n.keeper.call("boot", func() { n.boot(mounted, mountErrs) }) {
		n.log.Error("the boot sequence panicked; signals and reaping still work: poweroff with SIGTERM, reboot with SIGUSR1")
	}
}

// boot reports the early steps and starts the bring-up in the background.
func (n *node) boot(mounted []string, mountErrs []error) {
	if len(mountErrs) == 0 {
		n.rec.Report(StepMounts, steps.OK, "", "mounted", len(mounted))
	} else {
		msgs := make([]string, len(mountErrs))
		for i, err := range mountErrs {
			msgs[i] = err.Error()
		}
		n.rec.Report(StepMounts, steps.Failed, strings.Join(msgs, "; ")+"; continuing without them", "mounted", len(mounted))
	}

	// The cmdline is read first (weft.debug sets the level for the rest)
	// but reported after the modules, in the order of the contract.
	cl, clErr := readCmdline()
	if cl.Debug {
		n.level.Set(slog.LevelDebug)
	}

	hc, pinErr := controllerHTTP(cl)
	clErr = errors.Join(clErr, pinErr)

	n.fastPath = cl.FastPath
	n.modules()
	n.entropy()

	if clErr != nil {
		n.rec.Report(StepCmdline, steps.Failed, clErr.Error()+"; continuing with what was understood")
	} else {
		n.rec.Report(StepCmdline, steps.OK, "", cmdlineAttrs(cl)...)
	}

	// The loopback is down in a fresh kernel; the agent's BGP guard and
	// anything talking to 127.0.0.1 need it.
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			n.log.Warn("loopback", "err", err)
		}
	}
	n.net = underlay.New(n.rec, n.log)
	n.state = newStateStore(n)
	// The node's identity with its controller: claimed before the first
	// fetch, its credential sent on every request after (config, reports,
	// tasks, results). Its HTTP client is the one every request to the
	// controller goes through.
	var node *fleetapi.Claimer
	if base := controllerBase(cl); base != "" {
		node = &fleetapi.Claimer{URL: base, MACs: nicMACs, HTTP: hc}
	}
	b := &Bringup{
		Rec:             n.rec,
		Log:             n.log,
		Cmdline:         cl,
		Drive:           source.NewConfigDrive(n.log),
		NewURL:          func(u string) source.Source { return source.NewURL(u, n.log, node) },
		NewMetadata:     func() source.Source { return source.NewMetadataService(nil, n.log) },
		Underlay:        n.net,
		DefaultUnderlay: underlay.DefaultUnderlay,
		PrepareUnderlay: n.prepareUnderlay,
		UnderlayAddr: func(cfg *config.Config) (netip.Addr, error) {
			a, _, err := underlayAddr(cfg)
			return a, err
		},
		Store: n.state,
		Apply: n.applyConfig,
	}
	n.keeper.loop("operator-console", func() { n.operatorConsole(n.ctx) })
	if base := controllerBase(cl); base != "" {
		id := &identity{}
		b.Fetched = id.seen
		n.keeper.loop("phone-home", func() { n.phoneHome(n.ctx, node, id) })
		n.keeper.loop("probes", func() { n.runProbes(n.ctx, node, id) })
	}
	if cl.IPAAPIURL != "" {
		n.keeper.loop("ironic", func() { n.runIronic(cl.IPAAPIURL) })
	}
	n.keeper.loop("bring-up", func() {
		if err := b.Run(n.ctx); err != nil {
			n.log.Info("bring-up stopped", "err", err)
			return
		}
		n.log.Info("bring-up complete")
	})
}

func readCmdline() (config.Cmdline, error) {
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return config.Cmdline{}, fmt.Errorf("reading /proc/cmdline: %w", err)
	}
	return config.ParseCmdline(strings.TrimSpace(string(raw)))
}

func cmdlineAttrs(cl config.Cmdline) []any {
	var a []any
	if cl.ConfigURL != "" {
		a = append(a, "config", cl.ConfigURL)
	}
	if cl.CA != "" {
		a = append(a, "ca", cl.CA)
	}
	if cl.BootIF != nil {
		a = append(a, "bootif", cl.BootIF.String())
	}
	if cl.IPAAPIURL != "" {
		a = append(a, "ipa_api_url", cl.IPAAPIURL)
	}
	if cl.Debug {
		a = append(a, "debug", true)
	}
	if cl.FastPath {
		a = append(a, "fastpath", true)
	}
	return a
}

// entropy reports whether the kernel RNG is initialised, waiting a little
// for it: DHCP transaction IDs and TLS need it, and crypto/rand blocks
// until it is (120 s under QEMU TCG without RDRAND or virtio-rng).
func (n *node) entropy() {
	const wait = 10 * time.Second
	start := time.Now()
	for !rngReady() {
		if time.Since(start) >= wait {
			n.rec.Report(StepEntropy, steps.Waiting, fmt.Sprintf("kernel RNG not initialised after %v: DHCP and TLS block until it is; give the machine a hardware RNG (virtio-rng, or a CPU with RDRAND: QEMU -cpu max)", wait))
			n.keeper.once("entropy", func() {
				var b [1]byte
				for {
					if _, err := unix.Getrandom(b[:], 0); !errors.Is(err, unix.EINTR) {
						break
					}
				}
				n.rec.Report(StepEntropy, steps.OK, "", "waited", time.Since(start).Round(time.Millisecond).String())
			})
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.rec.Report(StepEntropy, steps.OK, "", "waited", time.Since(start).Round(time.Millisecond).String())
}

// rngReady asks the kernel without blocking (getrandom GRND_NONBLOCK fails
// with EAGAIN until the RNG is initialised).
func rngReady() bool {
	var b [1]byte
	_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
	return !errors.Is(err, unix.EAGAIN)
}

// applyConfig is Bringup.Apply: files for the agent, hostname, services.
func (n *node) applyConfig(ctx context.Context, a Applied) error {
	if err := publish(a.Bundle); err != nil {
		return err
	}
	n.setHostname(a)
	n.startServices(a)
	return nil
}

// publish writes the validated weft.yaml and the metadata documents to
// /run/weft for the agent.
func publish(b *config.Bundle) error {
	if b == nil || len(b.UserData) == 0 {
		return errors.New("no user_data to write to " + ConfigPath)
	}
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	// weft.yaml holds BGP passwords and join tokens: root only.
	if err := atomicfile.WriteFile(ConfigPath, b.UserData, 0o600); err != nil {
		return err
	}
	// So may vendor_data2.json (the node's OpenStack credential).
	if len(b.VendorData2) > 0 {
		if err := atomicfile.WriteFile(VendorData2Path, b.VendorData2, 0o600); err != nil {
			return err
		}
	} else if err := os.Remove(VendorData2Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	docs := []struct {
		path string
		v    any
		raw  []byte
		ok   bool
	}{
		{MetaDataPath, b.MetaData, nil, b.MetaData != nil},
		{NetDataPath, b.NetworkData, nil, b.NetworkData != nil},
	}
	if b.MetaData != nil {
		docs[0].raw = b.MetaData.Raw()
	}
	for _, d := range docs {
		if !d.ok {
			if err := os.Remove(d.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		data := d.raw
		if len(data) == 0 {
			var err error
			if data, err = json.MarshalIndent(d.v, "", "  "); err != nil {
				return fmt.Errorf("%s: %w", d.path, err)
			}
		}
		if err := atomicfile.WriteFile(d.path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) setHostname(a Applied) {
	var fromConfig string
	if a.Config != nil {
		fromConfig = a.Config.Node.Hostname
	}
	var md *config.MetaData
	if a.Bundle != nil {
		md = a.Bundle.MetaData
	}
	name, source, notes := chooseHostname(fromConfig, md, firstMAC())
	for _, note := range notes {
		n.log.Warn("hostname candidate passed over", "why", note)
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		n.rec.Report(StepHostname, steps.Failed, fmt.Sprintf("sethostname %q: %v", name, err), "source", source)
		return
	}
	n.rec.Report(StepHostname, steps.OK, "", "name", name, "source", source)
}

// firstMAC is the MAC of the first Ethernet interface by index (eth0 on a
// machine without udev renaming).
func firstMAC() net.HardwareAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback == 0 && len(ifc.HardwareAddr) == 6 {
			return ifc.HardwareAddr
		}
	}
	return nil
}

// services are the processes PID 1 supervises, by weft subcommand.
var services = []struct {
	name string
	args []string
}{
	{"vrouter", nil},
	{"agent", []string{"--config", ConfigPath}},
}

// startServices starts the services that do not run yet (all of them the
// first time; the vRouter again when it could not start for want of an
// underlay address) and restarts a running agent for the new config.
func (n *node) startServices(a Applied) {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	if n.svcRunning == nil {
		n.svcRunning = map[string]bool{}
	}
	var started, skipped, failed []string
	attrs := []any{}
	var vrouterAddr netip.Addr
	for _, s := range services {
		if n.opts.HaveCommand != nil && !n.opts.HaveCommand(s.name) {
			skipped = append(skipped, s.name+": not in this build")
			attrs = append(attrs, s.name, "skipped")
			continue
		}
		if n.svcRunning[s.name] {
			if s.name == "agent" {
				if err := n.sup.Restart("agent"); err != nil {
					n.log.Warn("restarting the agent for the new config", "err", err)
				} else {
					n.log.Info("agent restarted for the new config", "source", a.Source)
				}
			}
			attrs = append(attrs, s.name, "running")
			continue
		}
		args := s.args
		if s.name == "agent" {
			args = append(slices.Clone(args), "--last-good", n.state.Where())
		}
		if s.name == "vrouter" {
			// The tunnels bind to the underlay address the node reaches its
			// controllers from; its MTU sizes the endpoints'.
			addr, mtu, err := underlayAddr(a.Config)
			if err != nil {
				failed = append(failed, fmt.Sprintf("vrouter: %v; check step=dhcp and the underlay", err))
				attrs = append(attrs, s.name, "failed")
				continue
			}
			args, vrouterAddr = []string{"--underlay", addr.String()}, addr
			if mtu > 0 {
				args = append(args, "--mtu", fmt.Sprint(mtu))
			}
			if n.fastPath {
				args = append(args, "--fastpath")
			}
			attrs = append(attrs, "underlay", addr.String(), "underlay_mtu", mtu)
		}
		// argv[0] "weft" (not "init"): the binary dispatches on argv[1].
		svc := Service{Name: s.name, Path: n.exe, Args: append([]string{"weft", s.name}, args...)}
		if err := n.sup.Start(svc); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", s.name, err))
			attrs = append(attrs, s.name, "failed")
			continue
		}
		n.svcRunning[s.name] = true
		started = append(started, s.name)
		attrs = append(attrs, s.name, "started")
		if s.name == "vrouter" {
			n.followUnderlayMTU(vrouterAddr)
		}
	}
	first := !n.svcReported
	n.svcReported = true
	detail := strings.Join(append(failed, skipped...), "; ")
	switch {
	case !first && len(started) == 0 && len(failed) == 0:
		// A new config for running services: the agent was restarted.
	case len(failed) > 0:
		n.rec.Report(StepServices, steps.Failed, detail, attrs...)
	case len(started) == 0:
		n.rec.Report(StepServices, steps.Skipped, detail, attrs...)
	default:
		n.rec.Report(StepServices, steps.OK, detail, attrs...)
	}
}

// setupConsole puts stdin, stdout and stderr on /dev/console. The kernel
// opens it for init when the initramfs has /dev/console; doing it again
// after devtmpfs is mounted also covers an initramfs without it.
func setupConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	for target := 0; target <= 2; target++ {
		if fd == target {
			continue
		}
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("dup /dev/console to fd %d: %w", target, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

// uptime is the time since boot, as the kernel stamps its console lines.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
