package agent_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/vrouter/packet"
)

// An eBGP fleet (issue 15, findings 5, 9, 10): two hosts, a in AS 65001
// and b in AS 65002, from one fleet file (nodes: overrides, route targets
// in FRR's RT: form), behind an FRR route server in AS 65000.
//
//   - readme: FRR configured exactly as the README's "BGP peers" section
//     says; MPLSoUDP traffic flows, and with VXLAN only the two nodes
//     advertise different router MACs (read at FRR) and traffic flows.
//   - default next hop: the README's FRR without `attribute-unchanged
//     next-hop` (FRR rewrites the next hop to itself): VPN routes still
//     reach the right node through the Tunnel Egress Endpoint; EVPN
//     routes too (FRR keeps their next hop); and without the attribute
//     (bgp.tunnelAttribute: none) the paths are counted, logged once and
//     shown as next hops that are no tunnel endpoint.
func TestEBGPFleet(t *testing.T) {
	conf := readmeFRR(t)
	defaultNH := strings.ReplaceAll(conf, "  neighbor WEFT attribute-unchanged next-hop\n", "")
	if defaultNH == conf {
		t.Fatal("the README's FRR configuration has no attribute-unchanged next-hop line")
	}
	t.Run("readme/mplsoudp", func(t *testing.T) {
		f := newEBGPFleet(t, "wteru", conf, "[mplsoudp]", "first")
		waitRoute(t, f.hosts["a"], "web", "10.0.10.6/32", " 192.0.2.2 ", 30*time.Second)
		waitRoute(t, f.hosts["b"], "web", "10.0.10.5/32", " 192.0.2.1 ", 30*time.Second)
		mustPing(t, f.eps["w1"], "10.0.10.6")
		transfer(t, f.eps["w1"], "10.0.10.6:7000", 1<<20)
	})
	t.Run("readme/vxlan", func(t *testing.T) {
		f := newEBGPFleet(t, "wterv", conf, "[vxlan]", "first")
		a, b := f.hosts["a"], f.hosts["b"]
		waitRoute(t, a, "web", "10.0.10.6/32", " 192.0.2.2 ", 30*time.Second)
		waitRoute(t, b, "web", "10.0.10.5/32", " 192.0.2.1 ", 30*time.Second)
		var rib []bgpd.RIBEntry
		waitFor(t, "two EVPN routes at FRR", 20*time.Second, func() bool {
			var err error
			rib, err = f.rr.EVPN()
			return err == nil && len(rib) >= 2
		})
		macs := map[string]string{}
		for _, e := range rib {
			macs[e.Prefix.String()] = e.RouterMAC
		}
		ma, mb := macs["10.0.10.5/32"], macs["10.0.10.6/32"]
		if want := packet.RouterMACFor(a.Underlay).String(); ma != want {
			t.Errorf("a's router MAC at FRR %q, want %s (derived from its address)", ma, want)
		}
		if ma == "" || ma == mb {
			t.Errorf("router MACs at FRR: a %q, b %q: want one per node", ma, mb)
		}
		before := tunnelTx(t, a, "vxlan")
		mustPing(t, f.eps["w1"], "10.0.10.6")
		transfer(t, f.eps["w1"], "10.0.10.6:7000", 1<<20)
		if tunnelTx(t, a, "vxlan") == before {
			t.Error("traffic flowed but not over VXLAN")
		}
	})
	t.Run("default-next-hop/mplsoudp", func(t *testing.T) {
		f := newEBGPFleet(t, "wtedu", defaultNH, "[mplsoudp]", "first")
		a := f.hosts["a"]
		// The egress endpoint, not FRR's next hop 192.0.2.254.
		waitRoute(t, a, "web", "10.0.10.6/32", " 192.0.2.2 ", 30*time.Second)
		waitRoute(t, f.hosts["b"], "web", "10.0.10.5/32", " 192.0.2.1 ", 30*time.Second)
		mustPing(t, f.eps["w1"], "10.0.10.6")
		transfer(t, f.eps["w1"], "10.0.10.6:7000", 1<<20)
		if st, err := a.AgentAPI.Status(); err != nil || len(st.NextHopWarnings) != 0 {
			t.Errorf("status: %+v, %v: want no next hop warnings", st.NextHopWarnings, err)
		}
	})
	t.Run("default-next-hop/vxlan", func(t *testing.T) {
		f := newEBGPFleet(t, "wtedv", defaultNH, "[vxlan]", "first")
		waitRoute(t, f.hosts["a"], "web", "10.0.10.6/32", " 192.0.2.2 ", 30*time.Second)
		waitRoute(t, f.hosts["b"], "web", "10.0.10.5/32", " 192.0.2.1 ", 30*time.Second)
		mustPing(t, f.eps["w1"], "10.0.10.6")
	})
	t.Run("default-next-hop/no-egress-endpoint", func(t *testing.T) {
		f := newEBGPFleet(t, "wtedn", defaultNH, "[mplsoudp]", "none")
		a := f.hosts["a"]
		waitFor(t, "a next hop warning for FRR at a", 30*time.Second, func() bool {
			st, err := a.AgentAPI.Status()
			return err == nil && len(st.NextHopWarnings) == 1 && st.NextHopWarnings[0].Peer == rrAddr && st.NextHopWarnings[0].Paths >= 1
		})
		if out := a.Agent.Output(); strings.Count(out, "not a tunnel endpoint") != 1 {
			t.Errorf("want one warning in a's log:\n%s", out)
		}
		out, err := a.NS.Try(10*time.Second, lab.Binary(t), "ctl", "status", "--agent", a.AgentSocket)
		if err != nil || !strings.Contains(out, "next hop") || !strings.Contains(out, rrAddr) {
			t.Errorf("weft ctl status does not show the warning (%v):\n%s", err, out)
		}
	})
}

// readmeFRR is the FRR configuration of the README's "BGP peers" section:
// the first fenced block after "**FRR**".
func readmeFRR(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## BGP peers")
	if i < 0 {
		t.Fatal("README.md has no BGP peers section")
	}
	s = s[i:]
	i = strings.Index(s, "**FRR**")
	if i < 0 {
		t.Fatal("README.md's BGP peers section has no FRR part")
	}
	s = s[i:]
	start := strings.Index(s, "```\n")
	if start < 0 {
		t.Fatal("no FRR configuration block in the README")
	}
	s = s[start+4:]
	end := strings.Index(s, "```")
	return s[:end]
}

const ebgpConfig = `
bgp:
  asn: 65001
  connectRetry: 1
  holdTime: 9
  controllers: [{address: ` + rrAddr + `, asn: 65000}]
  tunnelAttribute: %[3]s
nodes:
  - {hostname: a, bgp: {asn: 65001}}
  - {hostname: b, bgp: {asn: 65002}}
overlay: {encapsulation: %[1]s}
networks:
  - {name: web, vni: 100, routeTargets: {import: ["RT:65000:100"], export: ["RT:65000:100"]}, subnets: ["10.0.10.0/24"]}
endpoints:
  - {name: w1, network: web, address: 10.0.10.5/24, node: a, netns: %[2]s-w1}
  - {name: w2, network: web, address: 10.0.10.6/24, node: b, netns: %[2]s-w2}
`

// newEBGPFleet starts FRR with conf (its router ID and addresses are the
// README's, which the lab uses) and hosts a and b from one fleet file
// (bgp.tunnelAttribute tunnelAttr).
func newEBGPFleet(t *testing.T, prefix, conf, encaps, tunnelAttr string) *fleet {
	t.Helper()
	f := &fleet{l: lab.New(t, prefix), hosts: map[string]*lab.Host{}, eps: map[string]*nettest.NS{}}
	rrHost := f.l.Host(t, "rr", rrAddr)
	f.rr = bgpd.Start(t, rrHost.NS, bgpd.Config{Kind: bgpd.FRR, ASN: 65000, RouterID: netip.MustParseAddr(rrAddr),
		Listen: netip.MustParseAddr(rrAddr), FRRConfig: conf,
		Clients: []bgpd.Client{{Address: netip.MustParseAddr("192.0.2.1")}, {Address: netip.MustParseAddr("192.0.2.2")}}})
	for _, e := range []string{"w1", "w2"} {
		f.eps[e] = f.l.Endpoint(t, e)
	}
	f.cfg = f.l.WriteFile(t, "weft.yaml", fmt.Sprintf(ebgpConfig, encaps, prefix, tunnelAttr))
	for i, n := range []string{"a", "b"} {
		h := f.l.Host(t, n, fmt.Sprintf("192.0.2.%d", i+1))
		h.StartVRouter(t)
		h.StartAgent(t, f.cfg)
		f.hosts[n] = h
	}
	f.rr.WaitEstablished(t, 30*time.Second, f.hosts["a"].Underlay, f.hosts["b"].Underlay)
	echo(t, f.eps["w2"], "10.0.10.6:7000")
	return f
}
