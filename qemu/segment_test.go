package qemu

import (
	"testing"
)

func TestFreePort(t *testing.T) {
	for _, n := range []string{"tcp", "udp"} {
		ap, err := FreePort(n)
		if err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
			t.Fatalf("FreePort(%s) = %v, %v", n, ap, err)
		}
	}
	if _, err := FreePort("sctp"); err == nil {
		t.Fatal("FreePort(sctp): no error")
	}
}

func TestSegment(t *testing.T) {
	a, err := NewSegment()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSegment()
	if err != nil {
		t.Fatal(err)
	}
	if a.Group == b.Group {
		t.Fatalf("two segments share %s", a.Group)
	}
	n := a.NIC(nil)
	if err := n.validate(); err != nil {
		t.Fatalf("segment NIC invalid: %v", err)
	}
	if n.Socket.MCast != a.Group.String() || !a.Group.Addr().IsMulticast() {
		t.Fatalf("NIC = %+v", n.Socket)
	}
}
