package server_test

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// TestFlowVRFQuota: `weft vrouter --flow-vrf-quota 2` on a holds one
// allowed flow (two entries) per VRF. p1's first connection to p2:8000 is
// cached and carries data both ways; a second one, while the first is
// open, is allowed out but not cached, so its SYN-ACK finds no reverse
// entry on a and is denied (the safe side: nothing passes unchecked). The
// control API shows the quota and counts the hit; b, with the default
// quota, counts none.
func TestFlowVRFQuota(t *testing.T) { lab.Modes(t, flowVRFQuota) }

func flowVRFQuota(t *testing.T, m lab.Mode) {
	l := lab.NewMode(t, "wtvq", m)
	a, b := l.Host(t, "a", "192.0.2.1"), l.Host(t, "b", "192.0.2.2")
	p1, p2 := l.Endpoint(t, "p1"), l.Endpoint(t, "p2")
	a.StartVRouter(t, "--flow-vrf-quota", "2")
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

	first, err := dialTCP(p1, "10.3.0.2:8000", 10*time.Second)
	if err != nil {
		t.Fatalf("the first connection, within the quota: %v", err)
	}
	defer first.Close()
	if c, err := dialTCP(p1, "10.3.0.2:8000", 2*time.Second); err == nil {
		c.Close()
		t.Error("a second connection beyond a's quota connected: its reply passed without a reverse entry")
	}
	if hits := counters(t, a).GetFlowQuotaHits()[1]; hits == 0 {
		t.Errorf("a: no quota hit counted for VRF 1: %v", counters(t, a))
	}
	if hits := counters(t, b).GetFlowQuotaHits(); len(hits) != 0 {
		t.Errorf("b, default quota: quota hits %v", hits)
	}
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	fl, err := a.Client.Flows(ctx, &vrouterv1.FlowsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var vrf1 *vrouterv1.VrfFlows
	for _, v := range fl.GetVrfs() {
		if v.GetVrf() == 1 {
			vrf1 = v
		}
	}
	if vrf1 == nil || vrf1.GetQuota() != 2 || vrf1.GetEntries() != 2 || vrf1.GetQuotaHits() == 0 {
		t.Errorf("a's flows by VRF: %v, want VRF 1 with 2 entries, quota 2 and quota hits", fl.GetVrfs())
	}
}
