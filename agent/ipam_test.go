package agent

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
)

func testNetwork() *config.VirtualNetwork {
	return &config.VirtualNetwork{Name: "leonardo", VNI: 100,
		Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.10.0/29"), netip.MustParsePrefix("fd00:10::/120")}}
}

// The IPAM never hands out an address twice: not while it is held, not
// the gateway or the subnet's own or broadcast address, and a released
// one comes back last; a subnet that is full says so.
func TestIPAMNeverTwice(t *testing.T) {
	at := newAttachments("", slog.Default())
	n := testNetwork()
	seen := map[netip.Addr]bool{}
	var first attachment
	for i := range 5 { // .2 .. .6: /29 less .0, .1 (gateway), .7 (broadcast)
		rec, err := at.assign(attachment{ContainerID: "c" + string(rune('a'+i)), IfName: "eth0", Network: "leonardo"}, n, map[netip.Addr]bool{})
		if err != nil {
			t.Fatalf("assign %d: %v", i, err)
		}
		if len(rec.Addresses) != 2 || !rec.Addresses[0].Addr().Is4() || !rec.Addresses[1].Addr().Is6() {
			t.Fatalf("assign %d: addresses %v, want one IPv4 then one IPv6", i, rec.Addresses)
		}
		for _, a := range rec.Addresses {
			if seen[a.Addr()] {
				t.Fatalf("assign %d: %v handed out twice", i, a)
			}
			seen[a.Addr()] = true
		}
		if i == 0 {
			first = rec
		}
	}
	for _, bad := range []string{"10.0.10.0", "10.0.10.1", "10.0.10.7", "fd00:10::", "fd00:10::1"} {
		if seen[netip.MustParseAddr(bad)] {
			t.Errorf("%s handed out", bad)
		}
	}
	if _, err := at.assign(attachment{ContainerID: "full", IfName: "eth0"}, n, map[netip.Addr]bool{}); err == nil {
		t.Fatal("a full subnet handed out an address")
	}
	if _, err := at.assign(attachment{ContainerID: "ca", IfName: "eth0"}, n, map[netip.Addr]bool{}); err != errExists {
		t.Fatalf("a second attach of one interface: %v, want errExists", err)
	}
	at.release(first.name())
	rec, err := at.assign(attachment{ContainerID: "again", IfName: "eth0"}, n, map[netip.Addr]bool{})
	if err != nil || rec.Addresses[0] != first.Addresses[0] {
		t.Fatalf("after a release in a full subnet: %v %v, want the released %v", rec.Addresses, err, first.Addresses[0])
	}
}

// Addresses held by other endpoints (static ones) are never handed out.
func TestIPAMSkipsEndpoints(t *testing.T) {
	at := newAttachments("", slog.Default())
	inUse := map[netip.Addr]bool{netip.MustParseAddr("10.0.10.2"): true, netip.MustParseAddr("10.0.10.3"): true}
	rec, err := at.assign(attachment{ContainerID: "c", IfName: "eth0"}, testNetwork(), inUse)
	if err != nil || rec.Addresses[0].Addr() != netip.MustParseAddr("10.0.10.4") {
		t.Fatalf("got %v %v, want 10.0.10.4", rec.Addresses, err)
	}
}

// The state file survives a restart; without one, the attachments come
// back from the vRouter's endpoints and the search starts after them.
func TestIPAMRestart(t *testing.T) {
	dir := t.TempDir()
	at := newAttachments(dir, slog.Default())
	n := testNetwork()
	a1, _ := at.assign(attachment{ContainerID: "c1", IfName: "eth0", Netns: "/run/netns/x", Network: "leonardo", PodName: "p1"}, n, map[netip.Addr]bool{})
	a2, _ := at.assign(attachment{ContainerID: "c2", IfName: "eth0", Netns: "/run/netns/y", Network: "leonardo"}, n, map[netip.Addr]bool{})
	at.release(a2.name())

	again := newAttachments(dir, slog.Default())
	if got, ok := again.get(a1.name()); !ok || got.PodName != "p1" || got.Addresses[0] != a1.Addresses[0] {
		t.Fatalf("after a restart: %+v %v, want %+v", got, ok, a1)
	}
	// A vRouter that has run since before the file was written and lacks
	// a1: the record is stale (a DEL the file missed) and goes.
	stale := newAttachments(dir, slog.Default())
	if missing := stale.adopt(nil, time.Now().Add(-time.Hour)); len(missing) != 0 {
		t.Fatalf("adopt with a vRouter running since before the file: missing %v, want none", missing)
	}
	if _, ok := stale.get(a1.name()); ok {
		t.Fatalf("a stale record was kept")
	}
	// A vRouter started after the file was written lost a1: declare it again.
	missing := again.adopt(nil, time.Now().Add(time.Hour))
	if len(missing) != 1 || missing[0].name() != a1.name() {
		t.Fatalf("adopt with an empty vRouter: missing %v, want %s", missing, a1.name())
	}
	a3, _ := again.assign(attachment{ContainerID: "c3", IfName: "eth0", Network: "leonardo"}, n, map[netip.Addr]bool{})
	if a3.Addresses[0] == a1.Addresses[0] || a3.Addresses[0] == a2.Addresses[0] {
		t.Fatalf("after a restart: %v handed out again (held %v, released %v)", a3.Addresses[0], a1.Addresses[0], a2.Addresses[0])
	}

	diskless := newAttachments("", slog.Default())
	diskless.adopt([]LocalEndpoint{a1.endpoint(), a3.endpoint(), {Name: "static", Address: netip.MustParsePrefix("10.0.10.6/29")}}, time.Time{})
	if got, ok := diskless.get(a3.name()); !ok || got.ContainerID != "c3" || got.IfName != "eth0" || len(got.Addresses) != 2 {
		t.Fatalf("rebuilt from the vRouter: %+v %v", got, ok)
	}
	a4, err := diskless.assign(attachment{ContainerID: "c4", IfName: "eth0"}, n, map[netip.Addr]bool{netip.MustParseAddr("10.0.10.6"): true})
	if err != nil || a4.Addresses[0] == a1.Addresses[0] || a4.Addresses[0] == a3.Addresses[0] {
		t.Fatalf("diskless: %v %v reuses a held address", a4.Addresses, err)
	}

	os.WriteFile(filepath.Join(dir, attachmentsFile), []byte(`{"version": 1, "attach`), 0o600)
	if len(newAttachments(dir, slog.Default()).list()) != 0 {
		t.Fatal("a damaged state file was read")
	}
	if _, err := os.Stat(filepath.Join(dir, attachmentsFile+".bad")); err != nil {
		t.Fatalf("a damaged state file was not set aside: %v", err)
	}
}

func TestAttachmentName(t *testing.T) {
	n := attachmentName("0123abc.x_y-z", "net1")
	cid, ifn, ok := parseAttachmentName(n)
	if !ok || cid != "0123abc.x_y-z" || ifn != "net1" {
		t.Fatalf("%q -> %q %q %v", n, cid, ifn, ok)
	}
	for _, bad := range []string{"pg1", "cni:", "cni::eth0", "cni:c:"} {
		if _, _, ok := parseAttachmentName(bad); ok {
			t.Errorf("%q parsed as an attachment", bad)
		}
	}
}
