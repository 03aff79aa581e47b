package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// debianModuleDir finds the module subset `weft image build` cut from
// Debian's kernel package into the kernel cache ($WEFT_CACHE, default
// ~/.cache/weft).
func debianModuleDir(t *testing.T) (dir, release string) {
	t.Helper()
	cache := os.Getenv("WEFT_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "weft")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", "modules", "*", DepFile))
	if len(m) == 0 {
		testenv.Unavailable(t, "no kernel cache in "+cache+" (run make image)")
	}
	dir = filepath.Dir(m[len(m)-1])
	return dir, filepath.Base(dir)
}

// TestDebianModules reads the real .ko files of Debian's kernel and
// checks what a PID 1 relies on: names, dependencies, and that the
// modaliases QEMU's and real servers' devices present find their driver.
func TestDebianModules(t *testing.T) {
	dir, release := debianModuleDir(t)
	mods := map[string]Modinfo{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".ko") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mi, err := ReadModinfo(b)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if !strings.HasPrefix(mi.Vermagic, release+" ") {
			t.Errorf("%s: vermagic %q, want %s", p, mi.Vermagic, release)
		}
		if mi.Name != NameFromPath(p) {
			t.Errorf("%s: name= %q, file name says %q", p, mi.Name, NameFromPath(p))
		}
		rel, _ := filepath.Rel(dir, p)
		mods[rel] = mi
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	vn := mods["kernel/drivers/net/virtio_net.ko"]
	if !slices.Contains(vn.Depends, "net_failover") || !slices.Contains(vn.Aliases, "virtio:d00000001v*") {
		t.Errorf("virtio_net modinfo = %+v", vn)
	}

	built := BuildIndex(mods)
	if u := built.Unresolved(); len(u) > 0 {
		t.Errorf("unresolved dependencies in the image's module set: %q", u)
	}
	loaded, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ix := range []*Index{built, loaded} {
		deps, err := ix.Deps("virtio_net")
		if err != nil {
			t.Fatal(err)
		}
		// failover before net_failover before virtio_net.
		fo := slices.Index(deps, "kernel/net/core/failover.ko")
		nfo := slices.Index(deps, "kernel/drivers/net/net_failover.ko")
		if fo < 0 || nfo < 0 || fo > nfo {
			t.Errorf("Deps(virtio_net) = %q", deps)
		}
		for alias, want := range map[string]string{
			"virtio:d00000001v00001AF4":                             "virtio_net",
			"virtio:d00000002v00001AF4":                             "virtio_blk",
			"virtio:d00000004v00001AF4":                             "virtio_rng",
			"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00": "virtio_pci",
			"pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00": "virtio_pci",
			"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00": "e1000", // QEMU's e1000
			"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00": "e1000e",
			"pci:v00008086d00001572sv00008086sd00000000bc02sc00i00": "i40e",      // X710
			"pci:v000015B3d00001017sv000015B3sd00000020bc02sc00i00": "mlx5_core", // ConnectX-5
			"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80": "ata_piix",
			"fs-vfat":         "vfat",
			"fs-iso9660":      "isofs",
			"rtnl-link-bond":  "bonding",
			"devname:net/tun": "tun",
		} {
			if got := ix.Match(alias); !slices.Contains(got, want) {
				t.Errorf("Match(%q) = %q, want %s", alias, got, want)
			}
		}
		if got := ix.Match("pci:v0000DEADd0000BEEFsv00000000sd00000000bc02sc00i00"); len(got) != 0 {
			t.Errorf("unknown device matched %q", got)
		}
	}
}
