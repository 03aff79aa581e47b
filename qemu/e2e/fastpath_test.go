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

// TestFastPathImageKernel: two nodes booted from the image with
// weft.fastpath on the kernel command line run the vRouter's in-kernel
// fast path on the image's own kernel (Debian's 6.1: no TCX, so tc). The
// vRouter's start-up probe (every helper the programs call, a test run of
// bpf_skb_adjust_room with each flag set they pass) and the load of the
// programs themselves pass that kernel's verifier: `weft ctl status`
// says "on". A flow between the two nodes across networks (leonardo to
// db) is then carried by the kernel: `weft ctl flows` shows the BPF
// counters of that flow non-zero (PATH "kernel N/M").
func TestFastPathImageKernel(t *testing.T) {
	img := imageDir(t)
	testenv.RequireRoot(t)
	checks := []demo.Check{
		{What: "leo-1 -> pg-1 across nodes and networks", Node: "node-1", Endpoint: "leo-1", To: "10.0.100.3", Want: true},
		{What: "red-1 -> red-2, same network across nodes", Node: "node-1", Endpoint: "red-1", To: "10.1.0.12", Want: true},
		{What: "red-2 -> pg-1: red is not joined to db", Node: "node-2", Endpoint: "red-2", To: "10.0.100.3", Want: false},
	}
	var status, flows string
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{Image: img, Binary: weftBinary(t), Nodes: 2, Netns: "wtq-fp", Out: &out, Checks: checks,
		Append: "weft.fastpath",
		AfterChecks: func(ctx context.Context, consoles map[string]string) {
			op := dialOperator(t, consoles["node-1"])
			status = ctlUntil(t, op, "ctl status", `fast path\s+\S`)
			flows = ctlUntil(t, op, "ctl flows", `\(\d+ flows\)`)
		}})
	t.Log("\n" + out.String())
	t.Logf("node-1's ctl status:\n%s", status)
	t.Logf("node-1's ctl flows:\n%s", flows)
	if res == nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Error(err)
	}
	if !regexpMatch(`fast path\s+on\b`, status) {
		t.Errorf("the fast path is not on on the image's kernel (status above)")
	}
	if !regexpMatch(`attach: tc`, status) {
		t.Errorf("the image's kernel (6.1, no TCX) should attach with tc (status above)")
	}
	if !regexpMatch(`pinned in /sys/fs/bpf/weft/vrouter`, status) {
		t.Errorf("the fast path is not pinned on the bpffs PID 1 mounts (status above)")
	}
	if !regexpMatch(`10\.0\.10\.5:\d+\s+10\.0\.100\.3:\d+\s+1\s+true\s+\d+\s+\d+\s+\d+\s+\S+\s+kernel [1-9]\d*/\d+`, flows) {
		t.Errorf("no flow leo-1 -> pg-1 carried by the kernel in node-1's flows (above)")
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
