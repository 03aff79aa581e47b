package controller

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/rr"
)

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
	s, err := New(Options{State: t.TempDir(), Inventory: inventory, Log: testLog(t, "controller"), WatchInterval: -1, Reflector: &rr.Config{
		Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), RouterID: netip.MustParseAddr("192.0.2.1"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Fleet(); f.Reflector == nil || f.Nodes[0].Reflector.State != "none" {
		t.Errorf("before Serve: %+v %+v", f.Reflector, f.Nodes[0].Reflector)
	}
	serve(t, s)
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
	// MD5 although the fleet's weft.yaml has no password: each node has
	// its own.
	if f := s.Fleet(); !f.Reflector.MD5 || f.Reflector.Listen != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String() {
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
