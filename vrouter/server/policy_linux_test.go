package server_test

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// TestPolicyBetweenNetworks: networks 100 (p1 on a) and 300 (p2 on b) with
// one rule allowing TCP 8000 from 100 to 300. Port 8000 connects and
// carries data both ways; port 22, ICMP and connections started from the
// other side do not pass.
func TestPolicyBetweenNetworks(t *testing.T) { lab.Modes(t, policyBetweenNetworks) }

func policyBetweenNetworks(t *testing.T, m lab.Mode) {
	l := lab.NewMode(t, "wtvp", m)
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
	echoServer(listenTCP(t, p2, "10.3.0.2:22"))
	echoServer(listenTCP(t, p1, "10.2.0.2:9000"))

	transfer(t, p1, "10.3.0.2:8000", 1<<20) // allowed, replies included
	if c, err := dialTCP(p1, "10.3.0.2:22", 2*time.Second); err == nil {
		c.Close()
		t.Error("TCP 22 from front to back connected; only 8000 is allowed")
	}
	mustNotPing(t, p1, "10.3.0.2")
	if c, err := dialTCP(p2, "10.2.0.2:9000", 2*time.Second); err == nil {
		c.Close()
		t.Error("back connected to front; the rule allows front to back only")
	}
	for _, h := range []*lab.Host{a, b} {
		c := counters(t, h)
		if c.GetRuleHits()[1] == 0 {
			t.Errorf("%s: rule 1 never counted a flow: %v", h.Name, c.GetRuleHits())
		}
		if c.GetPolicyDenied() == 0 && c.GetDrops()["policy"] == 0 {
			t.Errorf("%s: nothing denied by policy: %v", h.Name, c)
		}
	}
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	fl, err := a.Client.Flows(ctx, &vrouterv1.FlowsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for _, f := range fl.GetFlows() {
		if f.GetAllowed() && f.GetRule() == 1 {
			allowed++
		}
	}
	if allowed < 2 {
		t.Errorf("a's flow table: %d flows allowed by rule 1, want the forward and its reverse: %v", allowed, fl.GetFlows())
	}
}
