package kubernetes_test

// The rig of the kubelet test: the Weft lab (a reflector, node-a with
// the kubelet's pods, node-b with the static db endpoint), the control
// plane of package kube, containerd and a kubelet on node-a's side with
// `weft cni` as its network plugin. The scenario is kubelet_linux_test.go.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/containerd"
	"github.com/weftnet/weft/internal/testrig/kube"
	"github.com/weftnet/weft/internal/testrig/kubelet"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/podimage"
)

const klRR = "192.0.2.254"

var klConfig = template.Must(template.New("weft.yaml").Parse(`
bgp:
  asn: 64512
  connectRetry: 1
  holdTime: 9
  controllers: [{address: ` + klRR + `}]
overlay: {encapsulation: [{{.Encap}}]}
networks:
  - {name: nginx, vni: 300, routeTargets: {import: ["64512:300"], export: ["64512:300"]}, subnets: ["10.0.30.0/24"]}
  - {name: leonardo, vni: 100, routeTargets: {import: ["64512:100"], export: ["64512:100"]}, subnets: ["10.0.10.0/24"]}
  - {name: db, vni: 200, routeTargets: {import: ["64512:100", "64512:200"], export: ["64512:200", "64512:100"]}, subnets: ["10.0.100.0/24"]}
policies:
  - {from: nginx, to: leonardo, allow: [{protocol: tcp, ports: [8000]}]}
endpoints:
  - {name: pg1, network: db, address: 10.0.100.3/24, node: node-b, netns: {{.Prefix}}-pg1}
{{- if .Kubeconfig}}
join:
  kubernetes: {kubeconfig: {{.Kubeconfig}}}
{{- end}}
`))

// klRig is the whole test bed.
type klRig struct {
	l        *lab.Lab
	rr       *bgpd.Daemon
	a, b     *lab.Host
	pg1      *nettest.NS
	cp       *kube.ControlPlane
	ctd      *containerd.Containerd
	kubelet  *kubelet.Kubelet
	state    string // node-a's agent --state-dir
	prefix   string
	cfgA     string
	cfgB     string
	encap    string
	nodeName string
	// kubeconfig is node-a's credential, the kubelet's and the agent's.
	kubeconfig string
}

func newKubeletRig(t testing.TB, prefix string) *klRig {
	t.Helper()
	start := time.Now()
	r := &klRig{l: lab.New(t, prefix), prefix: prefix, state: t.TempDir(), encap: "mplsoudp", nodeName: "node-a"}
	// The control plane first: a missing build skips before any namespace.
	r.cp = kube.Start(t, kube.Options{})
	rrHost := r.l.Host(t, "rr", klRR)
	r.rr = bgpd.Start(t, rrHost.NS, bgpd.Config{Kind: bgpd.FRR, ASN: 64512, RouterID: netip.MustParseAddr(klRR),
		Listen: netip.MustParseAddr(klRR), Clients: []bgpd.Client{{Address: netip.MustParseAddr("192.0.2.1")}, {Address: netip.MustParseAddr("192.0.2.2")}},
		HoldTime: 9 * time.Second, RestartTime: 60 * time.Second})
	r.pg1 = r.l.Endpoint(t, "pg1")
	r.a = r.l.Host(t, r.nodeName, "192.0.2.1")
	r.b = r.l.Host(t, "node-b", "192.0.2.2")
	var err error
	if r.kubeconfig, err = r.cp.NodeKubeconfig(r.nodeName); err != nil {
		t.Fatal(err)
	}
	forwardAPI(t, r.a.NS, r.cp.Server)
	r.namespaceReader(t)
	r.writeConfigs(t)
	r.a.StartVRouter(t)
	r.b.StartVRouter(t)
	r.startAgent(t, r.a)
	r.startAgent(t, r.b)

	// `weft cni install` as a node's operator runs it; containerd's CRI
	// plugin reads what it wrote. containerd 1.6 reads CNI results up to
	// 1.0.0 only: with the default 1.1.0 every sandbox fails ("unsupported
	// CNI result version 1.1.0").
	cniBin, cniConf := t.TempDir(), t.TempDir()
	out, err := exec.Command(lab.Binary(t), "cni", "install", "--bin-dir", cniBin, "--conf-dir", cniConf,
		"--network", "nginx", "--agent-socket", r.a.AgentSocket, "--cni-version", "1.0.0").CombinedOutput()
	if err != nil {
		t.Fatalf("weft cni install: %v\n%s", err, out)
	}
	r.ctd = containerd.Start(t, containerd.Config{CNIBinDir: cniBin, CNIConfDir: cniConf, SandboxImage: podimage.Pause.Ref})
	images := t.TempDir()
	prog, err := podimage.BuildProgram(images)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range []podimage.Image{podimage.Pause, podimage.Server} {
		p := filepath.Join(images, fmt.Sprintf("image%d.tar", i))
		if err := podimage.Archive(p, prog, img); err != nil {
			t.Fatal(err)
		}
		r.ctd.Import(t, p)
	}
	r.kubelet = kubelet.Start(t, r.cp, r.nodeName, r.ctd.Socket)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd output (tail):\n%s", klTail(r.ctd.Output(), 4000))
		}
	})
	t.Logf("rig up in %v: control plane, lab, containerd, kubelet (node %s Ready)", time.Since(start).Round(time.Millisecond), r.nodeName)
	return r
}

func (r *klRig) writeConfigs(t testing.TB) {
	t.Helper()
	var b bytes.Buffer
	if err := klConfig.Execute(&b, map[string]string{"Encap": r.encap, "Prefix": r.prefix}); err != nil {
		t.Fatal(err)
	}
	r.cfgB = r.l.WriteFile(t, "node-b.yaml", b.String())
	// node-a is a Kubernetes node: its agent watches its pods with the
	// kubelet's own credential.
	b.Reset()
	if err := klConfig.Execute(&b, map[string]string{"Encap": r.encap, "Prefix": r.prefix, "Kubeconfig": r.kubeconfig}); err != nil {
		t.Fatal(err)
	}
	r.cfgA = r.l.WriteFile(t, "node-a.yaml", b.String())
}

// namespaceReader lets nodes read namespaces (their labels choose a pod's
// network), as deploy/kubernetes/weft.yaml's ClusterRole does.
func (r *klRig) namespaceReader(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rbac := r.cp.Admin.RbacV1()
	_, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "weft:namespace-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("ClusterRole: %v", err)
	}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "weft:namespace-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "weft:namespace-reader"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:nodes"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("ClusterRoleBinding: %v", err)
	}
}

func (r *klRig) startAgent(t testing.TB, h *lab.Host) {
	t.Helper()
	if h == r.a {
		h.StartAgent(t, r.cfgA, "--bgp-port", "-1", "--state-dir", r.state)
		return
	}
	h.StartAgent(t, r.cfgB, "--bgp-port", "-1")
}

// pod creates a pod on node-a running podbin serve on ports 8000 and 9000.
func (r *klRig) pod(t testing.TB, ns, name string, annotations map[string]string) {
	t.Helper()
	no := false
	grace := int64(1)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeName:                      r.nodeName, // no scheduler runs: the pod is bound at creation
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "srv", Image: podimage.Server.Ref, ImagePullPolicy: corev1.PullNever,
				Args: []string{"serve", "8000", "9000"}}}, // Args replace the image's Cmd (serve)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, err := r.cp.Admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err == nil {
			return
		}
		// A new namespace's default service account comes from the
		// controller manager a moment later; admission waits for it.
		if !strings.Contains(err.Error(), "serviceaccount") || ctx.Err() != nil {
			t.Fatalf("create pod %s/%s: %v", ns, name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// running waits until the pod runs and returns its IP and its Weft
// attachment on node-a (found by namespace/name).
func (r *klRig) running(t testing.TB, ns, name string) (string, agentapi.Attachment) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, err := r.cp.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		cancel()
		if err == nil {
			last = p
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				if att, ok := r.attachment(t, ns, name); ok {
					return p.Status.PodIP, att
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("pod %s/%s not running with a Weft attachment after 2 min: %+v\nattachments: %+v", ns, name, last, r.attachments(t))
	return "", agentapi.Attachment{}
}

func (r *klRig) attachments(t testing.TB) []agentapi.Attachment {
	t.Helper()
	atts, err := r.a.AgentAPI.Attachments()
	if err != nil {
		t.Fatalf("attachments: %v", err)
	}
	return atts
}

func (r *klRig) attachment(t testing.TB, ns, name string) (agentapi.Attachment, bool) {
	t.Helper()
	for _, a := range r.attachments(t) {
		if a.PodNamespace == ns && a.PodName == name {
			return a, true
		}
	}
	return agentapi.Attachment{}, false
}

// klDial connects to addr from inside the network namespace at path.
func klDial(path, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := nsexec.Do(path, func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return })
	return c, err
}

// klEcho sends a line through c and reads it back.
func klEcho(c net.Conn, line string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line); err != nil {
		return err
	}
	got := make([]byte, len(line))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != line {
		return fmt.Errorf("echo: %q, want %q", got, line)
	}
	return nil
}

// forwardAPI makes the API server (127.0.0.1:port of the test's own
// namespace) reachable at the same address inside ns, so that the node's
// kubeconfig works for the agent there: a listener opened inside ns, each
// connection relayed by the test process from its own namespace.
func forwardAPI(t testing.TB, ns *nettest.NS, server string) {
	t.Helper()
	addr := strings.TrimPrefix(server, "https://")
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
				io.Copy(in, out)
			}()
		}
	}()
}

func klTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
