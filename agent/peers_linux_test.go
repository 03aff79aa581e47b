package agent_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
)

// `weft ctl peers` against FRR: only the families the session negotiated
// (FRR has no IPv4/IPv6 unicast here), sent counts equal to what FRR
// received from the node (no End-of-RIB counted as a route), and the
// flap count kept when a password change re-creates the session.
func TestCtlPeersAgainstFRR(t *testing.T) {
	f := newFleet(t, "wtcp", bgpd.FRR, []string{"a"}, fleetConfig{Endpoints: twoEndpoints})
	a := f.hosts["a"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay)
	var p agentapi.Peer
	waitFor(t, "FRR to hold a's VPNv4 and EVPN routes", 10*time.Second, func() bool {
		v4, _ := f.rr.VPNv4()
		evpn, _ := f.rr.EVPN()
		return countFrom(v4, a) == 1 && countFrom(evpn, a) == 1
	})
	p = onePeer(t, a)
	fams := map[string][3]int{}
	for _, s := range p.Families {
		name, counts, _ := strings.Cut(s, " ")
		var c [3]int
		for i, n := range strings.Split(counts, "/") {
			c[i], _ = strconv.Atoi(n)
		}
		fams[name] = c
	}
	t.Logf("a's peer: %v", p.Families)
	for _, name := range []string{"ipv4-unicast", "ipv6-unicast"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s listed, but FRR never negotiated it: %v", name, p.Families)
		}
	}
	for name, want := range map[string]int{"l3vpn-ipv4-unicast": 1, "l3vpn-ipv6-unicast": 0, "l2vpn-evpn": 1} {
		c, ok := fams[name]
		if !ok {
			t.Errorf("%s missing: %v", name, p.Families)
			continue
		}
		if c[2] != want {
			t.Errorf("%s: sent %d, FRR received %d from a", name, c[2], want)
		}
	}

	// A flap: FRR resets the session.
	if out, err := f.rr.CLI("clear bgp 192.0.2.1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, "a to count the flap and come back", 30*time.Second, func() bool {
		p := onePeer(t, a)
		return p.Flaps >= 1 && p.State == "established"
	})
	before := onePeer(t, a).Flaps
	// A password change on both sides re-creates a's neighbour.
	if out, err := f.rr.CLI("configure terminal", "router bgp 64512", "neighbor 192.0.2.1 password s3cret"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f.l.WriteFile(t, "weft.yaml", renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: twoEndpoints, Password: "s3cret"}))
	if err := a.AgentAPI.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session with the new password", 30*time.Second, func() bool { return onePeer(t, a).State == "established" })
	if after := onePeer(t, a).Flaps; after < before {
		t.Errorf("flaps %d after the password change, %d before: the count was reset", after, before)
	}
	t.Logf("flaps: %d before the password change, %d after", before, onePeer(t, a).Flaps)
}

func onePeer(t *testing.T, h *lab.Host) agentapi.Peer {
	t.Helper()
	ps, err := h.AgentAPI.Peers()
	if err != nil || len(ps) != 1 {
		t.Fatalf("%s peers: %v %v", h.Name, ps, err)
	}
	return ps[0]
}

func countFrom(rib []bgpd.RIBEntry, h *lab.Host) int {
	n := 0
	for _, e := range rib {
		if e.Peer == h.Underlay {
			n++
		}
	}
	return n
}
