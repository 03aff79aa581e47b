package kubernetes_test

// Against a real control plane (internal/testrig/kube: etcd,
// kube-apiserver, kube-controller-manager on 127.0.0.1): the bootstrap
// token flow, the pod watch under a node's own credential, and the agent
// that asks it at each CNI ADD.

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/bootstrap/kubernetes"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/testrig/kube"
)

var dryRun = metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

// applyManifest creates the manifest's RBAC for real (the watch needs
// it) and everything else with dryRun=All: the API server validates the
// DaemonSet and its service account as it would on kubectl apply.
func applyManifest(ctx context.Context, t *testing.T, cp *kube.ControlPlane) {
	t.Helper()
	objs := readManifest(t)
	c := cp.Admin
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Namespace:
			_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("manifest: %T %v", o, err)
		}
	}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, dryRun)
		case *appsv1.DaemonSet:
			_, err = c.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, dryRun)
		case *corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
		default:
			t.Fatalf("manifest: %T: the test does not create this kind yet", o)
		}
		if err != nil {
			t.Fatalf("manifest: dry run of %T: %v", o, err)
		}
	}
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestKubernetes(t *testing.T) {
	cp := kube.Start(t, kube.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	applyManifest(ctx, t, cp)

	t.Run("bootstrap", func(t *testing.T) { testBootstrap(ctx, t, cp) })
	t.Run("watch", func(t *testing.T) { testWatch(ctx, t, cp) })
	t.Run("agent", func(t *testing.T) { testAgent(ctx, t, cp) })
}

// The appliance's join: a bootstrap token and the CA's pinned hash give
// a node certificate signed by kube-controller-manager, kept 0600 in the
// state directory and reused at the next start; a wrong pin is refused
// before the token is sent.
func testBootstrap(ctx context.Context, t *testing.T, cp *kube.ControlPlane) {
	tok, err := cp.BootstrapToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	j := &config.KubernetesJoin{Server: cp.Server, Token: tok, CACertHashes: []string{cp.CAHash}}

	bad := *j
	bad.CACertHashes = []string{"sha256:" + strings.Repeat("0", 64)}
	if _, err := kubernetes.Credential(ctx, &bad, "boot1", t.TempDir(), logger(t)); err == nil ||
		!strings.Contains(err.Error(), "caCertHashes") {
		t.Fatalf("a wrong CA pin: %v, want a refusal naming caCertHashes", err)
	}

	start := time.Now()
	cfg, err := kubernetes.Credential(ctx, j, "boot1", state, logger(t))
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	t.Logf("figure: bootstrap flow (cluster-info, CSR, approved and signed by kube-controller-manager): %v", time.Since(start).Round(time.Millisecond))
	who, err := k8s.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the new credential: %v", err)
	}
	if u := who.Status.UserInfo; u.Username != "system:node:boot1" || !contains(u.Groups, "system:nodes") {
		t.Fatalf("the new credential is %s %v, want system:node:boot1 in system:nodes", u.Username, u.Groups)
	}
	kept := filepath.Join(state, "kubernetes", "kubelet.conf")
	fi, err := os.Stat(kept)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept credential %s: %v %v, want mode 0600", kept, fi, err)
	}
	csrs, err := cp.Admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A second start reuses the kept credential: no new CSR.
	if _, err := kubernetes.Credential(ctx, j, "boot1", state, logger(t)); err != nil {
		t.Fatalf("restart: %v", err)
	}
	again, err := cp.Admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Items) != len(csrs.Items) {
		t.Fatalf("a restart made a new CSR (%d, was %d): the kept credential was not reused", len(again.Items), len(csrs.Items))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// makePod creates a pod bound to node (no scheduler: spec.nodeName set).
func makePod(ctx context.Context, t *testing.T, cp *kube.ControlPlane, ns, name, node string, annotations map[string]string) {
	t.Helper()
	_, err := cp.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/pause:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, name, err)
	}
}

// The watch under node n1's own credential: a pod's network is its
// annotation, else its namespace's label, else the default; a pod on
// another node is not visible (the API server refuses it to n1).
func testWatch(ctx context.Context, t *testing.T, cp *kube.ControlPlane) {
	for ns, labels := range map[string]map[string]string{"w-labelled": {kubernetes.LabelNetwork: "leonardo"}, "w-plain": nil} {
		if err := cp.Namespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}
	makePod(ctx, t, cp, "w-labelled", "annotated", "n1", map[string]string{kubernetes.AnnotationNetwork: "nginx"})
	makePod(ctx, t, cp, "w-labelled", "labelled", "n1", nil)
	makePod(ctx, t, cp, "w-plain", "plain", "n1", nil)
	makePod(ctx, t, cp, "w-plain", "elsewhere", "n2", map[string]string{kubernetes.AnnotationNetwork: "nginx"})

	path, err := cp.NodeKubeconfig("n1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	w := kubernetes.NewWatch("n1", "dflt", logger(t))
	// Bounded: a watch that may not list (no field selector: forbidden)
	// never syncs, and the test says so instead of hanging.
	wctx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	start := time.Now()
	if err := w.Start(wctx, k8s.NewForConfigOrDie(cfg)); err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Logf("figure: informer sync (pods of n1, namespaces): %v", time.Since(start).Round(time.Millisecond))

	for _, c := range []struct{ ns, pod, want string }{
		{"w-labelled", "annotated", "nginx"},   // the annotation beats the namespace's label
		{"w-labelled", "labelled", "leonardo"}, // the namespace's label
		{"w-plain", "plain", "dflt"},           // the default
	} {
		got, err := w.PodNetwork(ctx, c.ns, c.pod)
		if err != nil || got != c.want {
			t.Errorf("PodNetwork(%s/%s) = %q, %v; want %q", c.ns, c.pod, got, err, c.want)
		}
	}
	if got, err := w.PodNetwork(ctx, "w-plain", "elsewhere"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("PodNetwork of n2's pod = %q, %v; want the API server's refusal (forbidden)", got, err)
	}

	// A pod created now: the ADD that follows it finds its network as
	// soon as the watch delivers it.
	makePod(ctx, t, cp, "w-labelled", "fresh", "n1", nil)
	start = time.Now()
	if got, err := w.PodNetwork(ctx, "w-labelled", "fresh"); err != nil || got != "leonardo" {
		t.Fatalf("PodNetwork(fresh) = %q, %v", got, err)
	}
	t.Logf("figure: pod created -> network resolved: %v", time.Since(start).Round(time.Microsecond))
}
