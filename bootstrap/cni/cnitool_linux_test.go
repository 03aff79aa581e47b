package cni_test

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// TestCNITool: the reference tool (cnitool, built from the module proxy
// at the pinned CNI version by `make cnitool`) runs ADD → CHECK → DEL →
// DEL against the installed plugin and conflist, as an operator would by
// hand; the ADD's stdout parses as a 1.1.0 result, and a CHECK after DEL
// fails with the plugin's spec error.
func TestCNITool(t *testing.T) {
	tool := testenv.Env(t, "WEFT_CNITOOL", "make cnitool builds it; make test sets it")
	r := newRig(t, "wcnt")
	r.h.StartVRouter(t)
	r.startAgent(t, false)
	ns := r.l.Endpoint(t, "p1")
	run := func(cmd string) (string, error) {
		c := exec.Command(tool, cmd, "weft", ns.Path())
		c.Env = append(os.Environ(), "NETCONFPATH="+r.conf, "CNI_PATH="+r.bin, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1")
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		return out.String() + errb.String(), err
	}
	out, err := run("add")
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s\nagent:\n%s", err, out, r.h.Agent.Output())
	}
	res, err := types100.NewResult([]byte(out))
	if err != nil {
		t.Fatalf("cnitool add printed %q: not a 1.1.0 result: %v", out, err)
	}
	r100, _ := types100.GetResult(res)
	a := addrOf(r100, false)
	if r100.CNIVersion != "1.1.0" || !netip.MustParsePrefix("10.0.10.0/24").Contains(a) || len(r100.Interfaces) != 1 {
		t.Fatalf("cnitool add: %+v", r100)
	}
	if got := ns.Run(t, "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(got, a.String()+"/24") {
		t.Fatalf("eth0 in the pod: %s, want %v", got, a)
	}
	if out, err := run("check"); err != nil {
		t.Fatalf("cnitool check: %v\n%s", err, out)
	}
	for _, n := range []string{"first", "second"} {
		if out, err := run("del"); err != nil {
			t.Fatalf("cnitool del (%s): %v\n%s", n, err, out)
		}
	}
	if atts, err := r.h.AgentAPI.Attachments(); err != nil || len(atts) != 0 {
		t.Fatalf("after cnitool del: %+v %v", atts, err)
	}
	// CHECK of what was deleted: the plugin's error, through the tool
	// (libcni prints the plugin's msg).
	if out, err := run("check"); err == nil || !strings.Contains(out, "not attached") {
		t.Fatalf("cnitool check after del: %v\n%s\nwant the plugin's error naming the missing attachment", err, out)
	}
}
