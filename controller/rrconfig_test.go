package controller

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	fleet := "config:\n  bgp:\n    asn: 64512\n    controllers:\n      - {address: 10.0.2.3, password: other}\n      - {address: 10.0.2.2, password: s3cret, asn: 64512}\n" + nodes
	ap := netip.MustParseAddrPort
	tests := []struct {
		name     string
		doc      string
		cfg      ReflectorConfig
		err      string
		asn      uint32
		routerID string
		password string
		clients  string
		warnings []string
	}{{
		name: "defaults from the flags and the fleet", doc: fleet, cfg: ReflectorConfig{Listen: ap("10.0.2.2:179")},
		asn: 64512, routerID: "10.0.2.2", password: "s3cret", clients: "10.0.2.15/32",
		warnings: []string{"node b has no address in the inventory: without --bgp-clients its BGP session is refused"},
	}, {
		name: "all addresses, matched by router ID, port 0 is 179", doc: fleet,
		cfg: ReflectorConfig{Listen: netip.AddrPortFrom(netip.Addr{}, 0), RouterID: netip.MustParseAddr("10.0.2.2"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.2.9/24")}},
		asn: 64512, routerID: "10.0.2.2", password: "s3cret", clients: "10.0.2.0/24",
	}, {
		name: "not a controller of the fleet", doc: fleet, cfg: ReflectorConfig{Listen: ap("10.0.2.9:1179"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}},
		asn: 64512, routerID: "10.0.2.9", clients: "10.0.2.0/24",
		warnings: []string{"no entry of the fleet's bgp.controllers (10.0.2.3, 10.0.2.2) is this reflector (listen 10.0.2.9:1179, router ID 10.0.2.9): the nodes will not dial it, and no TCP MD5 password is used"},
	}, {
		name: "port differs from the fleet's", doc: fleet, cfg: ReflectorConfig{Listen: ap("10.0.2.2:1179"), Clients: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}},
		asn: 64512, routerID: "10.0.2.2", password: "s3cret", clients: "10.0.2.0/24",
		warnings: []string{"the fleet's bgp.controllers[1] has port 179, but the reflector listens on 1179: the nodes will not reach it"},
	}, {
		name: "ASN differs", doc: fleet, cfg: ReflectorConfig{Listen: ap("10.0.2.2:179"), ASN: 64513},
		err: "reflector: ASN 64513, but the fleet's bgp.asn is 64512: the reflector is iBGP, in the nodes' AS",
	}, {
		name: "controller ASN differs", doc: strings.Replace(fleet, "asn: 64512}", "asn: 64999}", 1), cfg: ReflectorConfig{Listen: ap("10.0.2.2:179")},
		err: "reflector: the fleet's bgp.controllers[1].asn is 64999, but the reflector's ASN is 64512",
	}, {
		name: "no ASN anywhere", doc: "config:\n  overlay: {mtu: 1400}\n" + nodes, cfg: ReflectorConfig{Listen: ap("10.0.2.2:179")},
		err: "reflector: ASN: not given, and the fleet's weft.yaml has no bgp section to take it from",
	}, {
		name: "ASN from the flag alone", doc: "config:\n  overlay: {mtu: 1400}\n" + nodes, cfg: ReflectorConfig{Listen: ap("10.0.2.2:179"), ASN: 65000},
		asn: 65000, routerID: "10.0.2.2", clients: "10.0.2.15/32",
		warnings: []string{"node b has no address"},
	}, {
		name: "no router ID", doc: fleet, cfg: ReflectorConfig{Listen: ap("[::]:179")},
		err: "reflector: router ID: not given, and the listen address :179 is not a specific IPv4 address to take it from",
	}, {
		name: "IPv6 router ID", doc: fleet, cfg: ReflectorConfig{Listen: ap("[fd00::2]:179"), RouterID: netip.MustParseAddr("fd00::2")},
		err: "reflector: router ID fd00::2: want a non-zero IPv4 address",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := resolveReflector(tt.cfg, inv(t, tt.doc))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Errorf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.asn != tt.asn || s.routerID.String() != tt.routerID || s.password != tt.password || prefixList(s.clients) != tt.clients || s.listen.Port() == 0 {
				t.Errorf("got asn %d router ID %v password %q clients %s listen %v", s.asn, s.routerID, s.password, prefixList(s.clients), s.listen)
			}
			if len(s.warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %q", s.warnings, tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.HasPrefix(s.warnings[i], w) {
					t.Errorf("warning %q, want %q", s.warnings[i], w)
				}
			}
		})
	}
}

// TestReflectorFollowsInventory: without --bgp-clients, the reflector
// accepts sessions from the inventory's node addresses, as reloads change
// them. (Needs no privileges: nothing dials in.)
func TestReflectorFollowsInventory(t *testing.T) {
	dir := t.TempDir()
	inventory := filepath.Join(dir, "fleet.yaml")
	head := "config:\n  bgp:\n    asn: 64512\n    controllers: [{address: 192.0.2.1}]\nnodes:\n  - {name: a, address: 127.0.0.11}\n"
	if err := os.WriteFile(inventory, []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s, err := New(Options{Inventory: inventory, Log: testLog(t, "controller"), WatchInterval: -1, Reflector: &ReflectorConfig{
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), RouterID: netip.MustParseAddr("192.0.2.1"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Fleet(); f.Reflector == nil || f.Nodes[0].Reflector.State != "none" {
		t.Errorf("before Serve: %+v %+v", f.Reflector, f.Nodes[0].Reflector)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	clients := func() []string {
		f := s.Fleet()
		var out []string
		for _, p := range f.Reflector.Clients {
			out = append(out, p.String())
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(clients(), []string{"127.0.0.11/32"}) {
		if time.Now().After(deadline) {
			t.Fatalf("clients %v", clients())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(inventory, []byte(strings.Replace(head, "127.0.0.11", "127.0.0.12", 1)+"  - {name: b, address: \"::1\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := clients(); !slices.Equal(got, []string{"127.0.0.12/32", "::1/128"}) {
		t.Errorf("clients after the reload: %v", got)
	}
	if f := s.Fleet(); f.Reflector.MD5 || f.Reflector.Listen != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String() {
		t.Errorf("reflector %+v", f.Reflector)
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
