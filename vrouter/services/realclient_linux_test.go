package services

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// The real-client tests put a TAP device into a network namespace and
// answer it with Handle from the test process, the way a vRouter port
// will; the kernel's own ARP, neighbor discovery and router discovery, and
// Debian's DHCP clients, are on the other side. Nothing leaves the
// namespace: the frames the services do not answer (the pings) end in the
// test's loop, which records them as the forwarder would receive them.

const tapName = "wtap0"

// tapLoop is a TAP device and the loop answering it: a minimal stand-in
// for the vRouter's port, private to these tests.
type tapLoop struct {
	f    *os.File
	p    *PortInfo
	done chan struct{}

	mu        sync.Mutex
	forwarded [][]byte // frames Handle left to the forwarder
	errs      []error  // Handle's refusals: the kernel and clients send none
	replies   int
}

// startTAP creates a TAP device in ns with the endpoint's MAC, sets it up
// and answers it with Handle until the test ends.
func startTAP(t *testing.T, ns *nettest.NS, p *PortInfo) *tapLoop {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	var fd int
	err := ns.Do(func() error {
		var err error
		// The TAP is created in the namespace of the thread that sets it up.
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(tapName)
		if err == nil {
			ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", tapName, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tap in %s: %v", ns.Name, err)
	}
	// Non-blocking, so the runtime poller serves reads and Close ends them.
	l := &tapLoop{f: os.NewFile(uintptr(fd), "tap:"+tapName), p: p, done: make(chan struct{})}
	t.Cleanup(func() {
		l.f.Close() // also removes the device
		<-l.done
	})
	go l.run()
	ns.Run(t, "ip", "link", "set", tapName, "address", p.MAC.String(), "mtu", "1500", "up")
	return l
}

func (l *tapLoop) run() {
	defer close(l.done)
	buf := make([]byte, 65536)
	out := make([]byte, MaxReplyLen)
	for {
		n, err := l.f.Read(buf)
		if err != nil {
			return // closed
		}
		m, handled, err := Handle(buf[:n], l.p, out)
		l.mu.Lock()
		switch {
		case err != nil:
			l.errs = append(l.errs, err)
		case !handled:
			l.forwarded = append(l.forwarded, append([]byte(nil), buf[:n]...))
		case m > 0:
			l.replies++
		}
		l.mu.Unlock()
		if m > 0 {
			if _, err := l.f.Write(out[:m]); err != nil && !errors.Is(err, os.ErrClosed) {
				l.mu.Lock()
				l.errs = append(l.errs, fmt.Errorf("tap write: %w", err))
				l.mu.Unlock()
			}
		}
	}
}

// checkNoErrors fails the test if Handle refused anything the kernel or a
// client sent.
func (l *tapLoop) checkNoErrors(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Errorf("Handle refused a frame from the namespace: %v", err)
	}
}

// forwardedTo reports whether an IP packet to dst, sent to the gateway MAC,
// reached the loop for the forwarder.
func (l *tapLoop) forwardedTo(dst netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.forwarded {
		eth, err := packet.ParseEthernet(f)
		if err != nil || eth.Dst() != l.p.GatewayMAC {
			continue
		}
		switch eth.EtherType() {
		case packet.EtherTypeIPv4:
			if ip, err := packet.ParseIPv4(eth.Payload()); err == nil && ip.Dst() == dst {
				return true
			}
		case packet.EtherTypeIPv6:
			if ip, err := packet.ParseIPv6(eth.Payload()); err == nil && ip.Dst() == dst {
				return true
			}
		}
	}
	return false
}

// waitFor polls cond (which returns what it saw) until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (string, bool)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		saw, ok := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s: still %q", timeout, what, saw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outputHas polls a command in ns until its output contains want.
func outputHas(t *testing.T, ns *nettest.NS, timeout time.Duration, want string, cmd ...string) {
	t.Helper()
	waitFor(t, timeout, strings.Join(cmd, " ")+" to show "+want, func() (string, bool) {
		out, _ := ns.Try(5*time.Second, cmd[0], cmd[1:]...)
		return out, strings.Contains(out, want)
	})
}

func requireRealClients(t *testing.T, tools ...string) {
	t.Helper()
	testenv.SkipIfShort(t)
	testenv.RequireRoot(t)
	testenv.RequireTools(t, append([]string{"ip", "ping"}, tools...)...)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Unavailable(t, "no /dev/net/tun: "+err.Error())
	}
}

// TestTAPNeighbors has the kernel resolve addresses in and out of its
// subnet over the TAP, and learn its IPv6 default route from a router
// solicitation, its duplicate address detection passing.
func TestTAPNeighbors(t *testing.T) {
	requireRealClients(t)
	ns := nettest.New(t, "wts-nd")
	p := testPort()
	p.DHCP = false
	l := startTAP(t, ns, p)
	gwm := p.GatewayMAC.String()

	// IPv6 first: the solicitation goes out once link-local DAD is done.
	ns.Run(t, "ip", "-6", "addr", "add", ep6.String(), "dev", tapName) // with DAD
	outputHas(t, ns, 10*time.Second, "default via fe80::1 dev "+tapName+" proto ra", "ip", "-6", "route", "show", "default")
	waitFor(t, 5*time.Second, "IPv6 addresses to pass DAD", func() (string, bool) {
		out, _ := ns.Try(5*time.Second, "ip", "-6", "addr", "show", "dev", tapName)
		return out, strings.Contains(out, ep6.String()) && strings.Contains(out, "scope link") &&
			!strings.Contains(out, "tentative") && !strings.Contains(out, "dadfailed")
	})
	if mtu := strings.TrimSpace(ns.Run(t, "cat", "/proc/sys/net/ipv6/conf/"+tapName+"/mtu")); mtu != "1400" {
		t.Errorf("IPv6 MTU %s, want 1400 from the router advertisement", mtu)
	}
	outputHas(t, ns, time.Second, "lladdr "+gwm+" router", "ip", "-6", "neigh", "show", "fe80::1", "dev", tapName)

	for _, dst := range []string{"2001:db8:100::7", "2001:db8:200::1"} {
		ns.Try(5*time.Second, "ping", "-6", "-c", "1", "-W", "1", dst) // nobody answers the echo itself
		if !l.forwardedTo(netip.MustParseAddr(dst)) {
			t.Errorf("echo to %s did not reach the forwarder at the gateway MAC", dst)
		}
	}
	outputHas(t, ns, time.Second, "lladdr "+gwm+" router", "ip", "-6", "neigh", "show", "2001:db8:100::7", "dev", tapName)

	ns.Run(t, "ip", "addr", "add", ep4.String(), "dev", tapName)
	ns.Run(t, "ip", "route", "add", "default", "via", gw4.String())
	for _, dst := range []string{"10.0.100.7", "198.51.100.1"} {
		ns.Try(5*time.Second, "ping", "-c", "1", "-W", "1", dst)
		if !l.forwardedTo(netip.MustParseAddr(dst)) {
			t.Errorf("echo to %s did not reach the forwarder at the gateway MAC", dst)
		}
	}
	outputHas(t, ns, time.Second, "lladdr "+gwm, "ip", "neigh", "show", "10.0.100.7", "dev", tapName)
	outputHas(t, ns, time.Second, "lladdr "+gwm, "ip", "neigh", "show", gw4.String(), "dev", tapName)
	l.checkNoErrors(t)
}

// dhcpClient is how one Debian client is run and what its script writes.
type dhcpClient struct {
	tool string
	args func(dir string) []string
	// dns is what the client's script puts in resolv.conf for the port.
	dns []string
}

var dhclient = dhcpClient{
	tool: "dhclient",
	args: func(dir string) []string {
		return []string{"dhclient", "-4", "-1", "-v", "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), tapName}
	},
	dns: []string{"nameserver 10.0.100.53", "search db.weft.internal"},
}

// udhcpc validates the offer with an ARP probe (-a), which the services
// must leave unanswered, and asks for broadcast replies (-B).
var udhcpc = dhcpClient{
	tool: "udhcpc",
	args: func(string) []string {
		return []string{"udhcpc", "-i", tapName, "-f", "-q", "-n", "-t", "5", "-T", "2", "-a500", "-B", "-s", "/etc/udhcpc/default.script"}
	},
	dns: []string{"nameserver 10.0.100.53", "domain db.weft.internal"},
}

// clientScript runs a DHCP client with /etc overlaid by a tmpfs in a
// private mount and UTS namespace: the client's script rewrites
// resolv.conf (and would set the hostname) there, never on the host. It
// copies the resolv.conf the client wrote to the test's directory.
const clientScript = `set -e
dir=$1; shift
mount -t tmpfs weft-test "$dir/ovl"
mkdir "$dir/ovl/up" "$dir/ovl/work"
mount -t overlay weft-test -o "lowerdir=/etc,upperdir=$dir/ovl/up,workdir=$dir/ovl/work" /etc
: > /etc/resolv.conf
"$@" > "$dir/client.log" 2>&1 </dev/null
cp /etc/resolv.conf "$dir/resolv.conf"
`

// runClient runs c against the TAP in ns until it has a lease.
func runClient(t *testing.T, ns *nettest.NS, c dhcpClient) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "ovl"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// dhclient stays behind as a daemon to renew: end it by its pid
		// (the namespace's removal would too).
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
	})
	args := append([]string{"--mount", "--uts", "--", "sh", "-c", clientScript, "sh", dir}, c.args(dir)...)
	out, err := ns.Try(45*time.Second, "unshare", args...)
	log, _ := os.ReadFile(filepath.Join(dir, "client.log"))
	if err != nil {
		t.Fatalf("%s: %v\n%s\n%s", c.tool, err, out, log)
	}
	t.Logf("%s:\n%s", c.tool, log)
	return dir
}

// TestTAPDHCP has dhclient and udhcpc from Debian configure the TAP, with
// a /24 and with a /32 behind an off-link gateway, then checks what a user
// would: the interface's address, default route, MTU and resolver, and
// that the gateway it routes through resolves to the gateway MAC.
func TestTAPDHCP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ns     string
		client dhcpClient
		addr   string
		routes []string // what `ip -4 route` must show
		lease  []string // what dhclient's lease file must hold
	}{
		{"dhclient /24", "wts-dc24", dhclient, "10.0.100.3/24", []string{"default via 10.0.100.1 dev " + tapName}, nil},
		// dhclient-script could route a /32 from option 3 alone; the lease
		// shows that the routes came from option 121 (route to the gateway
		// on the link, then the default via it).
		{"dhclient /32", "wts-dc32", dhclient, "10.0.100.3/32", []string{"default via 10.0.100.1 dev " + tapName, "10.0.100.1 dev " + tapName + " scope link"},
			[]string{"option rfc3442-classless-static-routes 32,10,0,100,1,0,0,0,0,0,10,0,100,1;"}},
		{"udhcpc /24", "wts-ud24", udhcpc, "10.0.100.3/24", []string{"default via 10.0.100.1 dev " + tapName}, nil},
		// Debian's udhcpc script ignores option 121 and routes a /32
		// with onlink from option 3.
		{"udhcpc /32", "wts-ud32", udhcpc, "10.0.100.3/32", []string{"default via 10.0.100.1 dev " + tapName + " onlink"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRealClients(t, tc.client.tool, "unshare", "mount")
			hostResolv, _ := os.ReadFile("/etc/resolv.conf")
			ns := nettest.New(t, tc.ns)
			p := testPort()
			p.Addresses = []netip.Prefix{netip.MustParsePrefix(tc.addr)}
			p.Gateways = []netip.Addr{gw4}
			p.DNS = []netip.Addr{dns4}
			l := startTAP(t, ns, p)

			dir := runClient(t, ns, tc.client)

			outputHas(t, ns, time.Second, "inet "+tc.addr+" ", "ip", "-4", "-o", "addr", "show", "dev", tapName)
			for _, r := range tc.routes {
				outputHas(t, ns, time.Second, r, "ip", "-4", "route", "show")
			}
			outputHas(t, ns, time.Second, " mtu 1400 ", "ip", "-o", "link", "show", tapName)
			resolv, err := os.ReadFile(filepath.Join(dir, "resolv.conf"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.client.dns {
				if !strings.Contains(string(resolv), want) {
					t.Errorf("resolv.conf from %s lacks %q:\n%s", tc.client.tool, want, resolv)
				}
			}
			if tc.client.tool == "dhclient" {
				leases, _ := os.ReadFile(filepath.Join(dir, "leases"))
				for _, want := range append(tc.lease, `option host-name "pg1"`, "option interface-mtu 1400", "option dhcp-lease-time 3600", "option dhcp-server-identifier 10.0.100.1") {
					if !strings.Contains(string(leases), want) {
						t.Errorf("lease lacks %q:\n%s", want, leases)
					}
				}
			}
			if after, _ := os.ReadFile("/etc/resolv.conf"); string(after) != string(hostResolv) {
				t.Fatalf("the host's /etc/resolv.conf changed:\n%s", after)
			}

			// The route the client installed works: the gateway resolves
			// to the gateway MAC and the packet reaches the forwarder.
			ns.Try(5*time.Second, "ping", "-c", "1", "-W", "1", "198.51.100.1")
			if !l.forwardedTo(netip.MustParseAddr("198.51.100.1")) {
				t.Error("echo to 198.51.100.1 did not reach the forwarder at the gateway MAC")
			}
			outputHas(t, ns, time.Second, "lladdr "+p.GatewayMAC.String(), "ip", "neigh", "show", gw4.String(), "dev", tapName)
			l.checkNoErrors(t)
		})
	}
}
