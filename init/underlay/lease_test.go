package underlay

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/weftnet/weft/config"
)

func ack(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 99, 0, 10)),
	}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func opt(o dhcpv4.Option) dhcpv4.Modifier { return dhcpv4.WithOption(o) }

func mtuOpt(v uint16) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(v >> 8), byte(v)})
}

func route(dst string, gw string) *dhcpv4.Route {
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		panic(err)
	}
	return &dhcpv4.Route{Dest: n, Router: net.ParseIP(gw)}
}

func cr(dst, gw string) config.Route {
	r := config.Route{Dst: netip.MustParsePrefix(dst)}
	if gw != "" {
		r.Gateway = netip.MustParseAddr(gw)
	}
	return r
}

func TestLeaseFromACK(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want Lease // compared field by field below; Notes by substring
		note string
		err  string
	}{
		{
			name: "full lease",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(net.IPv4(10, 99, 0, 1)),
				dhcpv4.WithDNS(net.IPv4(10, 99, 0, 53), net.IPv4(0, 0, 0, 0)),
				opt(dhcpv4.OptDomainName("weft.test")),
				opt(dhcpv4.OptHostName("node1")),
				opt(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))),
				dhcpv4.WithLeaseTime(3600),
				mtuOpt(9000),
			},
			want: Lease{
				Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.255"),
				Server: netip.MustParseAddr("10.99.0.1"), Routers: []netip.Addr{netip.MustParseAddr("10.99.0.1")},
				Routes: []config.Route{cr("0.0.0.0/0", "10.99.0.1")}, DNS: []netip.Addr{netip.MustParseAddr("10.99.0.53")},
				Domain: "weft.test", Hostname: "node1", MTU: 9000, Duration: time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second,
			},
		},
		{
			name: "option 121 overrides option 3",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(net.IPv4(10, 99, 0, 254)),
				opt(dhcpv4.OptClasslessStaticRoute(route("10.99.0.1/32", "0.0.0.0"), route("0.0.0.0/0", "10.99.0.1"), route("172.16.0.0/12", "10.99.0.2"))),
				dhcpv4.WithLeaseTime(60),
			},
			want: Lease{
				Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.255"),
				Routers:  []netip.Addr{netip.MustParseAddr("10.99.0.254")},
				Routes:   []config.Route{cr("10.99.0.1/32", ""), cr("0.0.0.0/0", "10.99.0.1"), cr("172.16.0.0/12", "10.99.0.2")},
				Duration: time.Minute, T1: 30 * time.Second, T2: 52*time.Second + 500*time.Millisecond,
			},
			note: "option 3 routers not used",
		},
		{
			name: "malformed option 121 falls back to option 3",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithNetmask(net.CIDRMask(16, 32)),
				dhcpv4.WithRouter(net.IPv4(10, 99, 0, 1)),
				dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, []byte{24, 10, 1}),
				dhcpv4.WithLeaseTime(60),
			},
			want: Lease{
				Address: netip.MustParsePrefix("10.99.0.10/16"), Broadcast: netip.MustParseAddr("10.99.255.255"),
				Routers: []netip.Addr{netip.MustParseAddr("10.99.0.1")}, Routes: []config.Route{cr("0.0.0.0/0", "10.99.0.1")},
				Duration: time.Minute, T1: 30 * time.Second, T2: 52*time.Second + 500*time.Millisecond,
			},
			note: "option 121 ignored: byte 0: route truncated",
		},
		{
			name: "option 121 with host bits set is refused",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithGeneric(dhcpv4.OptionClasslessStaticRoute, []byte{8, 10, 10, 99, 0, 1, 20, 10, 1, 255, 10, 99, 0, 1}),
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(60),
			},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.255"),
				Duration: time.Minute, T1: 30 * time.Second, T2: 52*time.Second + 500*time.Millisecond},
			note: "byte 6: destination 10.1.255.0/20 has host bits set",
		},
		{
			name: "MTU clamped, classful mask, default lease",
			mods: []dhcpv4.Modifier{mtuOpt(300)},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/8"), Broadcast: netip.MustParseAddr("10.255.255.255"),
				MTU: 576, Duration: time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second},
			note: "mtu 300 from DHCP raised to 576",
		},
		{
			name: "large MTU taken as given",
			mods: []dhcpv4.Modifier{mtuOpt(65000), dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(60)},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.255"),
				MTU: 65000, Duration: time.Minute, T1: 30 * time.Second, T2: 52*time.Second + 500*time.Millisecond},
		},
		{
			name: "bad MTU length ignored",
			mods: []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{1}), dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(60)},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.255"),
				Duration: time.Minute, T1: 30 * time.Second, T2: 52*time.Second + 500*time.Millisecond},
			note: "option 26 has 1 bytes",
		},
		{
			name: "explicit T1/T2, /32 without broadcast, broadcast option",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithNetmask(net.CIDRMask(32, 32)), dhcpv4.WithLeaseTime(100),
				opt(dhcpv4.OptRenewTimeValue(10 * time.Second)), opt(dhcpv4.OptRebindingTimeValue(20 * time.Second)),
			},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/32"), Duration: 100 * time.Second, T1: 10 * time.Second, T2: 20 * time.Second},
		},
		{
			name: "inconsistent T1/T2 replaced",
			mods: []dhcpv4.Modifier{
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(100),
				opt(dhcpv4.OptRenewTimeValue(90 * time.Second)), opt(dhcpv4.OptRebindingTimeValue(20 * time.Second)),
				opt(dhcpv4.OptBroadcastAddress(net.IPv4(10, 99, 0, 127))),
			},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.127"),
				Duration: 100 * time.Second, T1: 50 * time.Second, T2: 87*time.Second + 500*time.Millisecond},
			note: "inconsistent",
		},
		{
			name: "infinite lease",
			mods: []dhcpv4.Modifier{dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(0xffffffff)},
			want: Lease{Address: netip.MustParsePrefix("10.99.0.10/24"), Broadcast: netip.MustParseAddr("10.99.0.255")},
		},
		{
			name: "no address",
			mods: []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4zero)},
			err:  "not a usable IPv4 address",
		},
		{
			name: "broadcast yiaddr",
			mods: []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4bcast)},
			err:  "not a usable IPv4 address",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := leaseFromACK(ack(t, tt.mods...), now)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := tt.want
			if l.Address != w.Address || l.Broadcast != w.Broadcast || l.Server != w.Server || l.MTU != w.MTU ||
				l.Domain != w.Domain || l.Hostname != w.Hostname || l.Duration != w.Duration || l.T1 != w.T1 || l.T2 != w.T2 {
				t.Errorf("lease\n got %+v\nwant %+v", *l, w)
			}
			if !slices.Equal(l.Routers, w.Routers) || !slices.Equal(l.DNS, w.DNS) || !slices.Equal(l.Routes, w.Routes) {
				t.Errorf("routers/dns/routes\n got %v %v %v\nwant %v %v %v", l.Routers, l.DNS, l.Routes, w.Routers, w.DNS, w.Routes)
			}
			if tt.note != "" && !slices.ContainsFunc(l.Notes, func(n string) bool { return strings.Contains(n, tt.note) }) {
				t.Errorf("notes %q, want one containing %q", l.Notes, tt.note)
			}
			if !l.Obtained.Equal(now) {
				t.Errorf("obtained %v", l.Obtained)
			}
			if w.Duration > 0 && !l.Expiry().Equal(now.Add(w.Duration)) {
				t.Errorf("expiry %v", l.Expiry())
			}
		})
	}
}

func TestBackoffAndRetry(t *testing.T) {
	for n, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		if got := backoff(n, 0.5); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if lo, hi := backoff(0, 0), backoff(0, 0.999); lo != 800*time.Millisecond || hi < 1190*time.Millisecond {
		t.Errorf("jitter range %v..%v", lo, hi)
	}
	for in, want := range map[time.Duration]time.Duration{
		0: time.Second, time.Second: time.Second, 10 * time.Second: 5 * time.Second, time.Hour: time.Minute,
	} {
		if got := retryIn(in); got != want {
			t.Errorf("retryIn(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestSameBinding(t *testing.T) {
	a := &Lease{Address: netip.MustParsePrefix("10.0.0.2/24"), MTU: 1400, Routes: []config.Route{cr("0.0.0.0/0", "10.0.0.1")}}
	b := *a
	b.Duration = time.Hour
	if !sameBinding(a, &b) {
		t.Error("same address, routes, mtu: want same binding")
	}
	b.Routes = []config.Route{cr("0.0.0.0/0", "10.0.0.254")}
	if sameBinding(a, &b) {
		t.Error("other gateway: want a different binding")
	}
	if sameBinding(a, nil) || !sameBinding(nil, nil) {
		t.Error("nil handling")
	}
}

func TestResolvConf(t *testing.T) {
	got := string(resolvConf(
		[]netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("10.0.0.53"), {}, netip.MustParseAddr("2001:db8::53"),
			netip.MustParseAddr("10.0.0.54"), netip.MustParseAddr("10.0.0.55")},
		[]string{"weft.test.", "weft.test", "", "bad domain", "a", "b", "c", "d", "e", "f"}))
	want := `# written by weft init (underlay); changes are overwritten
search weft.test a b c d e
# not used (more than 6): f
nameserver 10.0.0.53
nameserver 2001:db8::53
nameserver 10.0.0.54
# nameserver 10.0.0.55 (not used: more than 3)
`
	if got != want {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", got, want)
	}
	path := t.TempDir() + "/etc/resolv.conf"
	if changed, err := writeIfChanged(path, []byte(want)); err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	if changed, err := writeIfChanged(path, []byte(want)); err != nil || changed {
		t.Fatalf("second write of the same content: %v %v", changed, err)
	}
}

// FuzzLeaseFromACK: whatever a server sends, reading the lease must not
// panic, and a lease it accepts is consistent.
func FuzzLeaseFromACK(f *testing.F) {
	f.Add(ack(f, dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(net.IPv4(10, 99, 0, 1)), mtuOpt(1400),
		opt(dhcpv4.OptClasslessStaticRoute(route("0.0.0.0/0", "10.99.0.1"))), dhcpv4.WithLeaseTime(6)).ToBytes())
	f.Add(ack(f).ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := leaseFromACK(m, time.Unix(0, 0))
		if err != nil {
			return
		}
		if !l.Address.IsValid() || !l.Address.Addr().Is4() {
			t.Fatalf("accepted lease with address %v", l.Address)
		}
		if l.MTU != 0 && config.CheckMTU(l.MTU) != nil {
			t.Fatalf("mtu %d outside the clamp", l.MTU)
		}
		if l.Duration > 0 && !(0 < l.T1 && l.T1 < l.T2 && l.T2 < l.Duration) {
			t.Fatalf("timers T1 %v T2 %v lease %v", l.T1, l.T2, l.Duration)
		}
		for _, r := range l.Routes {
			if r.Dst.Masked() != r.Dst {
				t.Fatalf("route %v has host bits", r.Dst)
			}
		}
	})
}

// FuzzClasslessRoutes: option 121 bytes straight from the wire.
func FuzzClasslessRoutes(f *testing.F) {
	f.Add([]byte{0, 10, 99, 0, 1, 24, 192, 168, 1, 10, 99, 0, 2})
	f.Add([]byte{33})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := classlessRoutes(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Dst.Bits() > 32 || r.Dst.Masked() != r.Dst {
				t.Fatalf("bad route %v", r)
			}
		}
	})
}
