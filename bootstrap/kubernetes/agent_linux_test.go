package kubernetes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/bootstrap/kubernetes"
	"github.com/weftnet/weft/internal/testrig/kube"
	"github.com/weftnet/weft/internal/testrig/lab"
)

const agentYAML = `
node: {routerID: 192.0.2.1}
bgp:
  asn: 64512
  connectRetry: 1
  controllers: [{address: 192.0.2.254}]
overlay: {encapsulation: [mplsoudp]}
networks:
  - {name: nginx, vni: 200, routeTargets: {import: ["64512:200"], export: ["64512:200"]}, subnets: ["10.0.20.0/24"]}
  - {name: leonardo, vni: 100, routeTargets: {import: ["64512:100"], export: ["64512:100"]}, subnets: ["10.0.10.0/24"]}
  - {name: dflt, vni: 400, routeTargets: {import: ["64512:400"], export: ["64512:400"]}, subnets: ["10.0.40.0/24"]}
  - {name: web, vni: 300, routeTargets: {import: ["64512:300"], export: ["64512:300"]}, subnets: ["10.0.30.0/24"]}
join:
  kubernetes: {kubeconfig: %s, defaultNetwork: dflt}
`

// agentProc is `weft agent` in the test's own namespace, where the API
// server's loopback address is (the vRouter runs in a lab host).
type agentProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command(lab.Binary(t), append([]string{"agent"}, args...)...), out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("agent output:\n%s", p.out)
		}
	})
	return p
}

func (p *agentProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// eventually polls f every 100 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The agent with join.kubernetes, driven by CNI as a kubelet drives it:
// each ADD names the pod (K8S_POD_NAMESPACE, K8S_POD_NAME) and the agent
// puts it on the network its annotation, its namespace's label or the
// default names (never the conflist's, while one of those names one);
// `weft ctl endpoints` shows the pod; a pod deleted while the agent was
// down loses its endpoint and its interface at the next start.
func testAgent(ctx context.Context, t *testing.T, cp *kube.ControlPlane) {
	l := lab.New(t, "wk8s")
	h := l.Host(t, "a", "192.0.2.1")
	h.StartVRouter(t)
	for ns, labels := range map[string]map[string]string{"a-labelled": {kubernetes.LabelNetwork: "leonardo"}, "a-plain": nil} {
		if err := cp.Namespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}
	makePod(ctx, t, cp, "a-labelled", "annotated", "n3", map[string]string{kubernetes.AnnotationNetwork: "nginx"})
	makePod(ctx, t, cp, "a-labelled", "labelled", "n3", nil)
	makePod(ctx, t, cp, "a-plain", "plain", "n3", nil)
	kc, err := cp.NodeKubeconfig("n3")
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.WriteFile(t, "weft.yaml", fmt.Sprintf(agentYAML, kc))
	sock, state := filepath.Join(t.TempDir(), "agent.sock"), t.TempDir()
	bin, conf := t.TempDir(), t.TempDir()
	if out, err := exec.Command(lab.Binary(t), "cni", "install", "--bin-dir", bin, "--conf-dir", conf,
		"--network", "web", "--agent-socket", sock).CombinedOutput(); err != nil {
		t.Fatalf("weft cni install: %v\n%s", err, out)
	}
	list, err := libcni.ConfListFromFile(filepath.Join(conf, "10-weft.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{bin}, t.TempDir(), nil)
	args := []string{"--config", cfg, "--hostname", "n3", "--vrouter-socket", h.Socket, "--api-socket", sock,
		"--bgp-port", "-1", "--state-dir", state}
	agent := startAgent(t, args...)
	api := agentapi.NewClient(sock)
	eventually(t, 30*time.Second, "the agent's API", func() bool { _, err := api.Status(); return err == nil })

	pods := map[string]*libcni.RuntimeConf{}
	for _, c := range []struct{ ns, pod, want string }{
		{"a-labelled", "annotated", "nginx"},
		{"a-labelled", "labelled", "leonardo"},
		{"a-plain", "plain", "dflt"},
	} {
		netns := l.Endpoint(t, c.pod)
		rt := &libcni.RuntimeConf{ContainerID: "ctr-" + c.pod, NetNS: netns.Path(), IfName: "eth0",
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", c.ns}, {"K8S_POD_NAME", c.pod}}}
		pods[c.pod] = rt
		start := time.Now()
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			t.Fatalf("ADD %s/%s: %v\nagent:\n%s", c.ns, c.pod, err, agent.out)
		}
		t.Logf("figure: CNI ADD of %s/%s (watch resolve + vRouter port): %v", c.ns, c.pod, time.Since(start).Round(time.Millisecond))
		r, err := types100.NewResultFromResult(res)
		if err != nil {
			t.Fatal(err)
		}
		att, err := api.Attachment(agentapi.AttachmentKey{ContainerID: rt.ContainerID, IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		if att.Network != c.want || att.PodNamespace != c.ns || att.PodName != c.pod {
			t.Errorf("%s/%s attached to %q as %s/%s, want %q", c.ns, c.pod, att.Network, att.PodNamespace, att.PodName, c.want)
		}
		t.Logf("%s/%s: %s %v", c.ns, c.pod, att.Network, r.IPs[0].Address.String())
	}
	for _, m := range regexp.MustCompile(`pod network resolved.* took=(\S+)`).FindAllStringSubmatch(agent.out.String(), -1) {
		t.Logf("figure: ADD -> network resolved (agent): %s", m[1])
	}
	out, err := exec.Command(lab.Binary(t), "ctl", "endpoints", "--agent", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "a-labelled/annotated") || !strings.Contains(string(out), "a-plain/plain") {
		t.Fatalf("weft ctl endpoints: %v\n%s\nwant the pods' namespace/name", err, out)
	}

	// Deleted while the agent is down: gone at the next start.
	agent.stop()
	zero := int64(0)
	if err := cp.Admin.CoreV1().Pods("a-plain").Delete(ctx, "plain", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	agent = startAgent(t, args...)
	gone := agentapi.AttachmentKey{ContainerID: "ctr-plain", IfName: "eth0"}
	eventually(t, time.Minute, "the vanished pod's attachment removed", func() bool {
		_, err := api.Attachment(gone)
		var se *agentapi.StatusError
		return err != nil && errors.As(err, &se) && se.Code == 404
	})
	eps, err := api.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eps {
		if e.PodName == "plain" {
			t.Fatalf("the vanished pod's endpoint %s is still there", e.Name)
		}
	}
	if _, err := api.Attachment(agentapi.AttachmentKey{ContainerID: "ctr-annotated", IfName: "eth0"}); err != nil {
		t.Fatalf("a pod that still exists lost its attachment: %v", err)
	}
	// Its interface goes with the vRouter's port (once the restarted
	// agent deletes, after BGP's sync timeout: no controller answers here).
	plainNS := pods["plain"].NetNS
	eventually(t, 2*time.Minute, "the vanished pod's interface removed", func() bool {
		out, err := exec.Command("ip", "-n", filepath.Base(plainNS), "link", "show", "eth0").CombinedOutput()
		return err != nil && strings.Contains(string(out), "does not exist")
	})
	if !strings.Contains(agent.out.String(), "detached a pod that vanished") {
		t.Errorf("the agent did not say it detached the vanished pod")
	}
}
