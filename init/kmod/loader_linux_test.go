package kmod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// fakeKernel stands in for finit_module: it records what was loaded, in
// order, and can be told to fail or to report modules as already loaded.
type fakeKernel struct {
	mu      sync.Mutex
	loaded  []string
	params  map[string]string
	present map[string]bool  // already loaded before we started: EEXIST
	fail    map[string]error // module -> error from finit_module
	onLoad  func(name string)
}

func (k *fakeKernel) finit(p, params string, compressed bool) error {
	name := NameFromPath(p)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fail[name]; err != nil {
		return err
	}
	if k.present[name] || slices.Contains(k.loaded, name) {
		return unix.EEXIST
	}
	if _, err := os.Stat(p); err != nil {
		return err
	}
	k.loaded = append(k.loaded, name)
	if k.params == nil {
		k.params = map[string]string{}
	}
	k.params[name] = params
	if k.onLoad != nil {
		k.onLoad(name)
	}
	return nil
}

func (k *fakeKernel) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.loaded)
}

// newTestLoader writes testMods (plus bonding) as a module directory with
// empty .ko files and returns a Loader on it driving k.
func newTestLoader(t *testing.T, k *fakeKernel) *Loader {
	t.Helper()
	mods := testMods()
	mods["kernel/drivers/net/bonding/bonding.ko"] = Modinfo{Name: "bonding", Aliases: []string{"rtnl-link-bond"}}
	dir := t.TempDir()
	for rel := range mods {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ix := BuildIndex(mods)
	ix.AddBuiltin("kernel/drivers/block/loop.ko")
	if err := ix.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.finit = k.finit
	l.sysfs = t.TempDir()
	return l
}

func TestLoad(t *testing.T) {
	k := &fakeKernel{present: map[string]bool{"failover": true}, fail: map[string]error{"fat": unix.ENOEXEC}}
	l := newTestLoader(t, k)

	if err := l.Load("virtio-net"); err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio", "virtio_ring", "net_failover", "virtio_net"}
	if got := k.got(); !slices.Equal(got, want) {
		t.Fatalf("loaded %q, want %q (failover was already there)", got, want)
	}
	// Loading again, or a module sharing dependencies, loads only what is new.
	if err := l.Load("virtio_net"); err != nil {
		t.Fatal(err)
	}
	if err := l.Load("virtio_rng"); err != nil {
		t.Fatal(err)
	}
	if got := k.got(); !slices.Equal(got, append(want, "virtio_rng")) {
		t.Fatalf("loaded %q", got)
	}
	// Built in: nothing to do.
	if err := l.Load("loop"); err != nil {
		t.Fatalf("built-in: %v", err)
	}
	// A failing dependency fails the module, naming both.
	err := l.Load("vfat")
	if err == nil || !strings.Contains(err.Error(), "vfat") || !strings.Contains(err.Error(), "fat") || !errors.Is(err, unix.ENOEXEC) {
		t.Fatalf("Load(vfat) = %v", err)
	}
	f := l.Failures()
	if !errors.Is(f["fat"], unix.ENOEXEC) || f["vfat"] == nil || len(f) != 2 {
		t.Fatalf("Failures = %v", f)
	}
	// Not retried.
	delete(k.fail, "fat")
	if err := l.Load("vfat"); err == nil {
		t.Fatal("failed module loaded on second try")
	}
	// Aliases resolve like modprobe; parameters are passed.
	if err := l.Load("rtnl-link-bond"); err != nil {
		t.Fatal(err)
	}
	if k.params["bonding"] != "max_bonds=0" {
		t.Errorf("bonding params = %q", k.params["bonding"])
	}
	if err := l.Load("no_such_module"); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("Load(no_such_module) = %v", err)
	}
}

func TestColdplug(t *testing.T) {
	k := &fakeKernel{fail: map[string]error{"e1000": unix.ENODEV}}
	l := newTestLoader(t, k)
	pci := filepath.Join(l.sysfs, "devices", "pci0000:00", "0000:00:03.0")
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(pci, "modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
	write(filepath.Join(l.sysfs, "devices", "pci0000:00", "0000:00:04.0", "modalias"), "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\n")
	write(filepath.Join(l.sysfs, "devices", "platform", "x", "modalias"), "platform:nothing\n")
	write(filepath.Join(l.sysfs, "devices", "platform", "y", "modalias"), "\n")
	// virtio_pci's probe creates the virtio device behind the PCI function.
	k.onLoad = func(name string) {
		if name == "virtio_pci" {
			write(filepath.Join(pci, "virtio0", "modalias"), "virtio:d00000001v00001AF4\n")
		}
	}
	loaded, err := l.Coldplug(context.Background())
	wantLoaded := []string{"virtio_pci_modern_dev", "virtio", "virtio_ring", "virtio_pci", "other_e1000",
		"failover", "net_failover", "virtio_net"}
	if !slices.Equal(loaded, wantLoaded) {
		t.Errorf("Coldplug loaded %q, want %q", loaded, wantLoaded)
	}
	if err == nil || !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "e1000") {
		t.Errorf("Coldplug err = %v, want e1000's ENODEV", err)
	}
	// A second coldplug finds nothing new.
	again, err := l.Coldplug(context.Background())
	if len(again) != 0 {
		t.Errorf("second Coldplug loaded %q (err %v)", again, err)
	}
}

func TestColdplugRealSysfs(t *testing.T) {
	// Walk the host's real /sys with an index of fake modules for its
	// devices: proves the walk reads real modalias files.
	if _, err := os.Stat("/sys/devices"); err != nil {
		testenv.Unavailable(t, "no /sys/devices")
	}
	var aliases []string
	filepath.WalkDir("/sys/devices", func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "modalias" && len(aliases) < 3 {
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != "" {
				aliases = append(aliases, strings.TrimSpace(string(b)))
			}
		}
		return nil
	})
	if len(aliases) == 0 {
		testenv.Unavailable(t, "no device in /sys has a modalias")
	}
	mods := map[string]Modinfo{}
	for i, a := range aliases {
		mods["kernel/fake"+string(rune('a'+i))+".ko"] = Modinfo{Aliases: []string{a}}
	}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "kernel"), 0o755)
	for rel := range mods {
		os.WriteFile(filepath.Join(dir, rel), nil, 0o644)
	}
	if err := BuildIndex(mods).WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{}
	l.finit = k.finit
	loaded, err := l.Coldplug(context.Background())
	if err != nil || len(loaded) != len(mods) {
		t.Fatalf("Coldplug on /sys = %q, %v; modaliases %q", loaded, err, aliases)
	}
}

func TestWatch(t *testing.T) {
	testenv.RequireRoot(t)
	// A synthetic "add" event: writing "add" to a device's uevent file
	// makes the kernel broadcast it again, with its MODALIAS.
	const dev = "/sys/devices/platform/pcspkr"
	b, err := os.ReadFile(filepath.Join(dev, "modalias"))
	if err != nil {
		testenv.Unavailable(t, "no "+dev+" to trigger a uevent for: "+err.Error())
	}
	modalias := strings.TrimSpace(string(b))
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "kernel"), 0o755)
	os.WriteFile(filepath.Join(dir, "kernel", "fake_spkr.ko"), nil, 0o644)
	if err := BuildIndex(map[string]Modinfo{"kernel/fake_spkr.ko": {Aliases: []string{modalias}}}).WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{}
	l.finit = k.finit
	// The rescan Watch does first sees an empty /sys: only the uevent
	// can load the module.
	l.sysfs = t.TempDir()
	os.Mkdir(filepath.Join(l.sysfs, "devices"), 0o755)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 4)
	done := make(chan error, 1)
	go func() { done <- l.Watch(ctx, func(m string) { got <- m }) }()

	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case m := <-got:
			if m != "fake_spkr" {
				t.Fatalf("onLoad(%q)", m)
			}
			break wait
		case err := <-done:
			t.Fatalf("Watch returned early: %v", err)
		case <-tick.C:
			if err := os.WriteFile(filepath.Join(dev, "uevent"), []byte("add"), 0o200); err != nil {
				testenv.Unavailable(t, "cannot trigger a uevent: "+err.Error())
			}
		case <-deadline:
			t.Fatal("no module loaded from the uevent within 15s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch after cancel = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}
