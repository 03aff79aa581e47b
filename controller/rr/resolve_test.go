package rr

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/inventory"
)

func TestResolveReflector(t *testing.T) {
	inv := func(t *testing.T, doc string) *inventory.Inventory {
		t.Helper()
		i, err := inventory.Parse([]byte(doc), "inv.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	const nodes = "nodes:\n  - {name: a, address: 10.0.2.15}\n  - {name: b, macs: [\"52:54:00:00:00:02\"]}\n"
	fleetDoc := "config:\n  bgp:\n    asn: 64512\n    controllers:\n      - {address: 10.0.2.3, password: other}\n      - {address: 10.0.2.2, password: s3cret, asn: 64512}\n" + nodes
	ap := netip.MustParseAddrPort
	tests := []struct {
		name     string
		doc      string
		cfg      Config
		err      string
		asn      uint32
		routerID string
		password string
		clients  string
		warnings []string
	}{{
		name: "defaults from the flags and the fleet", doc: fleetDoc, cfg: Config{Listen: ap("10.0.2.2:179")},
		asn: 64512, routerID: "10.0.2.2", password: "s3cret", clients: "10.0.2.15/32",
		warnings: []string{"node b has no address in the inventory: without --bgp-clients its BGP session is refused"},
	}, {
		name: "all addresses, matched by router ID, port 0 is 179", doc: fleetDoc,
		cfg: Config{Listen: netip.AddrPortFrom(netip.Addr{}, 0), RouterID: netip.MustParseAddr("10.0.2.2"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.2.9/24")}},
		asn: 64512, routerID: "10.0.2.2", password: "s3cret", clients: "10.0.2.0/24",
	}, {
		name: "not a controller of the fleet", doc: fleetDoc, cfg: Config{Listen: ap("10.0.2.9:1179"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}},
		asn: 64512, routerID: "10.0.2.9", clients: "10.0.2.0/24",
		warnings: []string{"no entry of the fleet's bgp.controllers (10.0.2.3, 10.0.2.2) is this reflector (listen 10.0.2.9:1179, router ID 10.0.2.9): the nodes will not dial it, and no TCP MD5 password is used"},
	}, {
		name: "port differs from the fleet's", doc: fleetDoc, cfg: Config{Listen: ap("10.0.2.2:1179"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}},
		asn: 64512, routerID: "10.0.2.2", password: "s3cret", clients: "10.0.2.0/24",
		warnings: []string{"the fleet's bgp.controllers[1] has port 179, but the reflector listens on 1179: the nodes will not reach it"},
	}, {
		name: "ASN differs", doc: fleetDoc, cfg: Config{Listen: ap("10.0.2.2:179"), ASN: 64513},
		err: "reflector: ASN 64513, but the fleet's bgp.asn is 64512: the reflector is iBGP, in the nodes' AS",
	}, {
		name: "controller ASN differs", doc: strings.Replace(fleetDoc, "asn: 64512}", "asn: 64999}", 1), cfg: Config{Listen: ap("10.0.2.2:179")},
		err: "reflector: the fleet's bgp.controllers[1].asn is 64999, but the reflector's ASN is 64512",
	}, {
		name: "no ASN anywhere", doc: "config:\n  overlay: {mtu: 1400}\n" + nodes, cfg: Config{Listen: ap("10.0.2.2:179")},
		err: "reflector: ASN: not given, and the fleet's weft.yaml has no bgp section to take it from",
	}, {
		name: "ASN from the flag alone", doc: "config:\n  overlay: {mtu: 1400}\n" + nodes, cfg: Config{Listen: ap("10.0.2.2:179"), ASN: 65000},
		asn: 65000, routerID: "10.0.2.2", clients: "10.0.2.15/32",
		warnings: []string{"node b has no address"},
	}, {
		name: "no router ID", doc: fleetDoc, cfg: Config{Listen: ap("[::]:179")},
		err: "reflector: router ID: not given, and the listen address :179 is not a specific IPv4 address to take it from",
	}, {
		name: "IPv6 router ID", doc: fleetDoc, cfg: Config{Listen: ap("[fd00::2]:179"), RouterID: netip.MustParseAddr("fd00::2")},
		err: "reflector: router ID fd00::2: want a non-zero IPv4 address",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Resolve(tt.cfg, inv(t, tt.doc))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Errorf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.ASN != tt.asn || s.RouterID.String() != tt.routerID || s.Password != tt.password || PrefixList(s.Clients) != tt.clients || s.Listen.Port() == 0 {
				t.Errorf("got asn %d router ID %v password %q clients %s listen %v", s.ASN, s.RouterID, s.Password, PrefixList(s.Clients), s.Listen)
			}
			if len(s.Warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %q", s.Warnings, tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.HasPrefix(s.Warnings[i], w) {
					t.Errorf("warning %q, want %q", s.Warnings[i], w)
				}
			}
		})
	}
}
