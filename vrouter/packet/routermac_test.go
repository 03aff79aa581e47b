package packet

import (
	"net/netip"
	"testing"
)

// TestRouterMACFor: one router MAC per node (issue 15, finding 9),
// locally administered and unicast, never the fleet's gateway MAC.
func TestRouterMACFor(t *testing.T) {
	seen := map[MAC]string{}
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "10.0.0.1", "2001:db8::1", "2001:db8::2", "::ffff:192.0.2.3"} {
		m := RouterMACFor(netip.MustParseAddr(s))
		if m.IsZero() || m.IsMulticast() || m[0]&0x02 == 0 {
			t.Errorf("%s: router MAC %v: want unicast, locally administered", s, m)
		}
		if o, dup := seen[m]; dup {
			t.Errorf("%s and %s share router MAC %v", s, o, m)
		}
		seen[m] = s
	}
	if m := RouterMACFor(netip.MustParseAddr("192.0.2.1")); m != (MAC{0x02, 0, 192, 0, 2, 1}) {
		t.Errorf("192.0.2.1: %v, want 02:00:c0:00:02:01", m)
	}
	if m := RouterMACFor(netip.Addr{}); !m.IsZero() {
		t.Errorf("no address: %v, want zero", m)
	}
}
