package server_test

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// bpffs mounts a bpffs of the test's own: `ip netns exec`, which starts
// the lab's vRouters, hides /sys/fs/bpf, but not a mount elsewhere.
func bpffs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bpf")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount a bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// stallMeter is a TCP sink that records the longest time without data.
type stallMeter struct {
	mu      sync.Mutex
	last    time.Time
	longest time.Duration
	bytes   int64
}

func (m *stallMeter) serve(ln net.Listener) {
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<16)
		for {
			n, err := c.Read(buf)
			now := time.Now()
			m.mu.Lock()
			if !m.last.IsZero() && now.Sub(m.last) > m.longest {
				m.longest = now.Sub(m.last)
			}
			m.last, m.bytes = now, m.bytes+int64(n)
			m.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

func (m *stallMeter) read() (time.Duration, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.longest, m.bytes
}

// TestFastPathSurvivesVRouterRestart: a TCP transfer between networks 100
// (p1 on a) and 300 (p2 on b), allowed by a rule, goes on while a's
// vRouter is killed with SIGKILL, stays dead for 4 s and is started
// again: the pinned programs and maps keep forwarding the established
// flow, and the new vRouter adopts them, re-decides the flow with its own
// policy (the flow is in its table, carried by the kernel), and removes
// the pins and the veth pair of a port its client did not create again.
// A clean stop then leaves nothing pinned.
func TestFastPathSurvivesVRouterRestart(t *testing.T) {
	pins := bpffs(t)
	l := lab.New(t, "wtfr")
	a, b := l.Host(t, "a", "192.0.2.1"), l.Host(t, "b", "192.0.2.2")
	p1, p2, p3 := l.Endpoint(t, "p1"), l.Endpoint(t, "p2"), l.Endpoint(t, "p3")
	aPins := filepath.Join(pins, "a")
	args := []string{"--fastpath", "--fastpath-pins", aPins}
	a.StartVRouter(t, args...)
	b.StartVRouter(t, "--fastpath", "--fastpath-pins", filepath.Join(pins, "b"))
	a.RequireFastPath(t)
	b.RequireFastPath(t)
	rule := &vrouterv1.Op{Op: &vrouterv1.Op_PutRule{PutRule: &vrouterv1.Rule{Id: 1, Name: "web", SrcNetwork: 100, DstNetwork: 300,
		Protocol: 6, DstPorts: []*vrouterv1.PortRange{{First: 8000}}}}}
	programA := func(extra ...*vrouterv1.Op) {
		apply(t, a, append([]*vrouterv1.Op{putVRF(1, 100, "front"), putPort(tap(1, 1, "p1", p1.Name, "10.2.0.2/24")), portNH(1, 1, 100),
			putRoute(1, "10.2.0.2/32", 1), putLabel(101, 1),
			tunnelNH(2, vrouterv1.Encap_ENCAP_MPLSOUDP, b.Underlay, 201, 300), putRoute(1, "10.3.0.2/32", 2), rule}, extra...)...)
	}
	programA(putPort(tap(3, 1, "p3", p3.Name, "10.2.0.3/24")))
	apply(t, b, putVRF(1, 300, "back"), putPort(tap(1, 1, "p2", p2.Name, "10.3.0.2/24")), portNH(1, 1, 300),
		putRoute(1, "10.3.0.2/32", 1), putLabel(201, 1),
		tunnelNH(2, vrouterv1.Encap_ENCAP_MPLSOUDP, a.Underlay, 101, 100), putRoute(1, "10.2.0.2/32", 2), rule)
	if _, err := os.Stat(filepath.Join(aPins, "ports", "3", "veth")); err != nil {
		t.Fatalf("p3's veth link is not pinned: %v", err)
	}

	var m stallMeter
	m.serve(listenTCP(t, p2, "10.3.0.2:8000"))
	c, err := dialTCP(p1, "10.3.0.2:8000", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<14)
		for {
			select {
			case <-stop:
				sent <- nil
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(buf); err != nil {
				sent <- err
				return
			}
		}
	}()
	time.Sleep(time.Second)

	a.VRouter.Kill(unix.SIGKILL)
	waitFor(t, "a's vRouter to die", 5*time.Second, a.VRouter.Exited)
	_, before := m.read()
	time.Sleep(4 * time.Second) // no vRouter on a
	_, during := m.read()
	a.StartVRouter(t, args...)
	programA()                  // p3 is not created again: deleted while a had no vRouter
	time.Sleep(4 * time.Second) // past the adoption
	close(stop)
	if err := <-sent; err != nil {
		t.Fatalf("the transfer broke: %v", err)
	}
	longest, total := m.read()
	t.Logf("longest stall %v; %d MiB received in all, %d MiB while a had no vRouter", longest.Round(time.Millisecond), total>>20, (during-before)>>20)
	if longest > 5*time.Second {
		t.Errorf("the transfer stalled %v across the vRouter's restart", longest)
	}
	if during == before {
		t.Error("nothing was forwarded while a had no vRouter: the kernel did not carry the flow")
	}

	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	info, err := a.Client.Info(ctx, &vrouterv1.InfoRequest{})
	if err != nil || info.GetFastPath() != "on" {
		t.Errorf("a's fast path after the adoption: %q (%v), want \"on\"", info.GetFastPath(), err)
	}
	fl, err := a.Client.Flows(ctx, &vrouterv1.FlowsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var kernel uint64
	for _, f := range fl.GetFlows() {
		if f.GetDstPort() == 8000 && f.GetDst() == "10.3.0.2" {
			kernel = f.GetKernelPackets()
			t.Logf("the new vRouter's flow: %d packets, %d of them in the kernel", f.GetPackets(), kernel)
			if kernel > f.GetPackets() {
				t.Errorf("the flow's packets (%d) do not include the %d the kernel carried", f.GetPackets(), kernel)
			}
		}
	}
	if kernel == 0 {
		t.Errorf("the new vRouter's flow table has no kernel-carried entry for the transfer: %v", fl.GetFlows())
	}
	// The tunnel counters include what the kernel encapsulated, the
	// flow's packets among them (the maps, and their counts, outlived
	// the vRouter before).
	if tx := counters(t, a).GetTunnelTx()["mplsoudp"]; tx < kernel {
		t.Errorf("a's MPLSoUDP tx counter %d is below the %d packets the kernel sent of one flow: the kernel's are not merged", tx, kernel)
	}
	if _, err := os.Stat(filepath.Join(aPins, "ports", "3")); !os.IsNotExist(err) {
		t.Errorf("the deleted port's pins are still there (%v)", err)
	}
	if err := a.NS.Do(func() error { _, err := netlink.LinkByName("fpp3"); return err }); err == nil {
		t.Error("the deleted port's veth pair is still there")
	}

	a.VRouter.Kill(unix.SIGTERM)
	waitFor(t, "a's vRouter to stop", 10*time.Second, a.VRouter.Exited)
	if _, err := os.Stat(aPins); !os.IsNotExist(err) {
		t.Errorf("a clean stop left %s (%v)", aPins, err)
	}

	// A crash, then a vRouter without the fast path: it removes what the
	// crashed one left (pins, the endpoint's veth pair) and serves p1
	// with a TAP.
	a.StartVRouter(t, args...)
	programA()
	a.VRouter.Kill(unix.SIGKILL)
	waitFor(t, "a's vRouter to die", 5*time.Second, a.VRouter.Exited)
	if _, err := os.Stat(filepath.Join(aPins, "ports", "1")); err != nil {
		t.Fatalf("a crash left no pins for p1: %v", err)
	}
	a.StartVRouter(t, "--fastpath-pins", aPins)
	if _, err := os.Stat(aPins); !os.IsNotExist(err) {
		t.Errorf("a vRouter without --fastpath left the crashed one's %s (%v)", aPins, err)
	}
	if err := a.NS.Do(func() error { _, err := netlink.LinkByName("fpp1"); return err }); err == nil {
		t.Error("a vRouter without --fastpath left the crashed one's veth pair")
	}
	programA()
	var kind string
	if err := p1.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			kind = l.Type()
		}
		return err
	}); err != nil || kind != "tuntap" {
		t.Errorf("p1's eth0 without the fast path: %q (%v), want a TAP", kind, err)
	}
}
