package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
)

// A reload that changes bgp.asn, the router ID or route target
// constraint is refused with "needs a restart": the sessions (here with FRR) keep the running values, and
// `weft ctl config` keeps showing them. Never accepted silently.
func TestReloadRefusesASNAndRouterIDChange(t *testing.T) {
	f := newFleet(t, "wtrs", bgpd.FRR, []string{"a"}, fleetConfig{Endpoints: twoEndpoints})
	a := f.hosts["a"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay)
	orig := renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: twoEndpoints})
	for _, tc := range []struct {
		name, config, want string
	}{
		{"asn", strings.Replace(orig, "asn: 64512", "asn: 65001", 1), "bgp.asn 64512 -> 65001"},
		{"router id", strings.Replace(orig, "asn: 64512", "asn: 64512\n  routerID: 192.0.2.77", 1), "router ID 192.0.2.1 -> 192.0.2.77"},
		{"route target constraint", strings.Replace(orig, "asn: 64512", "asn: 64512\n  routeTargetConstraint: false", 1), "bgp.routeTargetConstraint true -> false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.l.WriteFile(t, "weft.yaml", tc.config)
			err := a.AgentAPI.Reload()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "needs a restart") {
				t.Fatalf("reload: %v; want an error saying %q needs a restart", err, tc.want)
			}
			t.Logf("weft ctl config reload: %v", err)
			st, err := a.AgentAPI.Status()
			if err != nil || !strings.Contains(st.ConfigErr, "needs a restart") || st.RouterID != "192.0.2.1" {
				t.Errorf("status: config error %q, router ID %s (err %v)", st.ConfigErr, st.RouterID, err)
			}
			raw, err := a.AgentAPI.Config()
			if err != nil || !strings.Contains(string(raw), "asn: 64512") || strings.Contains(string(raw), "192.0.2.77") {
				t.Errorf("ctl config shows not the running config (err %v):\n%s", err, raw)
			}
			time.Sleep(time.Second)
			f.rr.WaitEstablished(t, 5*time.Second, a.Underlay)
		})
	}
	f.l.WriteFile(t, "weft.yaml", orig)
	if err := a.AgentAPI.Reload(); err != nil {
		t.Fatalf("reload of the running config: %v", err)
	}
	if st, _ := a.AgentAPI.Status(); st.ConfigErr != "" {
		t.Errorf("config error after a good reload: %q", st.ConfigErr)
	}
}
