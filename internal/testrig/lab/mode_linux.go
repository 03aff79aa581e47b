package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// Mode is how a lab's vRouters forward: the dataplane tests' matrix runs
// each scenario once per mode, so that the in-kernel fast path has to pass
// every test the Go engine passes.
type Mode string

const (
	// Userspace: endpoints are TAPs, every packet is the Go engine's.
	Userspace Mode = "userspace"
	// FastPath: `weft vrouter --fastpath`; endpoints are veth pairs and
	// established flows are forwarded by the BPF programs.
	FastPath Mode = "fastpath"
)

// Modes runs f as one subtest per mode, named after it (TestX/userspace,
// TestX/fastpath); the subtests run one after the other, so a scenario's
// fixed namespace names do not collide.
func Modes(t *testing.T, f func(t *testing.T, m Mode)) {
	for _, m := range []Mode{Userspace, FastPath} {
		t.Run(string(m), func(t *testing.T) { f(t, m) })
	}
}

// RequireFastPath waits for the vRouter's start line about the fast path:
// on, or off with the reason (a kernel without what it needs), which
// skips the test (fails it under CI).
func (h *Host) RequireFastPath(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.VRouter.Output(), "fast path o") {
		if h.VRouter.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s: no fast path line from the vRouter:\n%s", h.Name, indent(h.VRouter.Output()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := h.VRouter.Output(); !strings.Contains(out, "fast path on") {
		testenv.Unavailable(t, h.Name+": the kernel cannot run the fast path: "+out)
	}
}
