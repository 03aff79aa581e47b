// Package nettest builds the real topologies the privileged tests run on:
// named network namespaces, veth pairs and bridges between them, commands
// and Go functions run inside a namespace. Everything is named by the test
// (a short prefix per package keeps parallel packages apart), removed by
// name when the test ends, and removed before it is created should an
// earlier run have died. Tests only ever talk to the addresses they put
// into their own namespaces.
package nettest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// NS is a named network namespace (as `ip netns add` makes it, under
// /run/netns).
type NS struct {
	Name   string
	Handle netns.NsHandle
	NL     *netlink.Handle // netlink inside the namespace
}

// Path is the namespace's bind mount, as CNI and `weft vrouter` take it.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// New creates namespace name with its loopback up, and deletes it when t
// ends. It needs root (a skip locally, a failure under CI). Names must be
// short: they become interface names in some tests (15 bytes at most).
func New(t testing.TB, name string) *NS {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	Delete(name) // a leftover of a run that died
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		Delete(name)
		t.Fatalf("netns %s: %v", name, err)
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		Delete(name)
		t.Fatalf("netlink in %s: %v", name, err)
	}
	ns := &NS{Name: name, Handle: h, NL: nl}
	t.Cleanup(func() {
		nl.Close()
		h.Close()
		Delete(name)
	})
	if lo, err := nl.LinkByName("lo"); err == nil {
		nl.LinkSetUp(lo)
	}
	return ns
}

// Delete removes namespace name if it exists: every process still in it
// is killed first, so that nothing outlives the test.
func Delete(name string) {
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

// Veth joins a and b with a veth pair (nameA in a, nameB in b), sets both
// up, and assigns the addresses given (CIDR strings, may be empty).
func Veth(t testing.TB, a *NS, nameA, addrA string, b *NS, nameB, addrB string) {
	t.Helper()
	la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: nameB, PeerNamespace: netlink.NsFd(b.Handle)}
	if err := a.NL.LinkAdd(la); err != nil {
		t.Fatalf("veth %s/%s: %v", nameA, nameB, err)
	}
	a.Up(t, nameA, addrA)
	b.Up(t, nameB, addrB)
}

// Bridge creates bridge name in n and up; Attach puts links on it.
func (n *NS) Bridge(t testing.TB, name string) {
	t.Helper()
	if err := n.NL.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("bridge %s in %s: %v", name, n.Name, err)
	}
	n.Up(t, name, "")
}

// Attach enslaves link to bridge, both in n.
func (n *NS) Attach(t testing.TB, bridge, link string) {
	t.Helper()
	br, err := n.NL.LinkByName(bridge)
	if err != nil {
		t.Fatalf("%s in %s: %v", bridge, n.Name, err)
	}
	l, err := n.NL.LinkByName(link)
	if err != nil {
		t.Fatalf("%s in %s: %v", link, n.Name, err)
	}
	if err := n.NL.LinkSetMaster(l, br); err != nil {
		t.Fatalf("%s to bridge %s: %v", link, bridge, err)
	}
}

// Up sets link up in n and adds addr (a CIDR) when not empty.
func (n *NS) Up(t testing.TB, link, addr string) {
	t.Helper()
	l, err := n.NL.LinkByName(link)
	if err != nil {
		t.Fatalf("%s in %s: %v", link, n.Name, err)
	}
	if addr != "" {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			t.Fatalf("address %q: %v", addr, err)
		}
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := n.NL.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s in %s: %v", addr, link, n.Name, err)
		}
	}
	if err := n.NL.LinkSetUp(l); err != nil {
		t.Fatalf("%s up in %s: %v", link, n.Name, err)
	}
}

// SetMTU sets link's MTU in n.
func (n *NS) SetMTU(t testing.TB, link string, mtu int) {
	t.Helper()
	l, err := n.NL.LinkByName(link)
	if err != nil {
		t.Fatalf("%s in %s: %v", link, n.Name, err)
	}
	if err := n.NL.LinkSetMTU(l, mtu); err != nil {
		t.Fatalf("mtu %d on %s in %s: %v", mtu, link, n.Name, err)
	}
}

// Command returns cmd prepared to run inside n (through `ip netns exec`).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command in n and returns its combined output; a failure is
// fatal to the test.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Try runs a command in n and returns its output and error.
func (n *NS) Try(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// Start starts a long-running command in n; it is killed when t ends.
func (n *NS) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := n.Command(context.Background(), name, args...)
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("in %s: start %s: %v", n.Name, name, err)
	}
	t.Cleanup(func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// Do runs f on an OS thread switched into n (sockets f opens live in n).
func (n *NS) Do(f func() error) error { return nsexec.DoHandle(n.Handle, f) }

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
