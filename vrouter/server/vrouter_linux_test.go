package server_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// tenants builds the two-tenant topology of the vRouter's bar: hosts a and
// b on one fabric, each with a red and a blue endpoint, and the SAME
// addresses in both tenants (10.1.0.2 on a, 10.1.0.3 on b).
type tenants struct {
	l          *lab.Lab
	a, b       *lab.Host
	redA, redB *nettest.NS
	bluA, bluB *nettest.NS
}

const (
	vrfRed, vrfBlue = 1, 2
	netRed, netBlue = 100, 200 // network IDs (the VNIs)
	portRed         = 1
	portBlue        = 2
	labelRed        = 101 // both hosts use the same labels for clarity
	labelBlue       = 102
)

// newTenants starts the topology's vRouters in mode m, with more flags.
func newTenants(t testing.TB, prefix string, m lab.Mode, vrouterArgs ...string) *tenants {
	tn := &tenants{l: lab.NewMode(t, prefix, m)}
	tn.a = tn.l.Host(t, "a", "192.0.2.1")
	tn.b = tn.l.Host(t, "b", "192.0.2.2")
	tn.redA, tn.redB = tn.l.Endpoint(t, "ra"), tn.l.Endpoint(t, "rb")
	tn.bluA, tn.bluB = tn.l.Endpoint(t, "ba"), tn.l.Endpoint(t, "bb")
	tn.a.StartVRouter(t, vrouterArgs...)
	tn.b.StartVRouter(t, vrouterArgs...)
	tn.local(t, tn.a, tn.redA, tn.bluA, "10.1.0.2")
	tn.local(t, tn.b, tn.redB, tn.bluB, "10.1.0.3")
	return tn
}

// local creates a host's two endpoints, their port next hops, labels and
// VNIs: what stays whatever the encapsulation.
func (tn *tenants) local(t testing.TB, h *lab.Host, red, blue *nettest.NS, addr string) {
	apply(t, h,
		putVRF(vrfRed, netRed, "red"), putVRF(vrfBlue, netBlue, "blue"),
		putPort(tap(portRed, vrfRed, "red-"+h.Name, red.Name, addr+"/24")),
		putPort(tap(portBlue, vrfBlue, "blue-"+h.Name, blue.Name, addr+"/24")),
		portNH(1, portRed, netRed), portNH(2, portBlue, netBlue),
		putRoute(vrfRed, addr+"/32", 1), putRoute(vrfBlue, addr+"/32", 2),
		putLabel(labelRed, 1), putLabel(labelBlue, 2),
		putVNI(netRed, vrfRed), putVNI(netBlue, vrfBlue),
	)
}

// remote points each tenant's route to the other host's endpoint through
// encapsulation enc (replacing what an earlier encapsulation set).
func (tn *tenants) remote(t testing.TB, enc vrouterv1.Encap) {
	for _, x := range []struct {
		h      *lab.Host
		peer   netip.Addr
		remote string
	}{{tn.a, tn.b.Underlay, "10.1.0.3/32"}, {tn.b, tn.a.Underlay, "10.1.0.2/32"}} {
		apply(t, x.h,
			tunnelNH(3, enc, x.peer, keyFor(enc, labelRed, netRed), netRed),
			tunnelNH(4, enc, x.peer, keyFor(enc, labelBlue, netBlue), netBlue),
			putRoute(vrfRed, x.remote, 3), putRoute(vrfBlue, x.remote, 4),
		)
	}
}

// TestTwoTenantsEachEncapsulation is the vRouter's first bar: with each
// encapsulation in turn, ping, TCP with content check and UDP pass
// between same-tenant endpoints on two hosts, and nothing crosses between
// the tenants, though they use the same addresses (counters and capture).
func TestTwoTenantsEachEncapsulation(t *testing.T) { lab.Modes(t, twoTenantsEachEncapsulation) }

func twoTenantsEachEncapsulation(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtv2", m)
	for _, ns := range []*nettest.NS{tn.redB, tn.bluB} {
		echoServer(listenTCP(t, ns, "10.1.0.3:7000"))
		udpEcho(t, ns, "10.1.0.3:7001")
	}
	for _, enc := range []vrouterv1.Encap{vrouterv1.Encap_ENCAP_MPLSOUDP, vrouterv1.Encap_ENCAP_MPLSOGRE, vrouterv1.Encap_ENCAP_VXLAN} {
		t.Run(enc.String(), func(t *testing.T) {
			tn.remote(t, enc)
			before := counters(t, tn.b)
			capBlue := startCapture(t, tn.bluB, "eth0", netip.MustParseAddr("10.1.0.2"))

			// Red talks to red, every way.
			mustPing(t, tn.redA, "10.1.0.3")
			took := transfer(t, tn.redA, "10.1.0.3:7000", 4<<20)
			t.Logf("%s: 4 MiB echoed red a->b->a in %v", enc, took.Round(time.Millisecond))
			if err := udpRoundTrip(tn.redA, "10.1.0.3:7001"); err != nil {
				t.Fatalf("udp red: %v", err)
			}
			after := counters(t, tn.b)
			if n := blueTx(after) - blueTx(before); n != 0 {
				t.Errorf("b's blue port sent %d frames to its endpoint while only red talked", n)
			}
			if n := capBlue.Stop(); n != 0 {
				t.Errorf("blue endpoint on b captured %d frames from 10.1.0.2 during red traffic", n)
			}

			// And the other way round: blue alone, red hears nothing.
			capRed := startCapture(t, tn.redB, "eth0", netip.MustParseAddr("10.1.0.2"))
			mustPing(t, tn.bluA, "10.1.0.3")
			transfer(t, tn.bluA, "10.1.0.3:7000", 1<<20)
			if n := capRed.Stop(); n != 0 {
				t.Errorf("red endpoint on b captured %d frames from 10.1.0.2 during blue traffic", n)
			}
			c := counters(t, tn.a)
			if rx := c.GetTunnelRx()[encName(enc)]; rx == 0 {
				t.Errorf("a received nothing over %s: tunnel_rx %v", enc, c.GetTunnelRx())
			}
		})
	}
}

func blueTx(c *vrouterv1.CountersReply) uint64 { return portCounters(c, portBlue).GetTxPackets() }

func encName(e vrouterv1.Encap) string {
	switch e {
	case vrouterv1.Encap_ENCAP_MPLSOUDP:
		return "mplsoudp"
	case vrouterv1.Encap_ENCAP_MPLSOGRE:
		return "mplsogre"
	case vrouterv1.Encap_ENCAP_VXLAN:
		return "vxlan"
	}
	return fmt.Sprint(e)
}
