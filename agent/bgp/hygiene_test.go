package bgp

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
)

// TestOpenUpdateHygiene (issue 15, finding 6): what FRR sees of a speaker
// that restarts (graceful restart) toward a peer that offers VPNv4 only.
// Its OPEN names the configured hostname, not the machine's, and offers
// no Extended Next Hop capability (GoBGP's would name IPv6 VPN and EVPN,
// which FRR logs as unexpected); after the restart no End-of-RIB goes
// out for a family the session never negotiated (FRR: "UPDATE for
// non-enabled AFI/SAFI").
func TestOpenUpdateHygiene(t *testing.T) {
	l := newLab(t, bgpd.FRR, labOpts{nodes: 1, rr: bgpd.Config{Families: []bgpd.Family{bgpd.VPNv4}}})
	addr := l.node(0)
	cfg := l.speakerConfig(addr)
	cfg.Hostname = "weft-rack7-n3"
	cfg.GracefulRestart, cfg.Restarting = true, true
	r := generatedRoute(addr, VPNv4, 0)
	cfg.Routes = []Route{r}
	s := startSpeaker(t, cfg)
	waitUp(t, s, 30*time.Second)
	pollRR(t, 40*time.Second, "the restarted speaker's route at FRR", l.rr.VPNv4, func(es []bgpd.RIBEntry) bool {
		_, ok := findRIB(es, r.RD.String(), r.Prefix)
		return ok
	})
	// The End-of-RIBs follow the routes in the same burst; give FRR a
	// moment to log what it makes of them.
	time.Sleep(2 * time.Second)

	out, err := l.rr.CLI("show bgp neighbors " + addr.String() + " json")
	if err != nil {
		t.Fatal(err)
	}
	var nbrs map[string]struct {
		Hostname     string         `json:"hostname"`
		Capabilities map[string]any `json:"neighborCapabilities"`
	}
	if err := json.Unmarshal([]byte(out), &nbrs); err != nil {
		t.Fatalf("show bgp neighbors json: %v\n%s", err, out)
	}
	n, ok := nbrs[addr.String()]
	if !ok {
		t.Fatalf("FRR does not list %v:\n%s", addr, out)
	}
	if n.Hostname != cfg.Hostname {
		machine, _ := os.Hostname()
		t.Errorf("FRR shows hostname %q, want the configured %q (the machine's is %q)", n.Hostname, cfg.Hostname, machine)
	}
	for k, v := range n.Capabilities {
		if strings.HasPrefix(strings.ToLower(k), "extendednexthop") && strings.Contains(strings.ToLower(fmtAny(v)), "received") {
			t.Errorf("FRR received an Extended Next Hop capability: %s = %v", k, fmtAny(v))
		}
	}
	log := l.rr.LogTail(2000)
	for _, bad := range []string{"non-enabled", "Extended Next-hop capability", "Unexpected afi/safi"} {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, bad) {
				t.Errorf("FRR logged %q: %s", bad, line)
			}
		}
	}
}

func fmtAny(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
