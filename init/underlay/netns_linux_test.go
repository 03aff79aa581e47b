package underlay

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/init/steps"
	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/internal/testrig/syncbuf"
)

// Helpers shared by the privileged tests: every namespace is named
// weftul-<tag>-<pid>, removed by name when the test ends (and before it
// starts, should an earlier run have died).

// withNetns points a Manager at a network namespace: netlink through a
// handle in it, sockets and /proc/sys writes on a thread switched into it.
func withNetns(ns netns.NsHandle) option {
	return func(m *Manager) error {
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink handle in %s: %w", ns, err)
		}
		m.nl = h
		m.inNS = func(f func() error) error { return nsexec.DoHandle(ns, f) }
		return nil
	}
}

// newNetns creates the namespace weftul-<tag>-<pid> with loopback up.
func newNetns(t *testing.T, tag string) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	name := fmt.Sprintf("weftul-%s-%d", tag, os.Getpid())
	_ = netns.DeleteNamed(name) // leftover of a run that died
	var ns netns.NsHandle
	err := func() error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				errc <- err
				return
			}
			defer orig.Close()
			ns, err = netns.NewNamed(name) // switches this thread into it
			if serr := netns.Set(orig); serr == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
		}()
		return <-errc
	}()
	if err != nil {
		t.Fatalf("creating netns %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("deleting netns %s: %v", name, err)
		}
	})
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	return ns, h
}

// veth creates a veth pair: name (with MAC m) in h's namespace, peer in
// peerNS, both up.
func veth(t *testing.T, h *netlink.Handle, name, m string, peerNS netns.NsHandle, hp *netlink.Handle, peer string) {
	t.Helper()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, HardwareAddr: mac(m)},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(int(peerNS)),
	}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", name, peer, err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		name string
	}{{h, name}, {hp, peer}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// newTestManager returns a Manager on ns with a recorder whose console
// lines are returned, and closes it at the end of the test.
func newTestManager(t *testing.T, ns netns.NsHandle, opts ...option) (*Manager, *steps.Recorder, *syncbuf.Buffer) {
	t.Helper()
	console := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var out io.Writer = console
	if inGuest() { // the host shows the guest's verdict lines
		out = io.MultiWriter(console, os.Stdout)
	}
	rec := steps.New(out, "", log)
	m, err := newManager(rec, log, append([]option{withNetns(ns), withResolvConf(t.TempDir() + "/resolv.conf")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		m.nl.Close()
		if t.Failed() {
			t.Logf("console:\n%s", console.String())
		}
	})
	return m, rec, console
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// stepOf returns the latest step of name for link (attr link), or nil.
func stepOf(rec *steps.Recorder, name, link string) *steps.Step {
	for _, s := range rec.Steps() {
		if s.Name == name && s.Attrs["link"] == link {
			return &s
		}
	}
	return nil
}
