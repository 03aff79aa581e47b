package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/qemu/demo"
)

// TestDemo is `make demo` with two nodes: the nodes boot from the
// controller (DHCP, metadata), peer BGP with its reflector, and the live
// checks through the overlay come out as they should: same-tenant pings
// across nodes pass, cross-tenant ones fail, leonardo reaches db.
func TestDemo(t *testing.T) {
	img := imageDir(t)
	testenv.RequireRoot(t)
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{Image: img, Binary: weftBinary(t), Nodes: 2, Netns: "wtq-demo", Out: &out})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Checks) < 6 {
		t.Fatalf("%d checks ran, want 6", len(res.Checks))
	}
	for _, c := range res.Checks {
		if !c.Passed() {
			t.Errorf("check %q: want reach=%v, got %v: %s", c.What, c.Want, c.Got, c.Detail)
		}
	}
	for _, n := range res.Nodes {
		figures(t, "demo-"+n.Name, "s-to-ready", n.Ready.Seconds())
	}
	figures(t, "demo", "s-to-first-overlay-packet", res.FirstOverlay.Seconds(), "s-total", res.Took.Seconds())
}
