// Package kube runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-controller-manager on 127.0.0.1 (free ports),
// built at the pin of the tools module beside it (make kube-bins). It
// mints the PKI, writes an admin kubeconfig, creates what a kubeadm
// cluster has for node bootstrap (a bootstrap token's RBAC, the
// kube-public/cluster-info ConfigMap), mints node credentials and stops
// every process it started by its PID when the test ends.
package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// Pin is the Kubernetes version the tools module builds.
const Pin = "v1.34.4"

// startWait bounds each server's start (etcd, /readyz, the controllers'
// first service account) on a loaded 2-core machine.
const startWait = 90 * time.Second

// ControlPlane is a running etcd + kube-apiserver (+ kube-controller-manager).
type ControlPlane struct {
	// Dir holds the PKI, the kubeconfigs, etcd's data and the logs.
	Dir string
	// Server is the API server's URL (https://127.0.0.1:PORT).
	Server string
	// CAFile is the cluster CA's certificate (PEM); CAHash its
	// SubjectPublicKeyInfo hash, kubeadm's caCertHashes entry.
	CAFile string
	CAHash string
	// AdminKubeconfig is a system:masters credential; Admin its client.
	AdminKubeconfig string
	Admin           *kubernetes.Clientset

	ca    *ca
	procs []*exec.Cmd
}

// Options shape a control plane.
type Options struct {
	// NoControllerManager leaves kube-controller-manager out: nothing then
	// approves or signs CSRs nor creates service accounts.
	NoControllerManager bool
}

// BinDir is where make kube-bins put the binaries for the tools module's
// current pin ($WEFT_KUBE_BIN, else $WEFT_CACHE/kube/<pin>), or an error
// that says how to build them.
func BinDir() (string, error) {
	dir := os.Getenv("WEFT_KUBE_BIN")
	if dir == "" {
		cache := os.Getenv("WEFT_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("neither WEFT_KUBE_BIN nor WEFT_CACHE is set and there is no home: %w", err)
			}
			cache = filepath.Join(home, ".cache", "weft")
		}
		dir = filepath.Join(cache, "kube", Pin)
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubelet"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s: not built (run make kube-bins, ~10-15 min once): %w", b, err)
		}
	}
	want, err := stamp()
	if err != nil {
		return "", err
	}
	got, _ := os.ReadFile(filepath.Join(dir, ".stamp"))
	if strings.TrimSpace(string(got)) != want {
		return "", fmt.Errorf("%s was built from another pin of internal/testrig/kube/tools (stamp %q, want %q): run make kube-bins",
			dir, strings.TrimSpace(string(got)), want)
	}
	return dir, nil
}

// stamp is build.sh's: the first 16 hex digits of the SHA-256 of the
// tools module's go.mod, go.sum and etcd main.
func stamp() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("kube: cannot find the tools module beside the rig")
	}
	tools := filepath.Join(filepath.Dir(self), "tools")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "cmd/etcd/main.go"} {
		b, err := os.ReadFile(filepath.Join(tools, f))
		if err != nil {
			return "", fmt.Errorf("kube: tools module: %w", err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Start runs a control plane for t and stops it when t ends. A missing
// build skips t (fails it under CI).
func Start(t testing.TB, opt Options) *ControlPlane {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	cp := &ControlPlane{Dir: t.TempDir()}
	t.Cleanup(func() {
		cp.Stop()
		if t.Failed() {
			for _, l := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
				b, _ := os.ReadFile(filepath.Join(cp.Dir, l+".log"))
				t.Logf("%s log (tail):\n%s", l, tail(b, 3000))
			}
		}
	})
	start := time.Now()
	if err := cp.start(bin, opt); err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Logf("control plane %s up in %v (%s)", Pin, time.Since(start).Round(time.Millisecond), cp.Server)
	return cp
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	var ps []int
	for range n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (cp *ControlPlane) start(bin string, opt Options) error {
	var err error
	if cp.ca, err = newCA(); err != nil {
		return err
	}
	pki := filepath.Join(cp.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writePKI(pki, cp.ca); err != nil {
		return err
	}
	cp.CAFile, cp.CAHash = filepath.Join(pki, "ca.crt"), cp.ca.hash()
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cp.Server = fmt.Sprintf("https://127.0.0.1:%d", ports[2])

	if err := cp.run(bin, "etcd", "--name=weft", "--data-dir="+filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=weft="+etcdPeer, "--quota-backend-bytes=1073741824", "--log-level=warn"); err != nil {
		return err
	}
	if err := cp.run(bin, "kube-apiserver", "--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--client-ca-file="+cp.CAFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"), "--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=Node,RBAC", "--enable-bootstrap-token-auth",
		"--enable-admission-plugins=NodeRestriction", "--allow-privileged=true", "--profiling=false",
		// Without it the API server loops on its loopback endpoint.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(cp.Dir, "apiserver-certs")); err != nil {
		return err
	}
	cp.AdminKubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := cp.writeClientKubeconfig(cp.AdminKubeconfig, "weft-admin", []string{"system:masters"}); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	if cp.Admin, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	if err := cp.waitReady(ctx); err != nil {
		return err
	}
	if err := cp.bootstrapObjects(ctx); err != nil {
		return err
	}
	if opt.NoControllerManager {
		return nil
	}
	kcm := filepath.Join(cp.Dir, "kcm.kubeconfig")
	if err := cp.writeClientKubeconfig(kcm, "system:kube-controller-manager", nil); err != nil {
		return err
	}
	if err := cp.run(bin, "kube-controller-manager", "--kubeconfig="+kcm,
		"--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[3]), "--leader-elect=false",
		// With false, the CSR approver is Forbidden to approve.
		"--use-service-account-credentials=true",
		"--controllers=csrapproving,csrsigning,csrcleaner,serviceaccount,serviceaccount-token,bootstrapsigner,tokencleaner,namespace",
		"--cluster-signing-cert-file="+cp.CAFile, "--cluster-signing-key-file="+filepath.Join(pki, "ca.key"),
		"--root-ca-file="+cp.CAFile, "--service-account-private-key-file="+filepath.Join(pki, "sa.key")); err != nil {
		return err
	}
	// The controllers work once the default namespace's service account
	// exists (the serviceaccount controller made it).
	for {
		_, err := cp.Admin.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if err := cp.alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-controller-manager: no default service account after %v: %w", startWait, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (cp *ControlPlane) waitReady(ctx context.Context) error {
	for {
		body, err := cp.Admin.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
			return nil
		}
		if aerr := cp.alive(); aerr != nil {
			return aerr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver: not ready after %v: %v", startWait, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// run starts one server, its output in Dir/<name>.log. It dies with the
// test binary (Pdeathsig) if Stop never runs.
func (cp *ControlPlane) run(bin, name string, args ...string) error {
	log, err := os.Create(filepath.Join(cp.Dir, name+".log"))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	log.Close()
	cp.procs = append(cp.procs, cmd)
	go cmd.Wait() //nolint:errcheck // alive reads ProcessState
	return nil
}

// alive fails when a server has exited, naming it and its log.
func (cp *ControlPlane) alive() error {
	for _, c := range cp.procs {
		if c.Process.Signal(syscall.Signal(0)) != nil {
			name := filepath.Base(c.Path)
			b, _ := os.ReadFile(filepath.Join(cp.Dir, name+".log"))
			return fmt.Errorf("%s exited:\n%s", name, tail(b, 2000))
		}
	}
	return nil
}

// Stop ends the servers it started, by PID, newest first: SIGTERM, then
// SIGKILL after 5 s.
func (cp *ControlPlane) Stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i].Process
		if p.Signal(syscall.SIGTERM) != nil {
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && p.Signal(syscall.Signal(0)) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		_ = p.Kill()
	}
	cp.procs = nil
}

// writeClientKubeconfig writes a kubeconfig for a client certificate the
// CA signs (CN user, O groups), everything embedded.
func (cp *ControlPlane) writeClientKubeconfig(path, user string, groups []string) error {
	cert, key, err := cp.ca.issue(user, groups, nil, nil)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["weft"] = &clientcmdapi.Cluster{Server: cp.Server, CertificateAuthorityData: cp.ca.pem}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["weft"] = &clientcmdapi.Context{Cluster: "weft", AuthInfo: user}
	cfg.CurrentContext = "weft"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return nil
}

// NodeKubeconfig mints node's own credential (CN system:node:<node>, O
// system:nodes), as the kubelet of an ordinary node has it, and returns
// the kubeconfig's path.
func (cp *ControlPlane) NodeKubeconfig(node string) (string, error) {
	path := filepath.Join(cp.Dir, "node-"+node+".kubeconfig")
	return path, cp.writeClientKubeconfig(path, "system:node:"+node, []string{"system:nodes"})
}

// Namespace creates a namespace with labels, for a test's pods.
func (cp *ControlPlane) Namespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := cp.Admin.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}
