package underlay

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/qemu"
)

// Kernels without bonding or 802.1Q (this machine's runs without either)
// cannot run TestBondVLAN in a namespace. It then runs in a QEMU VM with a
// Debian kernel: this very test binary is the VM's /init, loads bonding,
// 8021q and veth, and runs TestBondVLAN there; the host reads the verdict
// off the serial console.
//
// WEFT_TEST_KERNEL_DIR is the root of an extracted linux-image-*-amd64
// package: boot/vmlinux-* (PVH, fastest) or boot/vmlinuz-*, and
// lib/modules/<version>/kernel/.
const (
	envKernelDir = "WEFT_TEST_KERNEL_DIR"
	envGuest     = "WEFT_UL_GUEST" // set on the guest kernel's command line
)

// guestModules are loaded in the VM, with their dependencies.
var guestModules = []string{"veth", "bonding", "8021q"}

func inGuest() bool { return os.Getpid() == 1 && os.Getenv(envGuest) == "1" }

// guestSetup makes the VM's PID 1 fit to run the test: file systems and
// the kernel modules the initramfs carries under /modules, in order.
func guestSetup(t *testing.T) {
	t.Helper()
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/var/run", "tmpfs"},
	} {
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			t.Fatalf("mount %s: %v", m.dst, err)
		}
	}
	kos, _ := filepath.Glob("/modules/*.ko")
	slices.Sort(kos)
	for _, ko := range kos {
		f, err := os.Open(ko)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatalf("loading %s: %v", ko, err)
		}
	}
}

// runInVM boots the guest for test and waits for its result line.
func runInVM(t *testing.T, test string) {
	t.Helper()
	testenv.RequireTools(t, qemu.Binary)
	kernel, modDir := guestKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := writeGuestInitramfs(initrd, modDir); err != nil {
		t.Fatalf("guest initramfs: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Machine{
		Name:     "weftul",
		Kernel:   kernel,
		Initrd:   initrd,
		MemoryMB: 512,
		Append:   fmt.Sprintf("quiet %s=1 -- -test.run=^%s$ -test.v -test.count=1", envGuest, test),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	m, took, err := vm.WaitFor(ctx, regexp.MustCompile(`--- (PASS|FAIL|SKIP): `+test+`|panic: |Kernel panic`))
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	con := vm.Console()
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "weft: step=") {
			t.Log("guest: " + strings.TrimSpace(l))
		}
	}
	if m[1] != "PASS" {
		t.Fatalf("guest %s after %v:\n%s", strings.TrimSpace(m[0]), took.Round(time.Second), con)
	}
	t.Logf("guest passed %s after %v (kernel %s)", test, took.Round(time.Second), filepath.Base(kernel))
}

// guestKernel finds a kernel and its module tree: WEFT_TEST_KERNEL_DIR (an
// extracted package: boot/vmlinu[xz]-*, lib/modules/*/kernel) if set, else
// the newest subset `weft image build` cached under $WEFT_CACHE/kernel
// (vmlinux, modules/<release>/kernel), which `make test` builds first.
func guestKernel(t *testing.T) (kernel, modDir string) {
	t.Helper()
	if dir := os.Getenv(envKernelDir); dir != "" {
		kernel = firstGlob(filepath.Join(dir, "boot", "vmlinux-*"), filepath.Join(dir, "boot", "vmlinuz-*"))
		modDir = firstGlob(filepath.Join(dir, "lib", "modules", "*", "kernel"))
		if kernel == "" || modDir == "" {
			t.Fatalf("%s=%s: want boot/vmlinu[xz]-* and lib/modules/*/kernel", envKernelDir, dir)
		}
		return kernel, modDir
	}
	cache := os.Getenv("WEFT_CACHE")
	if cache == "" {
		testenv.Unavailable(t, "the kernel cannot create bonds/VLANs, and neither "+envKernelDir+
			" nor WEFT_CACHE (where make image caches the kernel subset) is set")
	}
	metas, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", "kernel.json"))
	slices.Sort(metas)
	for i := len(metas) - 1; i >= 0; i-- {
		dir := filepath.Dir(metas[i])
		kernel = firstGlob(filepath.Join(dir, "vmlinux"), filepath.Join(dir, "vmlinuz"))
		modDir = firstGlob(filepath.Join(dir, "modules", "*", "kernel"))
		if kernel != "" && modDir != "" {
			return kernel, modDir
		}
	}
	testenv.Unavailable(t, "no kernel subset under "+cache+"/kernel (run make image)")
	return "", ""
}

func firstGlob(patterns ...string) string {
	for _, p := range patterns {
		if m, _ := filepath.Glob(p); len(m) > 0 {
			slices.Sort(m)
			return m[len(m)-1]
		}
	}
	return ""
}

// writeGuestInitramfs writes a newc cpio: this test binary as /init with
// its ELF interpreter and libraries, /dev/console, empty mount points and
// the guest modules (dependencies first) under /modules.
func writeGuestInitramfs(path, modDir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	w := &cpioWriter{}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "var", "var/run", "etc", "modules"} {
		w.dir(d)
	}
	w.node("dev/console", unix.S_IFCHR|0o600, 5, 1)
	if err := w.file("init", self, 0o755); err != nil {
		return err
	}
	libs, err := elfDeps(self)
	if err != nil {
		return err
	}
	for guestPath, hostPath := range libs {
		w.dirs(filepath.Dir(guestPath))
		if err := w.file(guestPath, hostPath, 0o755); err != nil {
			return err
		}
	}
	order, err := moduleOrder(modDir, guestModules)
	if err != nil {
		return err
	}
	for i, ko := range order {
		if err := w.file(fmt.Sprintf("modules/%02d-%s", i, filepath.Base(ko)), ko, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(path, w.finish(), 0o644)
}

// elfDeps maps the interpreter and shared libraries of a dynamically
// linked binary (test binaries use cgo's resolver) to host files.
func elfDeps(bin string) (map[string]string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string]string{}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return nil, err
		}
		interp := string(bytes.TrimRight(b, "\x00"))
		real, err := filepath.EvalSymlinks(interp)
		if err != nil {
			return nil, fmt.Errorf("interpreter %s: %w", interp, err)
		}
		deps[strings.TrimPrefix(interp, "/")] = real
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		found := ""
		for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib"} {
			if real, err := filepath.EvalSymlinks(filepath.Join(d, l)); err == nil {
				found = real
				deps[strings.TrimPrefix(filepath.Join(d, l), "/")] = real
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("library %s not found", l)
		}
	}
	return deps, nil
}

// moduleOrder returns the .ko files of mods with their dependencies (from
// each module's .modinfo depends=), dependencies first.
func moduleOrder(modDir string, mods []string) ([]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			paths[modName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		name = modName(name)
		if seen[name] {
			return nil
		}
		seen[name] = true
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s not in %s", name, modDir)
		}
		deps, err := modDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		order = append(order, p)
		return nil
	}
	for _, m := range mods {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func modDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo", ko)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// cpioWriter writes the newc format the kernel unpacks.
type cpioWriter struct {
	buf  bytes.Buffer
	ino  int
	made map[string]bool
}

func (w *cpioWriter) header(name string, mode uint32, size, rmaj, rmin int) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string) {
	if w.made == nil {
		w.made = map[string]bool{}
	}
	if !w.made[name] {
		w.made[name] = true
		w.header(name, unix.S_IFDIR|0o755, 0, 0, 0)
	}
}

// dirs creates every directory of a path, parents first.
func (w *cpioWriter) dirs(p string) {
	if p == "." || p == "/" || p == "" {
		return
	}
	w.dirs(filepath.Dir(p))
	w.dir(p)
}

func (w *cpioWriter) node(name string, mode uint32, maj, min int) { w.header(name, mode, 0, maj, min) }

func (w *cpioWriter) file(name, src string, perm uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	w.header(name, unix.S_IFREG|perm, len(b), 0, 0)
	w.buf.Write(b)
	w.pad()
	return nil
}

func (w *cpioWriter) finish() []byte {
	w.header("TRAILER!!!", 0, 0, 0, 0)
	return w.buf.Bytes()
}
