package controller

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"

	"github.com/weftnet/weft/controller/boot"
	"github.com/weftnet/weft/controller/dhcp"
)

// The real-client tests run the controller's DHCP server in the test
// process's own network namespace (see TestMain) on one end of a veth
// pair, and Debian's udhcpc and dhclient in namespace wtcd-c on the other
// end, the NIC's MAC set to a node's. 198.18.10.0/24 is in the
// benchmarking range: nobody's real addresses.

const (
	dhcpServerIf = "wtcd0"
	dhcpClientIf = "wtcd1"
)

// logBuffer keeps a test's log lines, for assertions, and shows them.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	if os.Getenv("WEFT_CONTROLLER_DEBUG") != "" {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dhcpSegment joins the test process's namespace to namespace wtcd-c with
// a veth pair, 198.18.10.1/24 (MTU 9000) on this side; the other side is
// down with no address.
func dhcpSegment(t *testing.T) *nettest.NS {
	t.Helper()
	testenv.RequireRoot(t)
	if os.Getenv(envInNetns) == "" {
		testenv.Unavailable(t, "not re-executed in a network namespace of its own")
	}
	h, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close(); h.Close() })
	self := &nettest.NS{Handle: h, NL: nl}
	ns := nettest.New(t, "wtcd-c")
	nettest.Veth(t, self, dhcpServerIf, "198.18.10.1/24", ns, dhcpClientIf, "")
	self.SetMTU(t, dhcpServerIf, 9000)
	t.Cleanup(func() {
		if l, err := nl.LinkByName(dhcpServerIf); err == nil {
			nl.LinkDel(l)
		}
	})
	return ns
}

// clientShell runs a DHCP client (the arguments after the directory) with
// /etc overlaid by a tmpfs, in a private mount and UTS namespace: the
// client's script may rewrite resolv.conf and the hostname there, never
// on the host.
const clientShell = `set -e
dir=$1; shift
mount -t tmpfs weft-test "$dir/ovl"
mkdir "$dir/ovl/up" "$dir/ovl/work"
mount -t overlay weft-test -o "lowerdir=/etc,upperdir=$dir/ovl/up,workdir=$dir/ovl/work" /etc
"$@" > "$dir/client.log" 2>&1 </dev/null
`

// runDHCPClient runs argv in ns as clientShell does; dir is its directory.
func runDHCPClient(t *testing.T, ns *nettest.NS, dir string, argv ...string) error {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "ovl"), 0o700); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--mount", "--uts", "--", "sh", "-c", clientShell, "sh", dir}, argv...)
	out, err := ns.Try(40*time.Second, "unshare", args...)
	log, _ := os.ReadFile(filepath.Join(dir, "client.log"))
	t.Logf("%s: %v\n%s%s", argv[0], err, out, log)
	return err
}

// udhcpcEnv runs udhcpc once (extra arguments added) and returns the
// variables its script saw at "bound"; the script then configures the
// interface as Debian's does.
func udhcpcEnv(t *testing.T, ns *nettest.NS, extra ...string) (map[string]string, error) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	text := "#!/bin/sh\ncase \"$1\" in bound|renew) env > " + filepath.Join(dir, "env") + " ;; esac\nexec /etc/udhcpc/default.script \"$@\"\n"
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"udhcpc", "-i", dhcpClientIf, "-f", "-q", "-n", "-t", "3", "-T", "2", "-s", script}, extra...)
	err := runDHCPClient(t, ns, dir, argv...)
	env := map[string]string{}
	b, _ := os.ReadFile(filepath.Join(dir, "env"))
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env, err
}

// resetClient takes the client's NIC back to no address, MTU 1500 and
// the given MAC.
func resetClient(t *testing.T, ns *nettest.NS, mac string) {
	t.Helper()
	ns.Run(t, "ip", "addr", "flush", "dev", dhcpClientIf)
	ns.Run(t, "ip", "link", "set", dhcpClientIf, "address", mac, "mtu", "1500", "up")
}

// TestDHCPRealClients: Debian's udhcpc and dhclient get node-1's address,
// subnet, hostname and MTU from the controller, and no router; an iPXE
// client also gets the boot script's URL, which serves the script from
// the node's side; a MAC the inventory lacks gets no answer, and the log
// says which MAC to add.
func TestDHCPRealClients(t *testing.T) {
	testenv.SkipIfShort(t)
	testenv.RequireTools(t, "ip", "udhcpc", "dhclient", "unshare", "mount", "busybox")
	ns := dhcpSegment(t)
	dir, _, _ := fakeImage(t)
	logs := &logBuffer{t: t}
	s, err := New(Options{State: t.TempDir(), Inventory: "dhcp/testdata/dhcp.yaml", WatchInterval: -1,
		Log:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DHCP: &dhcp.Config{Interface: dhcpServerIf}, Boot: &boot.Config{Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "198.18.10.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	serveOn(t, s, ln)
	waitFor(t, 5*time.Second, "the DHCP server to start", func() bool { return s.Fleet().DHCP != nil })
	bootURL := fmt.Sprintf("http://198.18.10.1:%d/boot.ipxe", port)
	if b := s.Fleet().DHCP.BootFile; b != bootURL {
		t.Errorf("fleet view: boot file %q, want %q", b, bootURL)
	}

	checkConfigured := func(t *testing.T) {
		t.Helper()
		if out := ns.Run(t, "ip", "-4", "-o", "addr", "show", "dev", dhcpClientIf); !strings.Contains(out, "inet 198.18.10.11/24 ") {
			t.Errorf("interface: %s", out)
		}
		if out := ns.Run(t, "ip", "-o", "link", "show", dhcpClientIf); !strings.Contains(out, " mtu 9000 ") {
			t.Errorf("MTU: %s", out)
		}
		if out := ns.Run(t, "ip", "-4", "route", "show", "default"); out != "" {
			t.Errorf("a default route, with no router configured: %s", out)
		}
	}

	t.Run("udhcpc", func(t *testing.T) {
		resetClient(t, ns, "52:54:00:0d:00:01")
		env, err := udhcpcEnv(t, ns)
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"ip": "198.18.10.11", "subnet": "255.255.255.0", "mtu": "9000", "hostname": "node-1",
			"serverid": "198.18.10.1", "lease": "3600", "router": "", "bootfile": "", "boot_file": ""} {
			if env[k] != want {
				t.Errorf("udhcpc's %s=%q, want %q", k, env[k], want)
			}
		}
		checkConfigured(t)
	})

	t.Run("udhcpc as iPXE", func(t *testing.T) {
		resetClient(t, ns, "52:54:00:0d:00:01")
		// User class 77 as iPXE sends it: the bare string.
		env, err := udhcpcEnv(t, ns, "-x", "0x4d:"+fmt.Sprintf("%x", "iPXE"))
		if err != nil {
			t.Fatal(err)
		}
		if env["bootfile"] != bootURL || env["boot_file"] != bootURL {
			t.Errorf("udhcpc's bootfile=%q boot_file=%q, want %s", env["bootfile"], env["boot_file"], bootURL)
		}
		// The URL works from the node's side, and the script names this
		// controller as the node reached it.
		out, err := ns.Try(20*time.Second, "busybox", "wget", "-q", "-O", "-", bootURL)
		if err != nil || !strings.Contains(out, fmt.Sprintf("kernel http://198.18.10.1:%d/boot/vmlinuz initrd=initramfs.cpio.gz console=ttyS0 weft.config=https://198.18.10.1:%d/ weft.ca=%s\n", port, port, s.CA())) {
			t.Errorf("fetching %s from the node: %v\n%s", bootURL, err, out)
		}
		if n := s.Fleet().Nodes[0]; n.BootFetched.IsZero() {
			t.Errorf("node-1's boot script fetch is not in the fleet view")
		}
	})

	t.Run("dhclient", func(t *testing.T) {
		resetClient(t, ns, "52:54:00:0d:00:01")
		dir := t.TempDir()
		t.Cleanup(func() {
			// dhclient stays as a daemon to renew: end it by its pid.
			if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		})
		if err := runDHCPClient(t, ns, dir, "dhclient", "-4", "-1", "-v", "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), dhcpClientIf); err != nil {
			t.Fatal(err)
		}
		leases, _ := os.ReadFile(filepath.Join(dir, "leases"))
		for _, want := range []string{"fixed-address 198.18.10.11;", "option subnet-mask 255.255.255.0;", `option host-name "node-1";`,
			"option interface-mtu 9000;", "option dhcp-server-identifier 198.18.10.1;", "option dhcp-lease-time 3600;"} {
			if !strings.Contains(string(leases), want) {
				t.Errorf("lease lacks %q:\n%s", want, leases)
			}
		}
		if strings.Contains(string(leases), "option routers") {
			t.Errorf("a router in the lease:\n%s", leases)
		}
		checkConfigured(t)
		if n := s.Fleet().Nodes[0]; n.Name != "node-1" || n.Leased.IsZero() {
			t.Errorf("node-1's lease is not in the fleet view: %+v", n)
		}
	})

	t.Run("unknown MAC", func(t *testing.T) {
		resetClient(t, ns, "52:54:00:0d:00:99")
		env, err := udhcpcEnv(t, ns, "-t", "2", "-T", "1")
		if err == nil || env["ip"] != "" {
			t.Errorf("an unknown MAC got a lease: %v", env)
		}
		if out := ns.Run(t, "ip", "-4", "-o", "addr", "show", "dev", dhcpClientIf); out != "" {
			t.Errorf("an address on the unknown NIC: %s", out)
		}
		found := false
		for l := range strings.SplitSeq(logs.String(), "\n") {
			found = found || strings.Contains(l, `level=WARN msg="dhcp: no answer to a MAC the inventory lacks: add it to a node's macs in the inventory`) &&
				strings.Contains(l, " mac=52:54:00:0d:00:99 ")
		}
		if !found {
			t.Errorf("no log line names the unknown MAC:\n%s", logs)
		}
	})
	if l := logs.String(); strings.Contains(l, "panic") || strings.Contains(l, "level=ERROR") {
		t.Errorf("errors in the log:\n%s", l)
	}
}
