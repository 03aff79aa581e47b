package underlay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// TestMissingNICPrintedOnce: PID 1 retries an Apply until a link is
// usable; a link whose MAC matches nothing prints its waiting/failed pair
// on the first Apply only, and is still found when its NIC shows up.
func TestMissingNICPrintedOnce(t *testing.T) {
	testenv.RequireRoot(t)
	cliNS, hc := newNetns(t, "nw")
	peerNS, hp := newNetns(t, "nwp")
	const macGhost = "02:00:5e:00:01:99"
	m, rec, console := newTestManager(t, cliNS, withNICWait(time.Second))
	u := config.Underlay{Source: "test", Links: []config.Link{
		{ID: "ghost", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(macGhost)}, Addresses: prefixes("10.92.0.2/24")},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if err := m.Apply(ctx, u); err == nil || !strings.Contains(err.Error(), "ghost: no NIC with MAC "+macGhost+" after 1s") {
			t.Fatalf("Apply %d: %v, want no usable link naming ghost", i, err)
		}
	}
	lines := func(verdict string) int {
		n := 0
		for _, l := range strings.Split(console.String(), "\n") {
			if strings.Contains(l, "step=link verdict="+verdict) && strings.Contains(l, "link=ghost") {
				n++
			}
		}
		return n
	}
	if w, f := lines("waiting"), lines("failed"); w != 1 || f != 1 {
		t.Errorf("ghost printed %d waiting and %d failed lines over 3 Applies, want 1 and 1:\n%s", w, f, console.String())
	}
	checkVerdict(t, rec, "ghost", steps.Failed, "no NIC with MAC "+macGhost+" after 1s")

	// The NIC comes: the next Apply finds it at once.
	veth(t, hc, "g0", macGhost, peerNS, hp, "gp0")
	if err := m.Apply(ctx, u); err != nil {
		t.Fatalf("Apply with the NIC present: %v", err)
	}
	checkVerdict(t, rec, "ghost", steps.OK, "g0 up")
}
