package server_test

import (
	"io"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// linkStats are a device's counters in h's namespace.
func linkStats(t testing.TB, h *lab.Host, dev string) *netlink.LinkStatistics {
	t.Helper()
	var st *netlink.LinkStatistics
	err := h.NS.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		st = l.Attrs().Statistics
		return nil
	})
	if err != nil || st == nil {
		t.Fatalf("%s: %s statistics: %v", h.Name, dev, err)
	}
	return st
}

// kernelShare runs f and returns how many packets the endpoint behind
// TAP tapName on h sent (its host-side veth received them) and how many
// of those the fast path punted to the vRouter (read from the TAP).
func kernelShare(t testing.TB, h *lab.Host, tapName string, f func()) (sent, punted uint64) {
	t.Helper()
	veth0, tap0 := linkStats(t, h, "fp"+tapName), linkStats(t, h, tapName)
	f()
	veth1, tap1 := linkStats(t, h, "fp"+tapName), linkStats(t, h, tapName)
	return veth1.RxPackets - veth0.RxPackets, tap1.TxPackets - tap0.TxPackets
}

// TestFastPathOverlay: with --fastpath, ping, TCP with content check and
// UDP pass between endpoints on two vRouters with each encapsulation; for
// MPLSoUDP and VXLAN the kernel carries the bulk (the endpoint's packets
// reach its host-side veth, few of them its TAP, and the Go engine's port
// counters hardly move), for MPLSoGRE every packet is the engine's.
func TestFastPathOverlay(t *testing.T) {
	tn := newTenants(t, "wtfp", lab.FastPath)
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	if info, err := tn.a.Client.Info(ctx, &vrouterv1.InfoRequest{}); err != nil || info.GetFastPath() != "on" {
		t.Fatalf("a's Info: fast_path %q (err %v), want \"on\"", info.GetFastPath(), err)
	}
	echoServer(listenTCP(t, tn.redB, "10.1.0.3:7000"))
	udpEcho(t, tn.redB, "10.1.0.3:7001")
	for _, enc := range []vrouterv1.Encap{vrouterv1.Encap_ENCAP_MPLSOUDP, vrouterv1.Encap_ENCAP_VXLAN, vrouterv1.Encap_ENCAP_MPLSOGRE} {
		t.Run(enc.String(), func(t *testing.T) {
			tn.remote(t, enc)
			mustPing(t, tn.redA, "10.1.0.3")
			if err := udpRoundTrip(tn.redA, "10.1.0.3:7001"); err != nil {
				t.Fatalf("udp: %v", err)
			}
			before, tapBefore := portCounters(counters(t, tn.b), portRed), linkStats(t, tn.b, "wtv1")
			sent, punted := kernelShare(t, tn.a, "wtv1", func() {
				took := transfer(t, tn.redA, "10.1.0.3:7000", 16<<20)
				t.Logf("%s: 16 MiB echoed red a->b->a in %v", enc, took.Round(time.Millisecond))
			})
			after, tapAfter := portCounters(counters(t, tn.b), portRed), linkStats(t, tn.b, "wtv1")
			// What b's engine wrote to the TAP, and the port's counters,
			// which include what the kernel carried.
			engine := tapAfter.RxPackets - tapBefore.RxPackets
			port := after.GetTxPackets() - before.GetTxPackets()
			t.Logf("%s: a's endpoint sent %d packets, %d punted to the engine; b's engine delivered %d to its endpoint, its port counted %d", enc, sent, punted, engine, port)
			if port < sent/2 {
				t.Errorf("b's port counted %d packets into its endpoint for %d sent: the kernel's are not in the port counters", port, sent)
			}
			if sent < 100 {
				t.Fatalf("the endpoint sent %d packets for 16 MiB echoed: the veth is not its path", sent)
			}
			if enc == vrouterv1.Encap_ENCAP_MPLSOGRE {
				if punted*10 < sent*9 {
					t.Errorf("MPLSoGRE: %d of %d packets punted; the fast path does not carry it, all must be", punted, sent)
				}
				return
			}
			// The handshake, the FIN and ARP go to the engine; the rest
			// must not.
			if punted*10 > sent {
				t.Errorf("%d of %d packets punted to the engine: the kernel did not carry the flow", punted, sent)
			}
			if engine*10 > sent {
				t.Errorf("b's engine delivered %d packets of a transfer of %d: the kernel did not decapsulate", engine, sent)
			}
		})
	}
}

// TestFastPathPolicy: networks 100 (p1 on a) and 300 (p2 on b), one rule
// allowing TCP 8000 from 100 to 300, --fastpath on both. The allowed
// flow's first packets go through the engine (it creates the flow), the
// rest through the kernel; a flow the policy denies never gets into the
// fast path: every one of its packets is punted and dropped by the engine.
func TestFastPathPolicy(t *testing.T) {
	l := lab.NewMode(t, "wtfq", lab.FastPath)
	a, b := l.Host(t, "a", "192.0.2.1"), l.Host(t, "b", "192.0.2.2")
	p1, p2 := l.Endpoint(t, "p1"), l.Endpoint(t, "p2")
	a.StartVRouter(t)
	b.StartVRouter(t)
	rule := &vrouterv1.Op{Op: &vrouterv1.Op_PutRule{PutRule: &vrouterv1.Rule{Id: 1, Name: "web", SrcNetwork: 100, DstNetwork: 300,
		Protocol: 6, DstPorts: []*vrouterv1.PortRange{{First: 8000}}}}}
	apply(t, a, putVRF(1, 100, "front"), putPort(tap(1, 1, "p1", p1.Name, "10.2.0.2/24")), portNH(1, 1, 100),
		putRoute(1, "10.2.0.2/32", 1), putLabel(101, 1),
		tunnelNH(2, vrouterv1.Encap_ENCAP_MPLSOUDP, b.Underlay, 201, 300), putRoute(1, "10.3.0.2/32", 2), rule)
	apply(t, b, putVRF(1, 300, "back"), putPort(tap(1, 1, "p2", p2.Name, "10.3.0.2/24")), portNH(1, 1, 300),
		putRoute(1, "10.3.0.2/32", 1), putLabel(201, 1),
		tunnelNH(2, vrouterv1.Encap_ENCAP_MPLSOUDP, a.Underlay, 101, 100), putRoute(1, "10.2.0.2/32", 2), rule)
	echoServer(listenTCP(t, p2, "10.3.0.2:8000"))
	udpEcho(t, p2, "10.3.0.2:5353")

	sent, punted := kernelShare(t, a, "wtv1", func() { transfer(t, p1, "10.3.0.2:8000", 16<<20) })
	t.Logf("allowed flow: %d packets sent, %d punted", sent, punted)
	if punted == 0 {
		t.Error("no packet of the allowed flow went to the engine: who decided it?")
	}
	if punted*10 > sent {
		t.Errorf("%d of %d packets of the allowed flow punted: the kernel did not carry it", punted, sent)
	}
	// A denied flow: UDP 5353, no rule. Each datagram goes to the engine,
	// which drops it; none reaches p2.
	dropsBefore := counters(t, a).GetDrops()["policy"]
	sent, punted = kernelShare(t, a, "wtv1", func() {
		if err := udpRoundTrip(p1, "10.3.0.2:5353"); err == nil {
			t.Error("UDP 5353 got an answer; no rule allows it")
		}
	})
	drops := counters(t, a).GetDrops()["policy"] - dropsBefore
	t.Logf("denied flow: %d packets sent, %d punted, %d policy drops", sent, punted, drops)
	if punted < sent || drops < 5 {
		t.Errorf("denied flow: %d sent, %d punted, %d dropped by policy: every packet must be the engine's", sent, punted, drops)
	}
	// An established flow the kernel carries stops at once when the rule
	// that allowed it goes: the engine re-decides, the kernel forgets it.
	c, err := dialTCP(p1, "10.3.0.2:8000", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<16)
	echo := func() error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(buf); err != nil {
			return err
		}
		_, err := io.ReadFull(c, buf)
		return err
	}
	for range 20 {
		if err := echo(); err != nil {
			t.Fatalf("allowed connection: %v", err)
		}
	}
	del := &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRule{DeleteRule: 1}}
	apply(t, a, del)
	apply(t, b, del)
	if err := echo(); err == nil {
		t.Error("the connection still carries data after its rule was deleted")
	}
}

// TestFastPathVRouterKilled: a vRouter killed with SIGKILL leaves its
// endpoints' veth pairs behind (only the TAPs go with the process); the
// next one takes them over and the endpoint talks again.
func TestFastPathVRouterKilled(t *testing.T) {
	tn := newTenants(t, "wtfk", lab.FastPath)
	tn.remote(t, vrouterv1.Encap_ENCAP_MPLSOUDP)
	mustPing(t, tn.redA, "10.1.0.3")
	tn.a.VRouter.Kill(unix.SIGKILL)
	tn.a.StartVRouter(t)
	tn.local(t, tn.a, tn.redA, tn.bluA, "10.1.0.2")
	tn.remote(t, vrouterv1.Encap_ENCAP_MPLSOUDP)
	mustPing(t, tn.redA, "10.1.0.3")
}
