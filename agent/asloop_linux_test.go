package agent_test

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
)

// A path that comes back with the local AS in its AS_PATH withdraws the
// path the peer sent before: here FRR originates 10.0.10.77/32 into
// leonardo, then an outbound route-map prepends the agent's own AS 64512
// (what hosts sharing an AS see behind an eBGP route server). The agent
// must drop the route, not keep it with its old label.
func TestASLoopedPathWithdrawsTheOld(t *testing.T) {
	f := newFleet(t, "wtal", bgpd.FRR, []string{"a"}, fleetConfig{Endpoints: twoEndpoints})
	a := f.hosts["a"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay)
	vty := func(cmds ...string) {
		t.Helper()
		if out, err := f.rr.CLI(append([]string{"configure terminal"}, cmds...)...); err != nil {
			t.Fatalf("vtysh: %v\n%s", err, out)
		}
	}
	vty("route-map RT permit 10", "set extcommunity rt 64512:100", "exit",
		"route-map OUT permit 10", "exit",
		"router bgp 64512", "address-family ipv4 vpn",
		"neighbor C route-map OUT out",
		"network 10.0.10.77/32 rd 192.0.2.254:9 label 100 route-map RT")
	waitRoute(t, a, "leonardo", "10.0.10.77/32", "label 100", 20*time.Second)

	vty("route-map OUT permit 10", "set as-path prepend 64512")
	if out, err := f.rr.CLI("clear bgp ipv4 vpn * soft out"); err != nil {
		t.Fatalf("vtysh: %v\n%s", err, out)
	}
	d := waitFor(t, "a to drop the route that came back AS-looped", 10*time.Second, func() bool {
		return !hasRoute(t, a, "leonardo", "10.0.10.77/32")
	})
	t.Logf("AS-looped path withdrawn %v after the route-map change (bound 10s)", d.Round(time.Millisecond))
	peers, err := a.AgentAPI.Peers()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a's peers: %+v", peers)
}
