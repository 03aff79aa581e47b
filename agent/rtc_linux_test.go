package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
)

// rtcEndpoints: a hosts leonardo only; b and c host "other" (route target
// 64512:400, joined to nothing), c also db.
var rtcEndpoints = []epSpec{
	{Name: "leo1", Network: "leonardo", Address: "10.0.10.5/24", Node: "a"},
	{Name: "leo2", Network: "leonardo", Address: "10.0.10.6/24", Node: "b"},
	{Name: "oth2", Network: "other", Address: "10.0.10.7/24", Node: "b"},
	{Name: "pg3", Network: "db", Address: "10.0.100.3/24", Node: "c"},
	{Name: "oth3", Network: "other", Address: "10.0.100.8/24", Node: "c"},
}

// TestRouteTargetConstraintReload: three real agents with route target
// constraint on (the default) and gobgpd as reflector with RTC. Node a
// asks for the route targets of leonardo and web (joined to it by
// policy), so the reflector sends it leonardo's and db's routes (db
// exports 64512:100) and never those of "other" (checked in the
// reflector's Adj-RIB-Out to a). A reload that gives a an endpoint in
// "other" brings b's and c's "other" routes (the time is logged); the
// reload that takes it away stops them. `weft ctl status` shows the
// per-network counts and the last convergence.
func TestRouteTargetConstraintReload(t *testing.T) {
	f := newFleet(t, "wtrtc", bgpd.GoBGPd, []string{"a", "b", "c"}, fleetConfig{Endpoints: rtcEndpoints,
		RRFamilies: []bgpd.Family{bgpd.VPNv4, bgpd.VPNv6, bgpd.EVPN, bgpd.RTC}, AgentArgs: []string{"--metrics", "127.0.0.1:9473"}})
	a := f.hosts["a"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay, f.hosts["b"].Underlay, f.hosts["c"].Underlay)
	waitRoute(t, a, "leonardo", "10.0.10.6/32", "192.0.2.2", 30*time.Second)
	waitRoute(t, a, "leonardo", "10.0.100.3/32", "192.0.2.3", 30*time.Second)

	// rtsOut are the route targets of every path the reflector sends a.
	rtsOut := func() []string {
		var rts []string
		for _, fam := range []bgpd.Family{bgpd.VPNv4, bgpd.EVPN} {
			es, err := f.rr.AdjOut(a.Underlay, fam)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				for _, rt := range e.RouteTargets {
					if !slices.Contains(rts, rt) {
						rts = append(rts, rt)
					}
				}
			}
		}
		slices.Sort(rts)
		return rts
	}
	if got := rtsOut(); slices.Contains(got, "64512:400") || !slices.Contains(got, "64512:100") {
		t.Fatalf("the reflector sends a the route targets %v; want 64512:100 and never 64512:400", got)
	}
	st, err := a.AgentAPI.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.RouteTargets, []string{"64512:100", "64512:300"}) {
		t.Errorf("status: route targets asked %v, want [64512:100 64512:300]", st.RouteTargets)
	}
	leo := network(&st, "leonardo")
	if leo == nil || leo.Received < 2 || leo.Accepted != leo.Received || leo.Installed != 2 {
		t.Errorf("status: leonardo %+v; want 2 remote routes (leo2, pg3) received, accepted and installed", leo)
	}
	if network(&st, "other") != nil {
		t.Errorf("status: a has network other: %+v", st.Networks)
	}
	if c := st.LastConvergence; c == nil || c.Seconds <= 0 || c.Peer != rrAddr {
		t.Errorf("status: last convergence %+v; want one from %s", c, rrAddr)
	} else {
		t.Logf("last full convergence: %s (End-of-RIB after %s)", c.Took, c.EndOfRIB)
	}

	wants := []string{`weft_network_paths_received{network="leonardo"} 2`, `weft_network_paths_accepted{network="leonardo"} 2`,
		`weft_network_remote_routes_installed{network="leonardo"} 2`, `weft_bgp_last_convergence_seconds{peer="192.0.2.254"}`}
	if m := scrape(t, a, "127.0.0.1:9473"); !containsAll(m, wants) {
		t.Errorf("metrics lack one of %q:\n%s", wants, m)
	}

	// a gets an endpoint in "other": the reflector sends its routes.
	orig := renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: rtcEndpoints})
	f.l.Endpoint(t, "oth1")
	withOther := renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: append(slices.Clone(rtcEndpoints),
		epSpec{Name: "oth1", Network: "other", Address: "10.0.10.9/24", Node: "a"})})
	f.l.WriteFile(t, "weft.yaml", withOther)
	t0 := time.Now()
	if err := a.AgentAPI.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitRoute(t, a, "other", "10.0.10.7/32", "192.0.2.2", 20*time.Second)
	waitRoute(t, a, "other", "10.0.100.8/32", "192.0.2.3", 20*time.Second)
	t.Logf("a network added on reload: its remote routes installed %v after the reload", time.Since(t0).Round(time.Millisecond))
	if got := rtsOut(); !slices.Contains(got, "64512:400") {
		t.Errorf("after the reload, the reflector sends a %v; want 64512:400 too", got)
	}
	waitFor(t, "status: other 2/2/2", 10*time.Second, func() bool {
		st, err := a.AgentAPI.Status()
		o := network(&st, "other")
		return err == nil && o != nil && o.Received == 2 && o.Accepted == 2 && o.Installed == 2
	})

	// And away again: the reflector stops sending them.
	f.l.WriteFile(t, "weft.yaml", orig)
	t0 = time.Now()
	if err := a.AgentAPI.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitFor(t, "the reflector no longer sends a 64512:400", 20*time.Second, func() bool { return !slices.Contains(rtsOut(), "64512:400") })
	t.Logf("a network removed on reload: the reflector withdrew its routes from a within %v", time.Since(t0).Round(time.Millisecond))
	if out, err := f.rr.CLI("neighbor", a.Underlay.String()); err != nil || !strings.Contains(out, "rtc") {
		t.Errorf("gobgp neighbor %v does not show rtc negotiated (err %v):\n%s", a.Underlay, err, out)
	}
}

func network(st *agentapi.Status, name string) *agentapi.NetworkRoutes {
	for i := range st.Networks {
		if st.Networks[i].Network == name {
			return &st.Networks[i]
		}
	}
	return nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
