// Package containerd runs Debian's containerd for a test, apart from any
// containerd the machine has: its own config, root, state and socket
// under the test's temporary directory, runc as the runtime (cgroupfs,
// as the kubelet beside it), and the CRI plugin's CNI directories set to
// what the test installed with `weft cni install`.
package containerd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/daemon"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// loopback is Debian's CNI loopback plugin.
const loopback = "/usr/lib/cni/loopback"

// Config is what the test decides for its containerd.
type Config struct {
	CNIBinDir, CNIConfDir string
	// SandboxImage is the pause image, imported by the test (never pulled).
	SandboxImage string
}

// Containerd is a running containerd.
type Containerd struct {
	// Socket is the gRPC socket, CRI included: the kubelet's
	// --container-runtime-endpoint is unix://Socket.
	Socket string
	Dir    string
	proc   *daemon.Process
}

// config is containerd 1.6's version 2 config. The short socket path
// matters: a unix socket path has at most 107 bytes.
// restrict_oom_score_adj: the CRI plugin gives a sandbox oom_score_adj
// -998; a test machine whose root lacks CAP_SYS_RESOURCE cannot lower
// it, and runc's nsexec dies on it ("failed to update
// /proc/self/oom_score_adj: Permission denied", reported by containerd
// only as "can't get final child's PID from pipe: EOF"). Restricted, the
// value is never below containerd's own.
const config = `version = 2
root = "{{dir}}/root"
state = "{{dir}}/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{{dir}}/c.sock"
[ttrpc]
  address = "{{dir}}/c.sock.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{{dir}}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{sandbox}}"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{cnibin}}"
    conf_dir = "{{cniconf}}"
    max_conf_num = 1
`

// Start runs containerd with c; it is stopped when t ends, its log shown
// if t failed.
func Start(t testing.TB, c Config) *Containerd {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "containerd", "containerd-shim-runc-v2", "runc", "ctr")
	// The CRI plugin of containerd 1.6 always runs CNI's loopback plugin
	// before the configured network: it must be in the bin dir.
	if _, err := os.Stat(loopback); err != nil {
		testenv.Unavailable(t, loopback+" missing (Debian's containernetworking-plugins; run make deps)")
	}
	if err := os.Symlink(loopback, filepath.Join(c.CNIBinDir, "loopback")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "weft-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("{{dir}}", dir, "{{sandbox}}", c.SandboxImage, "{{cnibin}}", c.CNIBinDir, "{{cniconf}}", c.CNIConfDir)
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(r.Replace(config)), 0o644); err != nil {
		t.Fatal(err)
	}
	before := podNetns()
	d := &Containerd{Socket: filepath.Join(dir, "c.sock"), Dir: dir}
	proc, err := daemon.Start(exec.Command("containerd", "--config", cfg))
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	d.proc = proc
	t.Cleanup(func() {
		d.removeTasks()
		d.proc.Kill(unix.SIGTERM)
		if t.Failed() {
			t.Logf("containerd output:\n%s", d.proc.Output())
		}
		// Shims outlive containerd by design; the kubelet's test has
		// removed its pods by now, so what is left is a leftover.
		killShims(dir)
		// The sandboxes' namespaces it made and did not remove (a pod
		// whose teardown failed).
		for n := range podNetns() {
			if !before[n] {
				unix.Unmount(n, unix.MNT_DETACH)
				os.Remove(n)
			}
		}
		// The root's mounts and the sandboxes' shm mounts under the
		// state dir (pods still there when containerd stopped).
		for _, m := range mountsUnder(dir) {
			unix.Unmount(m, unix.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.Dial("unix", d.Socket); err == nil {
			conn.Close()
			break
		}
		select {
		case <-d.proc.Done():
			t.Fatalf("containerd exited:\n%s", d.proc.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen on %s:\n%s", d.Socket, d.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// Output is containerd's log so far.
func (d *Containerd) Output() string { return d.proc.Output() }

// Ctr runs ctr against this containerd in the CRI plugin's namespace
// (k8s.io) and returns its combined output.
func (d *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", d.Socket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Import imports the OCI image archive at path (and unpacks it for the
// CRI plugin's snapshotter).
func (d *Containerd) Import(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.Ctr(ctx, "images", "import", path); err != nil {
		t.Fatal(err)
	}
}

// removeTasks kills and deletes every container still running (the
// pods a stopped kubelet left), so that no pod process or cgroup outlives
// the test.
func (d *Containerd) removeTasks() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.Ctr(ctx, "tasks", "ls", "-q")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		d.Ctr(ctx, "tasks", "rm", "-f", id)
	}
}

// killShims kills the runc shims whose command line names dir (their
// -address), found by their pid in /proc: never by a broad name.
func killShims(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// podNetns are the pod sandboxes' network namespaces the CRI plugin
// made (/run/netns/cni-<uuid>).
func podNetns() map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			m[filepath.Join("/run/netns", e.Name())] = true
		}
	}
	return m
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mounts")
	var ms []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			ms = append(ms, f[1])
		}
	}
	slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) })
	return ms
}
