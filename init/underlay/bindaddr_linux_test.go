package underlay

import (
	"net"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

func TestBindAddrDev(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		testenv.Unavailable(t, "no loopback interface: "+err.Error())
	}
	a, mtu, err := BindAddr("lo", nil)
	if err != nil || a != netip.MustParseAddr("127.0.0.1") || mtu != lo.MTU {
		t.Errorf("BindAddr(lo) = %v %d %v, want 127.0.0.1 %d", a, mtu, err, lo.MTU)
	}
	if _, _, err := BindAddr("no-such-if0", nil); err == nil {
		t.Error("BindAddr of a missing interface: no error")
	}
}

func TestFirstAddr(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("fe80::1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("169.254.1.1"), netip.MustParseAddr("192.0.2.1")}
	if a, ok := firstAddr(addrs, netip.Addr.Is4); !ok || a != netip.MustParseAddr("169.254.1.1") {
		t.Errorf("first IPv4: %v %v", a, ok)
	}
	if a, ok := firstAddr(addrs, func(a netip.Addr) bool { return a.Is4() && a.IsGlobalUnicast() }); !ok || a != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("first global IPv4: %v %v", a, ok)
	}
	if _, ok := firstAddr(nil, netip.Addr.Is4); ok {
		t.Error("found an address in none")
	}
}
