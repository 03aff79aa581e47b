package qemu

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// The boot tests run the kernel of a Weft image (WEFT_IMAGE, made by `make
// image`; `make test` sets it) with a test initramfs: testdata/guest as
// /init plus the image's virtio modules. They prove Start, WaitFor, Stop,
// the config drive, PXE and both kinds of shared segment against the real
// QEMU, independently of Weft's own PID 1. Never more than two VMs run at
// once (two cores).

// bootTimeout bounds each wait for a console marker: a boot takes ~5 s
// under TCG on an idle machine, much more on a busy one.
const bootTimeout = 120 * time.Second

var shared struct {
	once   sync.Once
	dir    string // removed by TestMain
	initrd string
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

type image struct{ dir, vmlinux, vmlinuz string }

// requireImage returns the image under test, skipping (failing under CI)
// when there is none.
func requireImage(t *testing.T) image {
	t.Helper()
	testenv.SkipIfShort(t)
	testenv.RequireTools(t, Binary, "xorriso")
	dir := testenv.Env(t, "WEFT_IMAGE", "a directory made by `weft image build` (make test sets it to out/image)")
	img := image{dir: dir, vmlinux: filepath.Join(dir, "vmlinux"), vmlinuz: filepath.Join(dir, "vmlinuz")}
	for _, f := range []string{img.vmlinux, img.vmlinuz, filepath.Join(dir, "initramfs.cpio.gz")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("WEFT_IMAGE=%s is incomplete: %v", dir, err)
		}
	}
	return img
}

// guestInitrd builds the test initramfs once per test binary.
func guestInitrd(t *testing.T, img image) string {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "weft-qemu-test-")
		if shared.err == nil {
			shared.initrd, shared.err = buildGuestInitrd(shared.dir, img)
		}
	})
	if shared.err != nil {
		t.Fatalf("test initramfs: %v", shared.err)
	}
	return shared.initrd
}

// guestModules are what the guest needs of the image's modules: virtio
// PCI, net and block with their dependencies.
var guestModules = regexp.MustCompile(`/(virtio[a-z_]*|net_failover|failover)\.ko$`)

func buildGuestInitrd(dir string, img image) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go not on PATH: %w", err)
	}
	bin := filepath.Join(dir, "guest")
	build := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./testdata/guest: %w\n%s", err, out)
	}
	initBytes, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}

	raw, err := os.ReadFile(filepath.Join(img.dir, "initramfs.cpio.gz"))
	if err != nil {
		return "", err
	}
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return "", fmt.Errorf("image initramfs: %w", err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return "", fmt.Errorf("image initramfs: %w", err)
		}
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		return "", fmt.Errorf("image initramfs: %w", err)
	}
	files := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.StaticRecord(initBytes, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
	var names []string
	for _, r := range recs {
		name := "/" + cpio.Normalize(r.Name)
		if r.Mode&cpio.S_IFMT == cpio.S_IFREG && guestModules.MatchString(name) {
			r.Name = path.Join("lib/modules", path.Base(name))
			files = append(files, r)
			names = append(names, path.Base(name))
		}
	}
	if !strings.Contains(strings.Join(names, " "), "virtio_net.ko") {
		return "", fmt.Errorf("image initramfs %s has no virtio_net.ko (found %v)", img.dir, names)
	}
	cpio.MakeAllReproducible(files)
	var out bytes.Buffer
	w := cpio.NewDedupWriter(cpio.Newc.Writer(&out))
	if err := cpio.WriteRecordsAndDirs(w, files); err != nil {
		return "", err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "guest.cpio")
	return p, os.WriteFile(p, out.Bytes(), 0o644)
}

func waitFor(t *testing.T, vm *VM, re string) ([]string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	sm, at, err := vm.WaitFor(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatal(err)
	}
	return sm, at
}

func start(t *testing.T, m Machine) *VM {
	t.Helper()
	vm, err := Start(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop() })
	return vm
}

// A kernel boot with a user-mode NIC and a config drive: the guest sees its
// MAC and the ISO labelled config-2, powers off, and QEMU exits by itself.
func TestBootConfigDrive(t *testing.T) {
	img := requireImage(t)
	initrd := guestInitrd(t, img)
	cd := filepath.Join(t.TempDir(), "cd")
	os.MkdirAll(filepath.Join(cd, "openstack", "latest"), 0o755)
	os.WriteFile(filepath.Join(cd, "openstack", "latest", "meta_data.json"), []byte(`{"uuid":"u"}`), 0o644)
	logPath := filepath.Join(t.TempDir(), "console.log")

	vm := start(t, Machine{
		Name: "qemu-test-cd", Kernel: img.vmlinux, Initrd: initrd, Append: "guest.poweroff=1",
		MemoryMB: 128, NICs: []NIC{{User: &UserNet{}}}, ConfigDrive: cd, ConsoleLog: logPath,
	})
	sm, _ := waitFor(t, vm, `^guest: nic eth0 mac=(\S+)$`)
	if want := vm.MACs()[0].String(); sm[1] != want || want != MAC("qemu-test-cd", 0).String() {
		t.Errorf("guest eth0 mac = %s, want %s", sm[1], want)
	}
	sm, _ = waitFor(t, vm, `^guest: block vda label=(\S+)$`)
	if sm[1] != ConfigDriveLabel {
		t.Errorf("vda label = %q, want %q", sm[1], ConfigDriveLabel)
	}
	_, ready := waitFor(t, vm, `^guest: ready$`)
	t.Logf("boot: ready %.2fs after QEMU start", ready.Seconds())

	select {
	case <-vm.Done():
	case <-time.After(bootTimeout):
		t.Fatalf("guest powered off but QEMU still runs:\n%s", vm.Console())
	}
	if err := vm.Wait(); err != nil {
		t.Fatalf("QEMU exit after poweroff: %v (stderr %s)", err, vm.Stderr())
	}
	if err := vm.Stop(); err != nil {
		t.Fatalf("Stop after exit: %v", err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("guest: ready\n")) || bytes.ContainsAny(log, "\r\x1b") {
		t.Fatalf("console log lacks the marker or holds \\r/ESC:\n%q", log)
	}
}

// Stop and ctx: a WaitFor timeout reports the console tail; cancelling the
// context stops QEMU and leaves no process behind.
func TestStopOnCancel(t *testing.T) {
	img := requireImage(t)
	initrd := guestInitrd(t, img)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vm, err := Start(ctx, Machine{Name: "qemu-test-stop", Kernel: img.vmlinux, Initrd: initrd, MemoryMB: 128, NICs: []NIC{{User: &UserNet{}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	waitFor(t, vm, `^guest: ready$`)

	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelShort()
	_, _, err = vm.WaitFor(short, regexp.MustCompile(`never printed`))
	var we *WaitError
	if !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded) || we.Exit != "running" ||
		!strings.Contains(err.Error(), "| guest: ready") {
		t.Fatalf("WaitFor timeout error = %v", err)
	}

	pid := vm.Pid()
	cancel()
	select {
	case <-vm.Done():
	case <-time.After(StopGrace + 10*time.Second):
		t.Fatal("QEMU still runs after its context ended")
	}
	if err := vm.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := vm.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process group %d still exists (kill: %v)", pid, err)
	}
	_, _, err = vm.WaitFor(context.Background(), regexp.MustCompile(`never printed`))
	if !errors.Is(err, ErrExited) {
		t.Fatalf("WaitFor after exit = %v, want ErrExited", err)
	}
}

// Two VMs, two segments: eth0 on a multicast Segment, eth1 on a socket
// listen/connect pair. Each VM hears the other on both, and only the
// matching NIC's MAC on each.
func TestTwoVMSegments(t *testing.T) {
	img := requireImage(t)
	initrd := guestInitrd(t, img)
	seg, err := NewSegment()
	if err != nil {
		t.Fatal(err)
	}
	port, err := FreePort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	machine := func(name string, pair SocketNet) Machine {
		return Machine{
			Name: name, Kernel: img.vmlinux, Initrd: initrd, Append: "guest.l2=1", MemoryMB: 128,
			NICs: []NIC{seg.NIC(nil), {Socket: &pair}},
		}
	}
	// The listener first: Start returns once its port is bound.
	a := start(t, machine("qemu-test-a", SocketNet{Listen: port.String()}))
	b := start(t, machine("qemu-test-b", SocketNet{Connect: port.String()}))

	for _, p := range []struct{ vm, peer *VM }{{a, b}, {b, a}} {
		for i, nic := range []string{"eth0", "eth1"} {
			_, at := waitFor(t, p.vm, fmt.Sprintf(`^guest: peer %s %s$`, nic, regexp.QuoteMeta(p.peer.MACs()[i].String())))
			t.Logf("%s %s hears %s after %.2fs", p.vm.name, nic, p.peer.MACs()[i], at.Seconds())
		}
	}
	// Segments do not leak into each other.
	for _, p := range []struct{ vm, peer *VM }{{a, b}, {b, a}} {
		bad := regexp.MustCompile(fmt.Sprintf(`guest: peer eth0 %s|guest: peer eth1 %s`,
			p.peer.MACs()[1], p.peer.MACs()[0]))
		if bad.MatchString(p.vm.Console()) {
			t.Errorf("%s heard a frame on the wrong segment:\n%s", p.vm.name, p.vm.Console())
		}
	}
	for _, vm := range []*VM{a, b} {
		if err := vm.Stop(); err != nil {
			t.Errorf("Stop %s: %v", vm.name, err)
		}
	}
}

// PXE: QEMU's TFTP serves an iPXE script that loads the bzImage and the
// test initramfs through the NIC's iPXE ROM.
func TestPXE(t *testing.T) {
	img := requireImage(t)
	initrd := guestInitrd(t, img)
	tftp := t.TempDir()
	for src, dst := range map[string]string{img.vmlinuz: "vmlinuz", initrd: "guest.cpio"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tftp, dst), b, 0o644)
	}
	script := "#!ipxe\nkernel vmlinuz console=ttyS0 panic=-1 guest.poweroff=1\ninitrd guest.cpio\nboot\n"
	os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(script), 0o644)

	vm := start(t, Machine{
		Name: "qemu-test-pxe", PXE: true, MemoryMB: 192,
		NICs: []NIC{{User: &UserNet{TFTP: tftp, BootFile: "boot.ipxe"}}},
	})
	_, at := waitFor(t, vm, `^guest: ready$`)
	t.Logf("pxe boot: ready %.2fs after QEMU start", at.Seconds())
	// The command line is the script's: no -kernel/-append was involved.
	if !strings.Contains(vm.Console(), "Command line: console=ttyS0 panic=-1 guest.poweroff=1") {
		t.Errorf("kernel command line is not the iPXE script's:\n%s", vm.Console())
	}
	if err := vm.Wait(); err != nil {
		t.Fatalf("QEMU exit after poweroff: %v", err)
	}
}
