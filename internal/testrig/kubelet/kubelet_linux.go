// Package kubelet runs a real kubelet (built by make kube-bins beside
// the control plane of package kube) on the test machine: its node's own
// credential, a static config file, the test's containerd as its
// runtime. What this machine needs is set in Config below and written
// down in docs/DESIGN.md ("Notes for tests"): cgroup v1 (failCgroupV1:
// false), the cgroupfs driver without per-QoS cgroups, no swap check.
//
// The kubelet sets six kernel sysctls when it starts (vm.overcommit_memory,
// vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
// kernel.keys.root_maxkeys, kernel.keys.root_maxbytes); Start puts the
// machine's values back when the test ends.
package kubelet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/testrig/daemon"
	"github.com/weftnet/weft/internal/testrig/kube"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// Kubelet is a running kubelet.
type Kubelet struct {
	Node string
	Dir  string
	proc *daemon.Process
}

// config is the KubeletConfiguration; {{…}} are filled by Start.
const config = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid); 1.34 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
# No kubepods hierarchy: the pods' cgroups are containerd's defaults.
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://{{runtime}}
address: 127.0.0.1
port: {{port}}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {{healthz}}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: {{ca}}}
authorization: {mode: AlwaysAllow}
podLogsDir: {{dir}}/logs
# No disk-pressure eviction or image GC on a shared test machine.
evictionHard: {"memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
registerNode: true
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
resolvConf: ""
`

// tunables are the sysctls the kubelet changes at start (see the
// package comment).
var tunables = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// Start runs the kubelet of node against cp with the CRI socket runtime,
// and waits until its Node is Ready (the runtime's network included: the
// CNI config must be installed). It is stopped when t ends.
func Start(t testing.TB, cp *kube.ControlPlane, node, runtime string) *Kubelet {
	t.Helper()
	testenv.RequireRoot(t)
	bin, err := kube.BinDir()
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	restore := saveTunables(t)
	dir, err := os.MkdirTemp("", "weft-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.NodeKubeconfig(node)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("{{runtime}}", runtime, "{{port}}", strconv.Itoa(ports[0]), "{{healthz}}", strconv.Itoa(ports[1]),
		"{{ca}}", cp.CAFile, "{{dir}}", dir)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(r.Replace(config)), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &Kubelet{Node: node, Dir: dir}
	proc, err := daemon.Start(exec.Command(filepath.Join(bin, "kubelet"), "--config", cfg, "--kubeconfig", kubeconfig,
		"--hostname-override", node, "--root-dir", filepath.Join(dir, "root"),
		"--cert-dir", filepath.Join(dir, "pki"), "--v", "2"))
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	k.proc = proc
	t.Cleanup(func() {
		k.proc.Kill(unix.SIGTERM)
		restore()
		if t.Failed() {
			t.Logf("kubelet output (tail):\n%s", tail(k.proc.Output(), 6000))
		}
		unmountUnder(dir)
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		n, err := cp.Admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil && ready(n) {
			return k
		}
		select {
		case <-k.proc.Done():
			t.Fatalf("kubelet exited:\n%s", tail(k.proc.Output(), 6000))
		case <-ctx.Done():
			t.Fatalf("node %s not Ready after 2 min (%v, %+v):\n%s", node, err, conditions(n), tail(k.proc.Output(), 6000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func conditions(n *corev1.Node) []corev1.NodeCondition {
	if n == nil {
		return nil
	}
	return n.Status.Conditions
}

// saveTunables reads the sysctls the kubelet changes and returns what
// writes them back.
func saveTunables(t testing.TB) func() {
	t.Helper()
	saved := map[string][]byte{}
	for _, s := range tunables {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil {
			t.Fatalf("sysctl %s: %v", s, err)
		}
		saved[s] = b
	}
	return func() {
		for s, b := range saved {
			if err := os.WriteFile("/proc/sys/"+s, b, 0o644); err != nil {
				t.Errorf("restoring sysctl %s: %v", s, err)
			}
		}
	}
}

// unmountUnder detaches what the kubelet left mounted under dir (pod
// volumes' tmpfs), deepest first, so that the directory can go.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var under []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			under = append(under, f[4])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		syscall.Unmount(under[i], syscall.MNT_DETACH)
	}
}

func freePorts(n int) ([]int, error) {
	var ps []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ps = append(ps, l.Addr().(*net.TCPAddr).Port)
	}
	return ps, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
