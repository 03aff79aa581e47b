// Package e2e boots the Weft image in QEMU (software emulation) and checks
// what an operator would: the console verdicts of each bring-up step, the
// network state the node reports, and that bad input leaves the node up and
// retrying. The image comes from `make image` (WEFT_IMAGE); `make test` sets it.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/qemu"
)

// bootTimeout bounds one boot to the ready marker: ~5 s with PVH under TCG
// here, ~20 s through iPXE; generous for a loaded CI machine.
const bootTimeout = 120 * time.Second

func imageDir(t *testing.T) string {
	t.Helper()
	testenv.SkipIfShort(t)
	dir := testenv.Env(t, "WEFT_IMAGE", "the image directory from `make image` (make test sets it)")
	for _, f := range []string{"vmlinux", "vmlinuz", "initramfs.cpio.gz", "boot.ipxe"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("image %s incomplete (run make image): %v", dir, err)
		}
	}
	testenv.RequireTools(t, "qemu-system-x86_64", "xorriso")
	return dir
}

func weftBinary(t *testing.T) string {
	t.Helper()
	return testenv.Env(t, "WEFT_BIN", "the static weft binary from `make build` (make test sets it)")
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err) // test constants only
	}
	return m
}

// configDrive writes an OpenStack config drive tree (openstack/latest/...)
// into a temporary directory; empty contents are left out.
func configDrive(t *testing.T, metaData, networkData, userData string) string {
	t.Helper()
	dir := t.TempDir()
	latest := filepath.Join(dir, "openstack", "latest")
	if err := os.MkdirAll(latest, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"meta_data.json": metaData, "network_data.json": networkData, "user_data": userData} {
		if body == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(latest, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// boot starts a node and stops it when the test ends; the console goes to
// the test's log directory so a failure can be read afterwards.
func boot(t *testing.T, m qemu.Machine) *qemu.VM {
	t.Helper()
	img := imageDir(t)
	if !m.PXE && m.Kernel == "" {
		m.Kernel = filepath.Join(img, "vmlinux")
		m.Initrd = filepath.Join(img, "initramfs.cpio.gz")
	}
	if m.Name == "" {
		m.Name = t.Name()
	}
	m.ConsoleLog = filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := qemu.Start(ctx, m)
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", m.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console of %s:\n%s", m.Name, vm.Console())
		}
		vm.Stop()
		cancel()
	})
	return vm
}

// expect waits for a console line matching re and returns its submatches
// and the seconds since QEMU started.
func expect(t *testing.T, vm *qemu.VM, re string) ([]string, float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	m, elapsed, err := vm.WaitFor(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatalf("waiting for %q: %v", re, err)
	}
	return m, elapsed.Seconds()
}

// expectAgain waits for one more line matching re than the console holds
// now: proof that the node is still up and retrying.
func expectAgain(t *testing.T, vm *qemu.VM, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	n := 0
	for _, l := range strings.Split(vm.Console(), "\n") {
		if rx.MatchString(l) {
			n++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if _, _, err := vm.WaitCount(ctx, rx, n+1); err != nil {
		t.Fatalf("waiting for a repeat of %q: %v", re, err)
	}
}

// serveMetadata serves an OpenStack metadata layout on 127.0.0.1 and
// returns its port. Only files with content are served; the rest 404.
func serveMetadata(t *testing.T, metaData, networkData, userData string) int {
	t.Helper()
	files := map[string]string{
		"/openstack/latest/meta_data.json":    metaData,
		"/openstack/latest/network_data.json": networkData,
		"/openstack/latest/user_data":         userData,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok || body == "" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// relay returns the guestfwd target that connects the guest's connection
// to 127.0.0.1:port through `weft qemu relay` (one process per connection,
// so HTTP clients may open as many as they like).
func relay(t *testing.T, port int) string {
	return fmt.Sprintf("cmd:%s qemu relay 127.0.0.1:%d", weftBinary(t), port)
}

// figures prints boot timings as a benchmark-style line (not an assertion).
func figures(t *testing.T, name string, kv ...any) {
	line := "BenchmarkBoot/" + name + " 1"
	for i := 0; i+1 < len(kv); i += 2 {
		line += fmt.Sprintf(" %.2f %s", kv[i+1], kv[i])
	}
	fmt.Println(line)
	t.Log(line)
}
