package kmod

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testMods is a small module tree shaped like Debian's: virtio_net needs
// net_failover (which needs failover) and the virtio core.
func testMods() map[string]Modinfo {
	return map[string]Modinfo{
		"kernel/drivers/net/virtio_net.ko": {Name: "virtio_net", Depends: []string{"virtio_ring", "virtio", "net_failover"},
			Aliases: []string{"virtio:d00000001v*"}},
		"kernel/drivers/net/net_failover.ko":             {Name: "net_failover", Depends: []string{"failover"}},
		"kernel/net/core/failover.ko":                    {Name: "failover"},
		"kernel/drivers/virtio/virtio.ko":                {Name: "virtio"},
		"kernel/drivers/virtio/virtio_ring.ko":           {Name: "virtio_ring", Depends: []string{"virtio"}},
		"kernel/drivers/virtio/virtio_pci.ko":            {Name: "virtio_pci", Depends: []string{"virtio_pci_modern_dev", "virtio_ring", "virtio"}, Aliases: []string{"pci:v00001AF4d*sv*sd*bc*sc*i*"}},
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko": {Name: "virtio_pci_modern_dev"},
		"kernel/drivers/char/hw_random/virtio-rng.ko":    {Depends: []string{"virtio_ring", "virtio"}, Aliases: []string{"virtio:d00000004v*"}},
		"kernel/fs/fat/vfat.ko":                          {Name: "vfat", Depends: []string{"fat"}, Aliases: []string{"fs-vfat"}},
		"kernel/fs/fat/fat.ko":                           {Name: "fat"},
		"kernel/drivers/net/e1000.ko":                    {Name: "e1000", Aliases: []string{"pci:v00008086d0000100Esv*sd*bc*sc*i*", "pci:v00008086d0000100Fsv*sd*bc*sc*i*"}},
		"kernel/drivers/net/other_e1000.ko":              {Name: "other_e1000", Aliases: []string{"pci:v00008086d0000100[E-F]sv*sd*bc*sc*i*"}},
		"kernel/drivers/broken.ko":                       {Name: "broken", Depends: []string{"absent"}},
	}
}

const wantDep = `kernel/drivers/broken.ko:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/e1000.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/other_e1000.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/fs/fat/fat.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/net/core/failover.ko:
`

func TestIndexRoundTrip(t *testing.T) {
	ix := BuildIndex(testMods())
	ix.AddBuiltin("kernel/fs/nls/nls_base.ko", "kernel/net/ipv6/ipv6.ko")
	if got := ix.Unresolved(); !slices.Equal(got, []string{"broken: absent"}) {
		t.Errorf("Unresolved = %q", got)
	}
	dir := t.TempDir()
	if err := ix.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	dep, _ := os.ReadFile(filepath.Join(dir, DepFile))
	if string(dep) != wantDep {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", dep, wantDep)
	}
	al, _ := os.ReadFile(filepath.Join(dir, AliasFile))
	if !strings.HasPrefix(string(al), "# Aliases extracted from modules themselves.\n") ||
		!strings.Contains(string(al), "\nalias virtio:d00000004v* virtio_rng\n") ||
		!strings.Contains(string(al), "\nalias fs_vfat vfat\n") {
		t.Errorf("modules.alias:\n%s", al)
	}
	bi, _ := os.ReadFile(filepath.Join(dir, BuiltinFile))
	if string(bi) != "kernel/fs/nls/nls_base.ko\nkernel/net/ipv6/ipv6.ko\n" {
		t.Errorf("modules.builtin:\n%s", bi)
	}

	// Writing again gives the same bytes (map order must not leak).
	dir2 := t.TempDir()
	if err := BuildIndex(testMods()).WriteFiles(dir2); err != nil {
		t.Fatal(err)
	}
	dep2, _ := os.ReadFile(filepath.Join(dir2, DepFile))
	if string(dep2) != string(dep) {
		t.Error("modules.dep differs between two builds")
	}

	for _, x := range []*Index{ix, mustLoad(t, dir)} {
		deps, err := x.Deps("virtio-net")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
			"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko"}
		if !slices.Equal(deps, want) {
			t.Errorf("Deps(virtio_net) = %q, want %q", deps, want)
		}
		if _, err := x.Deps("nope"); err == nil {
			t.Error("Deps(nope): no error")
		}
		if !x.Builtin("nls-base") || x.Builtin("vfat") {
			t.Error("Builtin wrong")
		}
		if p, ok := x.Path("virtio_rng"); !ok || p != "kernel/drivers/char/hw_random/virtio-rng.ko" {
			t.Errorf("Path(virtio_rng) = %q %v", p, ok)
		}
		matches := map[string][]string{
			"virtio:d00000001v00001AF4":                               {"virtio_net"},
			"virtio:d00000004v00001AF4":                               {"virtio_rng"},
			"virtio:d00000002v00001AF4":                               nil,
			"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00":   {"e1000", "other_e1000"},
			"pci:v00008086d0000100Fsv00001AF4sd00001100bc02sc00i00\n": {"e1000", "other_e1000"},
			"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00":   {"virtio_pci"},
			"fs-vfat": {"vfat"},
			"fs_vfat": {"vfat"},
			"":        nil,
		}
		for in, want := range matches {
			if got := x.Match(in); !slices.Equal(got, want) {
				t.Errorf("Match(%q) = %q, want %q", in, got, want)
			}
		}
	}
}

func mustLoad(t *testing.T, dir string) *Index {
	t.Helper()
	ix, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestBuildIndexCycle(t *testing.T) {
	// Real modules cannot depend on each other in a cycle, but a corrupt
	// file must not hang the builder.
	ix := BuildIndex(map[string]Modinfo{
		"a.ko": {Name: "a", Depends: []string{"b"}},
		"b.ko": {Name: "b", Depends: []string{"a"}},
	})
	d, _ := ix.Deps("a")
	if !slices.Equal(d, []string{"b.ko"}) {
		t.Errorf("Deps(a) = %q", d)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, dep, alias, want string
	}{
		{name: "dep without colon", dep: "kernel/a.ko\n", want: `line 1: want "path: dependencies"`},
		{name: "dep twice", dep: "a.ko:\n# c\n\na.ko: b.ko\n", want: "line 4: a.ko listed twice"},
		{name: "dep empty path", dep: ": b.ko\n", want: "line 1"},
		{name: "alias short", alias: "alias foo\n", want: `line 1: want "alias PATTERN MODULE"`},
		{name: "alias keyword", alias: "# x\nalia foo bar\n", want: "line 2"},
		{name: "alias long", alias: "alias a b c\n", want: "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.dep != "" {
				_, err = ParseDep(strings.NewReader(tt.dep))
			} else {
				_, err = ParseAlias(strings.NewReader(tt.alias))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestParseDepTrailingSpace(t *testing.T) {
	// u-root's kmodule misreads "path: " with a trailing space; we must not.
	ix, err := ParseDep(strings.NewReader("kernel/a.ko: \nkernel/b.ko: kernel/a.ko \n"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := ix.Deps("a"); len(d) != 0 {
		t.Errorf("Deps(a) = %q", d)
	}
	if d, _ := ix.Deps("b"); !slices.Equal(d, []string{"kernel/a.ko"}) {
		t.Errorf("Deps(b) = %q", d)
	}
}

func TestLoadIndexMissing(t *testing.T) {
	if _, err := LoadIndex(t.TempDir()); err == nil || !strings.Contains(err.Error(), "weft image build") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseDep(f *testing.F) {
	f.Add("kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\n# x\n")
	f.Add(": \n")
	f.Add("a:b:c")
	f.Fuzz(func(t *testing.T, s string) {
		ix, err := ParseDep(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range ix.Modules() {
			if _, err := ix.Deps(m); err != nil {
				t.Fatalf("module %q listed but Deps fails: %v", m, err)
			}
		}
		// What we parsed, we can write and read back unchanged.
		dir := t.TempDir()
		if err := ix.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		back, err := LoadIndex(dir)
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		for _, m := range ix.Modules() {
			a, _ := ix.Deps(m)
			b, _ := back.Deps(m)
			if !slices.Equal(a, b) {
				t.Fatalf("Deps(%q): %q, after round trip %q", m, a, b)
			}
		}
	})
}

func FuzzParseAlias(f *testing.F) {
	f.Add("alias pci:v00008086d*sv* e1000\n# c\n", "pci:v00008086d0000100E")
	f.Add("alias fs-vfat vfat\n", "fs_vfat")
	f.Add("alias [ x\n", "[")
	f.Fuzz(func(t *testing.T, s, modalias string) {
		ix, err := ParseAlias(strings.NewReader(s))
		if err != nil {
			return
		}
		got := ix.Match(modalias)
		seen := map[string]bool{}
		for _, m := range got {
			if seen[m] {
				t.Fatalf("Match(%q) lists %q twice", modalias, m)
			}
			seen[m] = true
		}
	})
}
