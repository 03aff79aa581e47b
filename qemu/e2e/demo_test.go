package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/qemu/demo"
)

// demoChecks is what TestDemo expects of the demo's fleet with two nodes,
// stated here rather than taken from the demo: node-1 has red-1, blue-1
// (10.1.0.11 both) and leo-1 (10.0.10.5); node-2 has red-2, blue-2
// (10.1.0.12 both), blue-3 (10.1.0.13) and pg-1 (10.0.100.3, network db,
// joined to leonardo by a shared route target). Every node probes at
// least once where it must reach; every "blocked" probe has a control
// probe from the same endpoint that must reach.
var demoChecks = []demo.Check{
	{What: "red-1 -> red-2, same tenant across nodes", Node: "node-1", Endpoint: "red-1", To: "10.1.0.12", Want: true},
	{What: "blue-1 -> blue-2, same addresses as red", Node: "node-1", Endpoint: "blue-1", To: "10.1.0.12", Want: true},
	{What: "blue-1 -> blue-3", Node: "node-1", Endpoint: "blue-1", To: "10.1.0.13", Want: true},
	{What: "leo-1 -> pg-1, leonardo reaches db", Node: "node-1", Endpoint: "leo-1", To: "10.0.100.3", Want: true},
	{What: "red-1 -> 10.1.0.13, only blue has it", Node: "node-1", Endpoint: "red-1", To: "10.1.0.13", Want: false},
	{What: "red-2 -> red-1, back across nodes", Node: "node-2", Endpoint: "red-2", To: "10.1.0.11", Want: true},
	{What: "pg-1 -> leo-1, db reaches leonardo", Node: "node-2", Endpoint: "pg-1", To: "10.0.10.5", Want: true},
	{What: "red-2 -> pg-1, red is not joined to db", Node: "node-2", Endpoint: "red-2", To: "10.0.100.3", Want: false},
	{What: "blue-2 -> leo-1, blue is not joined to leonardo", Node: "node-2", Endpoint: "blue-2", To: "10.0.10.5", Want: false},
	{What: "blue-2 -> blue-1, control for blue-2", Node: "node-2", Endpoint: "blue-2", To: "10.1.0.11", Want: true},
}

// TestDemo is `make demo` with two nodes: the nodes boot from the
// controller (DHCP, metadata), peer BGP with its reflector, and the live
// checks through the overlay come out as demoChecks says. A reach is every
// echo answered; a block is every echo lost — the probe ran and timed
// out, not an error (a wrong node, an unknown endpoint, no route in the
// endpoint) — from an endpoint whose control probe reached.
func TestDemo(t *testing.T) {
	img := imageDir(t)
	testenv.RequireRoot(t)
	reaches := map[string]bool{} // node or node/endpoint with a reach check
	for _, c := range demoChecks {
		if c.Want {
			reaches[c.Node], reaches[c.Node+"/"+c.Endpoint] = true, true
		}
	}
	for _, c := range demoChecks {
		if !reaches[c.Node] || !reaches[c.Node+"/"+c.Endpoint] {
			t.Fatalf("demoChecks: %s/%s has no reach check to control %q", c.Node, c.Endpoint, c.What)
		}
	}

	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{Image: img, Binary: weftBinary(t), Nodes: 2, Netns: "wtq-demo", Out: &out, Checks: demoChecks})
	t.Log("\n" + out.String())
	if res == nil {
		t.Fatal(err)
	}
	if len(res.Checks) != len(demoChecks) {
		t.Fatalf("%d checks ran, want %d (%v)", len(res.Checks), len(demoChecks), err)
	}
	reached := map[string]bool{}
	for i, want := range demoChecks {
		got := res.Checks[i]
		if got.Node != want.Node || got.Endpoint != want.Endpoint || got.To != want.To {
			t.Fatalf("check %d ran from %s/%s to %s, want %s/%s to %s", i, got.Node, got.Endpoint, got.To, want.Node, want.Endpoint, want.To)
		}
		replies := regexp.MustCompile(`^(\d+)/(\d+) echo replies from ` + regexp.QuoteMeta(want.To) + `(,|$)`).FindStringSubmatch(got.Detail)
		switch {
		case want.Want && (replies == nil || replies[1] != replies[2] || replies[1] == "0"):
			t.Errorf("%s (%s/%s -> %s): want every echo answered, got %q", want.What, want.Node, want.Endpoint, want.To, got.Detail)
		case want.Want:
			reached[want.Node+"/"+want.Endpoint] = true
		case replies == nil || replies[1] != "0" || replies[3] != "":
			t.Errorf("%s (%s/%s -> %s): want blocked, every echo timing out, got %q", want.What, want.Node, want.Endpoint, want.To, got.Detail)
		}
	}
	for _, want := range demoChecks {
		if !want.Want && !reached[want.Node+"/"+want.Endpoint] {
			t.Errorf("%s: blocked, but the control probe from %s/%s did not reach, so the block proves nothing", want.What, want.Node, want.Endpoint)
		}
	}
	if err != nil {
		t.Error(err)
	}
	for _, n := range res.Nodes {
		figures(t, "demo-"+n.Name, "s-to-ready", n.Ready.Seconds())
	}
	figures(t, "demo", "s-to-first-overlay-packet", res.FirstOverlay.Seconds(), "s-total", res.Took.Seconds())
}
