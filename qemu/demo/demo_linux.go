// Package demo is `make demo`: the whole product on one machine. It
// builds nothing itself (make builds the image first); it creates a fleet
// segment (a bridge in a network namespace), starts `weft controller` on
// it (DHCP, boot files, metadata, route reflector, fleet view), boots a
// small fleet of Weft nodes in QEMU on that segment, shows each node
// configure itself and peer BGP, runs live checks through the overlay —
// tenants with the same addresses stay apart, the reference scenario's
// leonardo reaches db — prints the results with timings, and tears
// everything down. The end-to-end test runs the same with two nodes.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/qemu"
)

// Options configure a demo run.
type Options struct {
	Image  string // directory of `weft image build`
	Binary string // the weft binary the controller runs; "" = this executable
	Nodes  int    // fleet size, 2..6; 0 = 3
	PXE    bool   // boot through iPXE from the controller instead of -kernel
	// Keep leaves the fleet running until ctx ends, with instructions to
	// explore it.
	Keep bool
	// Netns names the fleet segment's namespace; "" = "weft-demo". The
	// end-to-end test uses its own.
	Netns string
	// StatusAddr, with Keep, is where the host can open the controller's
	// web page; "" = 127.0.0.1:8099.
	StatusAddr string
	// Out receives the progress and the result table; nil = os.Stdout.
	Out io.Writer
	// Checks are the live checks to run (What, Node, Endpoint, To, Want);
	// nil = the demo's own plan. The end-to-end test states its own.
	Checks []Check
	// Append is added to each node's kernel command line
	// ("weft.fastpath"); not with PXE.
	Append string
	// AfterChecks, if set, runs after the checks while the fleet is up,
	// given each node's operator console socket by node name (tests).
	AfterChecks func(ctx context.Context, consoles map[string]string)
}

// Check is one live check of the overlay.
type Check struct {
	What     string // "red-1 -> red-2 (same tenant)"
	Node     string
	Endpoint string
	To       string
	Want     bool // should it pass?
	Got      bool
	Detail   string
	Took     time.Duration
}

// Passed is whether the check came out as it should.
func (c Check) Passed() bool { return c.Want == c.Got }

// NodeResult is one node's bring-up.
type NodeResult struct {
	Name    string
	Address string
	Ready   time.Duration // from its QEMU start to step=ready ok
}

// Result is what a run measured.
type Result struct {
	Nodes        []NodeResult
	Checks       []Check
	FirstOverlay time.Duration // from the demo's start to the first packet through the overlay answered
	Took         time.Duration
}

// OK reports whether every check came out as it should.
func (r *Result) OK() bool {
	for _, c := range r.Checks {
		if !c.Passed() {
			return false
		}
	}
	return len(r.Checks) > 0
}

const (
	segmentPrefix = "10.99.0"
	controllerIP  = segmentPrefix + ".1"
	bridge        = "br0"
)

// run is one demo's state.
type run struct {
	opt   Options
	out   io.Writer
	dir   string
	start time.Time
	ctrl  *exec.Cmd
	vms   []*qemu.VM
	pin   fleetapi.Pin // the controller's CA
	cc    *fleetapi.Client
	mu    sync.Mutex // serialises progress lines
}

// Run runs the demo and returns what it measured. Whatever happens, it
// removes what it created (processes, the namespace, its files; the logs
// of a failed run stay, and the error says where).
func Run(ctx context.Context, opt Options) (res *Result, err error) {
	if opt.Nodes == 0 {
		opt.Nodes = 3
	}
	if opt.Nodes < 2 || opt.Nodes > 6 {
		return nil, fmt.Errorf("nodes: %d, want 2 to 6 (each node is a QEMU VM of ~250 MB)", opt.Nodes)
	}
	if opt.Netns == "" {
		opt.Netns = "weft-demo"
	}
	if opt.StatusAddr == "" {
		opt.StatusAddr = "127.0.0.1:8099"
	}
	r := &run{opt: opt, out: opt.Out, start: time.Now()}
	if r.out == nil {
		r.out = os.Stdout
	}
	if err := r.preflight(); err != nil {
		return nil, err
	}
	if r.dir, err = os.MkdirTemp("", "weft-demo-"); err != nil {
		return nil, err
	}
	defer func() {
		r.teardown()
		if err != nil {
			err = fmt.Errorf("%w\n(logs and consoles kept in %s)", err, r.dir)
		} else {
			os.RemoveAll(r.dir)
		}
	}()
	r.step("fleet segment: namespace %s, bridge %s, controller at %s", opt.Netns, bridge, controllerIP)
	if err := r.segment(); err != nil {
		return nil, err
	}
	if err := r.startController(ctx); err != nil {
		return nil, err
	}
	res = &Result{}
	if err := r.boot(ctx, res); err != nil {
		return res, err
	}
	r.checks(ctx, res)
	if opt.AfterChecks != nil {
		consoles := map[string]string{}
		for i := 1; i <= opt.Nodes; i++ {
			consoles[nodeName(i)] = filepath.Join(r.dir, nodeName(i)+".sock")
		}
		opt.AfterChecks(ctx, consoles)
	}
	res.Took = time.Since(r.start)
	r.report(res)
	if opt.Keep {
		r.explore(ctx)
	}
	if !res.OK() {
		return res, errors.New("demo: some checks did not come out as they should (see the table)")
	}
	return res, nil
}

func (r *run) step(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "demo: [%5.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// preflight names what is missing, with what to do about it.
func (r *run) preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("demo: needs root (network namespaces, TAP devices): run sudo make demo")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return errors.New("demo: /dev/net/tun is missing: load the tun module (modprobe tun), or run where TUN devices are allowed")
	}
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		fmt.Fprintln(r.out, "demo: this is not Debian; make deps installs with apt-get, so the packages may be missing")
	}
	if _, err := exec.LookPath(qemu.Binary); err != nil {
		return fmt.Errorf("demo: %s not found: run make deps", qemu.Binary)
	}
	for _, f := range []string{"vmlinux", "vmlinuz", "initramfs.cpio.gz"} {
		if _, err := os.Stat(filepath.Join(r.opt.Image, f)); err != nil {
			return fmt.Errorf("demo: the image in %q is incomplete (%v): run make image", r.opt.Image, err)
		}
	}
	if r.opt.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		r.opt.Binary = exe
	}
	return nil
}

// segment creates the namespace with the bridge the nodes' TAPs join.
func (r *run) segment() error {
	deleteNetns(r.opt.Netns) // a leftover of a run that was killed
	if out, err := exec.Command("ip", "netns", "add", r.opt.Netns).CombinedOutput(); err != nil {
		return fmt.Errorf("demo: ip netns add %s: %v: %s", r.opt.Netns, err, out)
	}
	ns, err := netns.GetFromName(r.opt.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("demo: bridge: %w (is the bridge module available?)", err)
	}
	addr, _ := netlink.ParseAddr(controllerIP + "/24")
	if err := h.AddrAdd(br, addr); err != nil {
		return err
	}
	return h.LinkSetUp(br)
}

// deleteNetns removes a namespace and kills what runs in it.
func deleteNetns(name string) {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		return
	}
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	exec.Command("ip", "netns", "del", name).Run()
}

func (r *run) teardown() {
	for _, vm := range r.vms {
		vm.Stop()
	}
	if r.ctrl != nil && r.ctrl.Process != nil {
		r.ctrl.Process.Signal(unix.SIGTERM)
		done := make(chan struct{})
		go func() { r.ctrl.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.ctrl.Process.Kill()
			<-done
		}
	}
	deleteNetns(r.opt.Netns)
	r.step("torn down: %d VMs stopped, controller stopped, namespace %s removed", len(r.vms), r.opt.Netns)
}

// nodeName, nodeMAC and nodeAddr number the fleet from 1.
func nodeName(i int) string { return fmt.Sprintf("node-%d", i) }
func nodeMAC(i int) string  { return fmt.Sprintf("52:54:00:99:00:%02x", i) }
func nodeAddr(i int) string { return fmt.Sprintf("%s.%d", segmentPrefix, 10+i) }

// fleetYAML is the fleet's one weft.yaml: two tenants with the same
// addresses (red and blue), and the reference scenario's leonardo and db
// joined by a shared route target.
func fleetYAML(nodes int) string {
	last := nodeName(min(3, nodes))
	return `    node: {hostname: auto}
    bgp:
      asn: 64512
      connectRetry: 1
      holdTime: 9
      controllers: [{address: ` + controllerIP + `}]
    overlay: {encapsulation: [mplsoudp, vxlan, mplsogre]}
    networks:
      - {name: red,      vni: 1001, routeTargets: {import: ["64512:1001"], export: ["64512:1001"]}, subnets: ["10.1.0.0/24"]}
      - {name: blue,     vni: 1002, routeTargets: {import: ["64512:1002"], export: ["64512:1002"]}, subnets: ["10.1.0.0/24"]}
      - {name: leonardo, vni: 100,  routeTargets: {import: ["64512:100"], export: ["64512:100"]}, subnets: ["10.0.10.0/24"]}
      - {name: db,       vni: 200,  routeTargets: {import: ["64512:100", "64512:200"], export: ["64512:200", "64512:100"]}, subnets: ["10.0.100.0/24"]}
    endpoints:
      - {name: red-1,  network: red,      address: 10.1.0.11/24,  node: node-1}
      - {name: blue-1, network: blue,     address: 10.1.0.11/24,  node: node-1}
      - {name: leo-1,  network: leonardo, address: 10.0.10.5/24,  node: node-1}
      - {name: red-2,  network: red,      address: 10.1.0.12/24,  node: node-2}
      - {name: blue-2, network: blue,     address: 10.1.0.12/24,  node: node-2}
      - {name: blue-3, network: blue,     address: 10.1.0.13/24,  node: ` + last + `}
      - {name: pg-1,   network: db,       address: 10.0.100.3/24, node: ` + last + `}
`
}

func (r *run) inventory() string {
	var b strings.Builder
	b.WriteString("# The demo fleet: its one weft.yaml and its nodes, by MAC.\nconfig:\n")
	b.WriteString(fleetYAML(r.opt.Nodes))
	b.WriteString("nodes:\n")
	for i := 1; i <= r.opt.Nodes; i++ {
		fmt.Fprintf(&b, "  - {name: %s, macs: [\"%s\"], address: %s}\n", nodeName(i), nodeMAC(i), nodeAddr(i))
	}
	return b.String()
}

// nsDial dials inside the demo's namespace: the controller is only there.
func (r *run) nsDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := nsexec.Do(r.opt.Netns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var stepLine = regexp.MustCompile(`weft: step=(\S+) verdict=(\S+)(.*)`)

// boot starts the nodes one after the other (2 cores: a node's boot under
// software emulation takes most of one), printing their steps.
func (r *run) boot(ctx context.Context, res *Result) error {
	mode := "direct kernel boot (PVH vmlinux)"
	if r.opt.PXE {
		mode = "PXE: iPXE ROM -> DHCP -> http://" + controllerIP + "/boot.ipxe"
	}
	r.step("booting %d nodes, %s", r.opt.Nodes, mode)
	for i := 1; i <= r.opt.Nodes; i++ {
		name := nodeName(i)
		mac, _ := net.ParseMAC(nodeMAC(i))
		m := qemu.Machine{
			Name:            name,
			MemoryMB:        qemu.DefaultMemoryMB,
			NICs:            []qemu.NIC{{MAC: mac, TAP: &qemu.TapNet{Netns: r.opt.Netns, Bridge: bridge, Ifname: fmt.Sprintf("wd%d", i)}}},
			ConsoleLog:      filepath.Join(r.dir, name+".console"),
			OperatorConsole: filepath.Join(r.dir, name+".sock"),
			PXE:             r.opt.PXE,
		}
		if !r.opt.PXE {
			m.Kernel = filepath.Join(r.opt.Image, "vmlinux")
			m.Initrd = filepath.Join(r.opt.Image, "initramfs.cpio.gz")
			m.Append = strings.TrimSpace("weft.config=" + controllerURL + " weft.ca=" + r.pin.String() + " " + r.opt.Append)
		}
		vm, err := qemu.Start(ctx, m)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		r.vms = append(r.vms, vm)
		go r.follow(name, vm)
		nr := NodeResult{Name: name, Address: nodeAddr(i)}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		_, took, err := vm.WaitFor(wctx, regexp.MustCompile(`weft: step=ready verdict=ok`))
		cancel()
		if err != nil {
			return fmt.Errorf("demo: %s did not become ready: %w", name, err)
		}
		nr.Ready = took
		res.Nodes = append(res.Nodes, nr)
	}
	r.step("all %d nodes ready; waiting for their BGP sessions with the reflector", r.opt.Nodes)
	deadline := time.Now().Add(90 * time.Second)
	for {
		f, err := r.cc.Fleet(ctx)
		up := 0
		if err == nil {
			for _, n := range f.Nodes {
				if n.BGP != nil && n.BGP.Total > 0 && n.BGP.Up == n.BGP.Total {
					up++
				}
			}
		}
		if up == r.opt.Nodes {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("demo: %d of %d nodes have their BGP session up after 90 s (see weft ctl fleet, the consoles)", up, r.opt.Nodes)
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.step("BGP: every node peers with the reflector")
	return nil
}

// follow prints a node's boot steps as its console reports them.
func (r *run) follow(name string, vm *qemu.VM) {
	for n := 1; ; n++ {
		m, _, err := vm.WaitCount(context.Background(), stepLine, n)
		if err != nil {
			return
		}
		if interesting(m[1]) {
			r.step("%-7s %-12s %-7s %s", name, m[1], m[2], short(m[3]))
		}
	}
}

// interesting are the steps a newcomer follows.
func interesting(step string) bool {
	switch step {
	case "modules", "link", "dhcp", "url", "metadata", "config", "hostname", "services", "ready":
		return true
	}
	return false
}

func short(s string) string {
	s = strings.TrimSpace(s)
	if m := regexp.MustCompile(`detail="([^"]*)"`).FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

// checks runs the live probes through the controller.
func (r *run) checks(ctx context.Context, res *Result) {
	plan := r.opt.Checks
	if plan == nil {
		plan = r.plan()
	}
	r.step("live checks through the overlay (probes run inside the endpoints' namespaces on the nodes)")
	for _, c := range plan {
		r.check(ctx, res, c)
	}
}

// plan is the demo's own checks: same tenant across nodes, the same
// addresses in two tenants kept apart, leonardo reaching db.
func (r *run) plan() []Check {
	last := nodeName(min(3, r.opt.Nodes))
	return []Check{
		{What: "red-1 -> red-2, same tenant, across nodes", Node: "node-1", Endpoint: "red-1", To: "10.1.0.12", Want: true},
		{What: "blue-1 -> blue-2, same tenant, same addresses as red", Node: "node-1", Endpoint: "blue-1", To: "10.1.0.12", Want: true},
		{What: "red-1 -> 10.1.0.13, only blue has it: cross-tenant", Node: "node-1", Endpoint: "red-1", To: "10.1.0.13", Want: false},
		{What: "blue-1 -> blue-3 (" + last + ")", Node: "node-1", Endpoint: "blue-1", To: "10.1.0.13", Want: true},
		{What: "leo-1 -> pg-1: leonardo reaches db (shared route target)", Node: "node-1", Endpoint: "leo-1", To: "10.0.100.3", Want: true},
		{What: "red-2 -> pg-1: red is not joined to db", Node: "node-2", Endpoint: "red-2", To: "10.0.100.3", Want: false},
	}
}

// check runs one probe and records its outcome in res.
func (r *run) check(ctx context.Context, res *Result, c Check) {
	start := time.Now()
	to, _ := netip.ParseAddr(c.To)
	// An expected failure is quick to tell: two echoes.
	count := 3
	if !c.Want {
		count = 2
	}
	p, err := r.cc.Probe(ctx, fleetapi.ProbeRequest{Node: c.Node, Endpoint: c.Endpoint, To: to, Kind: fleetapi.ProbeICMP, Count: count, TimeoutMillis: 2000})
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		p, err = r.cc.WaitProbe(wctx, p.ID)
		cancel()
	}
	c.Took = time.Since(start)
	if err != nil {
		c.Detail = err.Error()
	} else {
		c.Got, c.Detail = p.State == fleetapi.ProbeDone && p.OK, p.Detail
	}
	if c.Got && res.FirstOverlay == 0 {
		res.FirstOverlay = time.Since(r.start)
	}
	verdict := "as expected"
	if !c.Passed() {
		verdict = "NOT AS EXPECTED"
	}
	r.step("check %-58s %s (%s)", c.What, verdict, c.Detail)
	res.Checks = append(res.Checks, c)
}

func (r *run) report(res *Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := tabwriter.NewWriter(r.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nNODE\tADDRESS\tBOOT TO READY\n")
	for _, n := range res.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%.1fs\n", n.Name, n.Address, n.Ready.Seconds())
	}
	fmt.Fprintf(w, "\nCHECK\tFROM\tTO\tWANT\tGOT\tRESULT\tDETAIL\n")
	for _, c := range res.Checks {
		want, got := reach(c.Want), reach(c.Got)
		result := "ok"
		if !c.Passed() {
			result = "FAIL"
		}
		fmt.Fprintf(w, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\n", c.What, c.Node, c.Endpoint, c.To, want, got, result, c.Detail)
	}
	w.Flush()
	verdict := "all checks as expected"
	if !res.OK() {
		verdict = "SOME CHECKS FAILED"
	}
	fmt.Fprintf(r.out, "\n%s; first overlay packet answered %.1fs after start; total %.1fs\n\n", verdict, res.FirstOverlay.Seconds(), res.Took.Seconds())
}

func reach(b bool) string {
	if b {
		return "reach"
	}
	return "blocked"
}

// explore keeps the fleet up until ctx ends, with a way in.
func (r *run) explore(ctx context.Context) {
	ln, err := net.Listen("tcp", r.opt.StatusAddr)
	if err == nil {
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					up, err := r.nsDial(ctx, "tcp", controllerIP+":80")
					if err != nil {
						return
					}
					defer up.Close()
					go io.Copy(up, c)
					io.Copy(c, up)
				}()
			}
		}()
	}
	fmt.Fprintf(r.out, "The fleet keeps running. Explore it:\n")
	if err == nil {
		fmt.Fprintf(r.out, "  fleet status page:   https://%s/ (the fleet's own CA, %s: your browser will ask; the password is %s)\n",
			r.opt.StatusAddr, r.pin, filepath.Join(r.state(), "operator.token"))
	}
	fmt.Fprintf(r.out, "  fleet table:         weft ctl fleet --state %s   (the controller's socket; or, in namespace %s, --controller %s)\n", r.state(), r.opt.Netns, controllerURL)
	fmt.Fprintf(r.out, "  a probe:             weft ctl fleet probe --state %s --from node-1/red-1 --to 10.1.0.12\n", r.state())
	for i := 1; i <= r.opt.Nodes; i++ {
		fmt.Fprintf(r.out, "  %s console:     weft qemu console %s   (then: ctl status, ctl peers, ctl routes, steps)\n", nodeName(i), filepath.Join(r.dir, nodeName(i)+".sock"))
	}
	fmt.Fprintf(r.out, "  serial logs:         %s/node-*.console\nCtrl-C stops the fleet and removes everything.\n", r.dir)
	<-ctx.Done()
}
