package nettest

import (
	"strings"
	"testing"
)

func TestVethPing(t *testing.T) {
	a := New(t, "wtn-a")
	b := New(t, "wtn-b")
	Veth(t, a, "va", "192.0.2.1/24", b, "vb", "192.0.2.2/24")
	out := a.Run(t, "ping", "-c", "1", "-W", "2", "192.0.2.2")
	if !strings.Contains(out, "1 received") {
		t.Fatalf("ping: %s", out)
	}
}
