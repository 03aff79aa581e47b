package port

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// EnsureNamedNetns makes a namespace as `ip netns add` would, once;
// DeleteNamedNetns removes it; both are idempotent.
func TestNamedNetns(t *testing.T) {
	testenv.RequireRoot(t)
	const name = "wtp-ens"
	path := NetnsDir + "/" + name
	nettest.Delete(name)
	t.Cleanup(func() { nettest.Delete(name) })

	if err := EnsureNamedNetns(name); err != nil {
		t.Fatalf("EnsureNamedNetns: %v", err)
	}
	ino := nsInode(t, path)
	if !isNetnsMount(path) {
		t.Fatalf("%s is not a namespace", path)
	}
	if ino == nsInode(t, "/proc/self/ns/net") {
		t.Fatalf("%s is our own namespace", path)
	}
	if err := EnsureNamedNetns(name); err != nil {
		t.Fatalf("second EnsureNamedNetns: %v", err)
	}
	if nsInode(t, path) != ino {
		t.Fatalf("second EnsureNamedNetns replaced the namespace")
	}

	// A TAP goes into it by name; the namespace is empty but for it.
	vr := vrouterNS(t, "wtp-vr")
	createTAP(t, vr, TAPConfig{Name: "wtp-ens0", Netns: name})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if _, err := nl.LinkByName("eth0"); err != nil {
		t.Errorf("eth0 in %s: %v", name, err)
	}

	if err := DeleteNamedNetns(name); err != nil {
		t.Fatalf("DeleteNamedNetns: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s after delete: %v", path, err)
	}
	if err := DeleteNamedNetns(name); err != nil {
		t.Fatalf("second DeleteNamedNetns: %v", err)
	}
	for _, bad := range []string{"", "a/b", "..", "."} {
		if EnsureNamedNetns(bad) == nil || DeleteNamedNetns(bad) == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}
