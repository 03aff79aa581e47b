package cni_test

// `weft cni` driven as a container runtime drives it: the reference
// library (libcni) runs the installed binary through the installed
// conflist against a real `weft agent` and `weft vrouter` in a host
// namespace; pods are namespaces made by `ip netns add`.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
)

const weftYAML = `
bgp:
  asn: 64512
  connectRetry: 1
  controllers: [{address: 192.0.2.254}]
overlay: {encapsulation: [mplsoudp]}
networks:
  - {name: leonardo, vni: 100, routeTargets: {import: ["64512:100"], export: ["64512:100"]}, subnets: ["10.0.10.0/24", "fd00:10::/64"]}
  - {name: web, vni: 300, routeTargets: {import: ["64512:300"], export: ["64512:300"]}, subnets: ["10.0.30.0/24"]}
  - {name: churn, vni: 400, routeTargets: {import: ["64512:400"], export: ["64512:400"]}, subnets: ["10.0.40.0/26"]}
`

// rig is one host with vRouter and agent, and the plugin installed.
type rig struct {
	l          *lab.Lab
	h          *lab.Host
	cfg, state string
	bin, conf  string
	list       *libcni.NetworkConfigList
	cni        *libcni.CNIConfig
}

func newRig(t testing.TB, prefix string) *rig {
	l := lab.New(t, prefix)
	r := &rig{l: l, h: l.Host(t, "a", "192.0.2.1"), state: t.TempDir(), bin: t.TempDir()}
	r.cfg = l.WriteFile(t, "weft.yaml", weftYAML)
	conf := t.TempDir()
	r.conf = conf
	out, err := exec.Command(lab.Binary(t), "cni", "install", "--bin-dir", r.bin, "--conf-dir", conf,
		"--network", "leonardo", "--agent-socket", r.h.AgentSocket).CombinedOutput()
	if err != nil {
		t.Fatalf("weft cni install: %v\n%s", err, out)
	}
	if r.list, err = libcni.ConfListFromFile(filepath.Join(conf, "10-weft.conflist")); err != nil {
		t.Fatal(err)
	}
	r.cni = libcni.NewCNIConfigWithCacheDir([]string{r.bin}, t.TempDir(), nil)
	return r
}

func (r *rig) startAgent(t testing.TB, stateDir bool) {
	args := []string{"--bgp-port", "-1"}
	if stateDir {
		args = append(args, "--state-dir", r.state)
	}
	r.h.StartAgent(t, r.cfg, args...)
}

// pod is a pod's sandbox and what CNI says of it.
type pod struct {
	ns *nettest.NS
	rt *libcni.RuntimeConf
}

func (r *rig) pod(t testing.TB, name string, args ...[2]string) *pod {
	ns := r.l.Endpoint(t, name)
	rt := &libcni.RuntimeConf{ContainerID: "ctr-" + name, NetNS: ns.Path(), IfName: "eth0",
		Args: append([][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", name}}, args...)}
	return &pod{ns: ns, rt: rt}
}

func (r *rig) add(t *testing.T, p *pod) *types100.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.cni.AddNetworkList(ctx, r.list, p.rt)
	if err != nil {
		t.Fatalf("ADD %s: %v\nagent:\n%s", p.rt.ContainerID, err, r.h.Agent.Output())
	}
	out, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatalf("ADD %s: result: %v", p.rt.ContainerID, err)
	}
	return out
}

// cniErr is the spec error of a libcni call.
func cniErr(t *testing.T, what string, err error) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: %v, want a CNI error", what, err)
	}
	if e.Msg == "" {
		t.Fatalf("%s: an error without msg: %+v", what, e)
	}
	return e
}

func addrOf(res *types100.Result, v6 bool) netip.Addr {
	for _, ip := range res.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		if a = a.Unmap(); a.Is6() == v6 {
			return a
		}
	}
	return netip.Addr{}
}

func TestCNI(t *testing.T) {
	r := newRig(t, "wcni")
	ctx := context.Background()
	r.h.StartVRouter(t)

	// STATUS before the agent is up: not available, and says so.
	err := r.cni.GetStatusNetworkList(ctx, r.list)
	if e := cniErr(t, "STATUS without an agent", err); e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Details, "weft agent") {
		t.Fatalf("STATUS without an agent: %+v", e)
	}
	r.startAgent(t, true)
	if err := r.cni.GetStatusNetworkList(ctx, r.list); err != nil {
		t.Fatalf("STATUS: %v", err)
	}

	p1, p2 := r.pod(t, "p1"), r.pod(t, "p2")
	start := time.Now()
	res1 := r.add(t, p1)
	t.Logf("ADD through libcni, agent and vRouter: %v", time.Since(start))
	res2 := r.add(t, p2)
	t.Logf("p1: %v", res1)
	for _, res := range []*types100.Result{res1, res2} {
		if res.CNIVersion != "1.1.0" || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Mac == "" ||
			res.Interfaces[0].Sandbox == "" || len(res.IPs) != 2 || len(res.Routes) != 2 || *res.IPs[0].Interface != 0 || res.IPs[0].Gateway == nil {
			t.Fatalf("result: %+v", res)
		}
	}
	a1, a2 := addrOf(res1, false), addrOf(res2, false)
	if a1 == a2 || !netip.MustParsePrefix("10.0.10.0/24").Contains(a1) || !addrOf(res1, true).Is6() {
		t.Fatalf("addresses %v %v", a1, a2)
	}
	// The interface is there under CNI's name, with the result's MAC.
	link := p1.ns.Run(t, "ip", "-o", "link", "show", "eth0")
	if !strings.Contains(link, res1.Interfaces[0].Mac) {
		t.Fatalf("eth0 in p1: %s, want MAC %s", link, res1.Interfaces[0].Mac)
	}
	// The two pods reach each other through the vRouter, both families.
	p1.ns.Run(t, "ping", "-c", "2", "-W", "5", a2.String())
	p2.ns.Run(t, "ping", "-6", "-c", "2", "-W", "5", addrOf(res1, true).String())

	if err := r.cni.CheckNetworkList(ctx, r.list, p1.rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	eps, err := r.h.AgentAPI.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(eps, func(e agentapi.Endpoint) bool { return e.ContainerID == "ctr-p1" })
	if i < 0 || eps[i].IfName != "eth0" || eps[i].PodNamespace != "default" || eps[i].PodName != "p1" || eps[i].Source != "cni" ||
		eps[i].Address != netip.PrefixFrom(a1, 24).String() {
		t.Fatalf("endpoints: %+v", eps)
	}
	out, err := exec.Command(lab.Binary(t), "ctl", "endpoints", "--agent", r.h.AgentSocket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ctr-p1") || !strings.Contains(string(out), "default/p1") {
		t.Fatalf("weft ctl endpoints: %v\n%s", err, out)
	}

	// A repeated ADD is refused, with what to do.
	_, err = r.cni.AddNetworkList(ctx, r.list, p1.rt)
	if e := cniErr(t, "repeated ADD", err); e.Code != 100 || !strings.Contains(e.Details, "DEL") {
		t.Fatalf("repeated ADD: %+v", e)
	}

	// CHECK after the interface was deleted behind CNI's back fails.
	p2.ns.Run(t, "ip", "link", "del", "eth0")
	err = r.cni.CheckNetworkList(ctx, r.list, p2.rt)
	if e := cniErr(t, "CHECK of a deleted interface", err); e.Code != 101 {
		t.Fatalf("CHECK of a deleted interface: %+v", e)
	}

	// DEL removes; DEL again succeeds.
	if err := r.cni.DelNetworkList(ctx, r.list, p2.rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if err := r.cni.DelNetworkList(ctx, r.list, p2.rt); err != nil {
		t.Fatalf("DEL again: %v", err)
	}
	if atts, _ := r.h.AgentAPI.Attachments(); len(atts) != 1 || atts[0].ContainerID != "ctr-p1" {
		t.Fatalf("after DEL: %+v", atts)
	}

	// GC with p1 valid removes p3, keeps p1.
	p3 := r.pod(t, "p3", [2]string{"weft.network", "web"})
	res3 := r.add(t, p3)
	if a := addrOf(res3, false); !netip.MustParsePrefix("10.0.30.0/24").Contains(a) || addrOf(res3, true).IsValid() {
		t.Fatalf("CNI_ARGS weft.network=web: %v", res3)
	}
	err = r.cni.GCNetworkList(ctx, r.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "ctr-p1", IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if atts, _ := r.h.AgentAPI.Attachments(); len(atts) != 1 || atts[0].ContainerID != "ctr-p1" {
		t.Fatalf("after GC: %+v", atts)
	}
	if _, err := p3.ns.Try(5*time.Second, "ip", "link", "show", "eth0"); err == nil {
		t.Fatal("GC left p3's interface")
	}

	// STATUS with the agent up but its vRouter gone: not available.
	r.h.VRouter.Kill(unix.SIGKILL)
	err = r.cni.GetStatusNetworkList(ctx, r.list)
	if e := cniErr(t, "STATUS without a vRouter", err); e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Details, "weft vrouter") {
		t.Fatalf("STATUS without a vRouter: %+v", e)
	}
}

// The IPAM hands out no address twice across agent restarts (kill -9),
// with pods still attached: with the state file, and on a diskless node
// where the attachments are rebuilt from the vRouter's ports.
func TestCNIRestart(t *testing.T) {
	r := newRig(t, "wcnr")
	r.h.StartVRouter(t)
	r.startAgent(t, true)
	held := map[netip.Addr]string{}
	hold := func(p *pod) {
		res := r.add(t, p)
		for _, v6 := range []bool{false, true} {
			a := addrOf(res, v6)
			if who, ok := held[a]; ok {
				t.Fatalf("%s got %v, which %s holds", p.rt.ContainerID, a, who)
			}
			held[a] = p.rt.ContainerID
		}
	}
	p1, p2 := r.pod(t, "p1"), r.pod(t, "p2")
	hold(p1)
	hold(p2)
	restart := func(stateDir bool) {
		r.h.Agent.Kill(unix.SIGKILL)
		r.startAgent(t, stateDir)
	}
	restart(false) // diskless: rebuilt from the vRouter
	hold(r.pod(t, "p3"))
	restart(true) // the state file, which lacks p3: adopted from the vRouter
	hold(r.pod(t, "p4"))
	atts, _ := r.h.AgentAPI.Attachments()
	if len(atts) != 4 {
		t.Fatalf("attachments after restarts: %+v", atts)
	}
	i := slices.IndexFunc(atts, func(a agentapi.Attachment) bool { return a.ContainerID == "ctr-p1" })
	if i < 0 || atts[i].PodName != "p1" || !atts[i].Installed {
		t.Fatalf("p1 after restarts: %+v (its pod name is kept in the state file)", atts)
	}
	// The pods still reach each other: nothing was re-created.
	p1.ns.Run(t, "ping", "-c", "1", "-W", "5", strings.Split(atts[slices.IndexFunc(atts, func(a agentapi.Attachment) bool { return a.ContainerID == "ctr-p2" })].Addresses[0], "/")[0])

	// A DEL while the restarted agent has not synced with BGP (its
	// controller is unreachable here) succeeds at once; the port stays
	// until then, so its addresses are not handed out meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.cni.DelNetworkList(ctx, r.list, p2.rt); err != nil {
		t.Fatalf("DEL before BGP synced: %v", err)
	}
	hold(r.pod(t, "p5"))
}

// Bad input gives a spec-shaped error on stdout (code, msg, details) and
// exit status 1, as the binary is run by a runtime: /opt/cni/bin/weft
// with CNI_* variables and the config on stdin.
func TestCNIErrors(t *testing.T) {
	r := newRig(t, "wcne")
	r.h.StartVRouter(t)
	r.startAgent(t, false)
	ns := r.l.Endpoint(t, "p1")
	conf := `{"cniVersion": "1.1.0", "name": "weft", "type": "weft", "network": "leonardo", "agentSocket": "` + r.h.AgentSocket + `"}`
	run := func(env []string, stdin string) (types.Error, string) {
		cmd := exec.Command(filepath.Join(r.bin, "weft"))
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("%v: exit %v, want 1\nstdout: %s\nstderr: %s", env, err, stdout.String(), stderr.String())
		}
		var e types.Error
		if err := json.Unmarshal(stdout.Bytes(), &e); err != nil || e.Code == 0 || e.Msg == "" {
			t.Fatalf("%v: stdout %q is not a CNI error: %v", env, stdout.String(), err)
		}
		return e, stdout.String()
	}
	add := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_NETNS=" + ns.Path(), "CNI_IFNAME=eth0", "CNI_PATH=" + r.bin}
	for _, c := range []struct {
		name  string
		env   []string
		stdin string
		code  uint
		want  string
	}{
		{"bad JSON", add, `{"cniVersion": "1.1.0", "name": `, types.ErrDecodingFailure, ""},
		{"no cniVersion", add, `{"name": "weft", "type": "weft"}`, types.ErrDecodingFailure, ""},
		{"unknown network", append(slices.Clone(add), "CNI_ARGS=weft.network=nosuch"), conf, types.ErrInvalidNetworkConfig, "nosuch"},
		{"missing CNI_NETNS", slices.DeleteFunc(slices.Clone(add), func(s string) bool { return strings.HasPrefix(s, "CNI_NETNS=") }), conf,
			types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"bad CNI_ARGS", append(slices.Clone(add), "CNI_ARGS=novalue"), conf, types.ErrInvalidEnvironmentVariables, "CNI_ARGS"},
		{"no agent", add, strings.Replace(conf, r.h.AgentSocket, "/nonexistent/agent.sock", 1), types.ErrTryAgainLater, "weft agent"},
	} {
		e, out := run(c.env, c.stdin)
		if e.Code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: %s, want code %d naming %q", c.name, out, c.code, c.want)
		}
	}
	// An interface name the namespace has already: the vRouter refuses,
	// the plugin says so and the agent keeps nothing.
	ns.Run(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	if e, out := run(add, conf); e.Code != 102 || !strings.Contains(out, "vRouter refused") {
		t.Errorf("ADD over an existing eth0: %s, want code 102 naming the vRouter's refusal", out)
	}
	// VERSION names 1.1.0.
	cmd := exec.Command(filepath.Join(r.bin, "weft"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion": "1.1.0"}`)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"1.1.0"`) {
		t.Fatalf("VERSION: %v %s", err, out)
	}
	// Nothing was attached by the failures.
	if atts, _ := r.h.AgentAPI.Attachments(); len(atts) != 0 {
		t.Fatalf("attachments after failed ADDs: %+v", atts)
	}
}
