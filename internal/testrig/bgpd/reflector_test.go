package bgpd

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// TestStart runs each kind with two clients that never come, checks that
// the CLI lists both sessions as not established, and that Restart brings
// the daemon back.
func TestStart(t *testing.T) {
	testenv.SkipIfShort(t)
	for i, kind := range []Kind{FRR, GoBGPd, BIRD} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			ns := nettest.New(t, fmt.Sprintf("wtr-%d", i))
			ns.Bridge(t, "br0")
			ns.Up(t, "br0", "198.18.250.1/24")
			clients := []Client{{Address: netip.MustParseAddr("198.18.250.11"), Password: "pw"}, {Address: netip.MustParseAddr("198.18.250.12"), Passive: true}}
			t0 := time.Now()
			r := Start(t, ns, Config{Kind: kind, ASN: 64512, RouterID: netip.MustParseAddr("198.18.250.1"), Listen: netip.MustParseAddr("198.18.250.1"), Clients: clients})
			t.Logf("%v ready after %v", kind, time.Since(t0).Round(time.Millisecond))
			check := func() {
				t.Helper()
				ss, err := r.Sessions()
				if err != nil {
					t.Fatal(err)
				}
				var got []netip.Addr
				for _, s := range ss {
					got = append(got, s.Neighbor)
					if s.Established || s.State == "" {
						t.Errorf("session %v: %+v", s.Neighbor, s)
					}
				}
				slices.SortFunc(got, netip.Addr.Compare)
				if !slices.Equal(got, []netip.Addr{clients[0].Address, clients[1].Address}) {
					t.Errorf("sessions %v, want both clients", ss)
				}
				if es, err := r.VPNv4(); err != nil || len(es) != 0 {
					t.Errorf("empty VPNv4 RIB: %v, %v", es, err)
				}
			}
			check()
			r.Restart(t)
			check()
			if kind == BIRD {
				if _, err := r.EVPN(); err == nil {
					t.Error("EVPN from BIRD: no error")
				}
			}
		})
	}
}

func TestConfigRefuses(t *testing.T) {
	base := Config{Kind: BIRD, ASN: 1, RouterID: netip.MustParseAddr("192.0.2.1"), Listen: netip.MustParseAddr("192.0.2.1")}
	for _, c := range []struct {
		want string
		edit func(*Config)
	}{
		{"asn", func(c *Config) { c.ASN = 0 }},
		{"router ID", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }},
		{"listen", func(c *Config) { c.Listen = netip.Addr{} }},
		{"BIRD 2 has no EVPN", func(c *Config) { c.Families = []Family{EVPN} }},
		{"families[0]", func(c *Config) { c.Families = []Family{"bogus"} }},
		{"password", func(c *Config) { c.Clients = []Client{{Address: c.Listen, Password: "a b"}} }},
	} {
		cfg := base
		c.edit(&cfg)
		if err := cfg.normalize(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.want, err)
		}
	}
	cfg := base
	if err := cfg.normalize(); err != nil || cfg.ClusterID != cfg.RouterID || !slices.Equal(cfg.Families, []Family{VPNv4, VPNv6}) {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}

// The parsers, on output captured from the daemons (FRR 8.4, gobgp 3.10,
// BIRD 2.0.12).

const birdSample = `BIRD 2.0.12 ready.
Table vpntab4:
198.18.1.11:1 10.1.1.0/24 unicast [c0 08:25:40.669] * (100) [i]
	via 198.18.1.11 on br0 mpls 1001
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 
	BGP.next_hop: 198.18.1.11
	BGP.med: 10
	BGP.local_pref: 200
	BGP.ext_community: (rt, 64512, 100) (rt, 192.0.2.1, 7) (generic, 0x30c0000, 0xd) (generic, 0x30c0000, 0x8) (generic, 0x8071fc00, 0x64)
	BGP.17 [t]: 00 0d 00 10 06 0a 00 00 00 00 00 01 c6 12 01 0b 08 02 19 eb 00 08 00 10 06 0a 00 00 00 00 00 01 c6 12 01 0b 08 02 12 b5
	BGP.mpls_label_stack: 1001
                     unicast [c1 08:25:41.000] (100) [i]
	via 198.18.1.12 on br0 mpls 17
	Type: BGP univ
	BGP.next_hop: 198.18.1.12
	BGP.mpls_label_stack: 17
`

func TestParseBird(t *testing.T) {
	r := &Daemon{cfg: Config{Clients: []Client{{Address: netip.MustParseAddr("198.18.1.11")}, {Address: netip.MustParseAddr("198.18.1.12")}}}}
	es, err := r.parseBirdRoutes(birdSample, VPNv4)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("%d entries: %v", len(es), es)
	}
	e := es[0]
	want := "198.18.1.11:1:10.1.1.0/24 label 1001 nh 198.18.1.11 rt [64512:100 192.0.2.1:7] encap [13 8] tunnel-encap [13 8] best from 198.18.1.11"
	if e.String() != want {
		t.Errorf("got  %v\nwant %v", e, want)
	}
	if e2 := es[1]; e2.RD != "198.18.1.11:1" || e2.Best || e2.Label != 17 || e2.Peer.String() != "198.18.1.12" || e2.NextHop.String() != "198.18.1.12" {
		t.Errorf("second path of the net: %v", e2)
	}
}

func TestParseFRRPath(t *testing.T) {
	label := int64(1001)
	p := frrPath{RemoteLabel: &label, Stale: true}
	p.ExtendedCommunity.String = "RT:64512:100 RT:192.0.2.1:7 ET:8 ET:13 UNK:128, 113 Rmac:02:00:00:00:00:0A"
	p.Bestpath.Overall = true
	p.Nexthops = append(p.Nexthops, struct {
		IP string `json:"ip"`
	}{"::ffff:c612:10b"})
	p.Peer.PeerID = "198.18.1.11"
	e := p.entry("198.18.1.11:1", netip.MustParsePrefix("2001:db8:1::/64"))
	want := "198.18.1.11:1:2001:db8:1::/64 label 1001 nh 198.18.1.11 rt [64512:100 192.0.2.1:7] encap [8 13] rmac 02:00:00:00:00:0a stale best from 198.18.1.11"
	if e.String() != want {
		t.Errorf("got  %v\nwant %v", e, want)
	}
}
