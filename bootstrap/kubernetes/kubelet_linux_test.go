package kubernetes_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/bootstrap/kubernetes"
	"github.com/weftnet/weft/internal/testrig/lab"
)

// A real kubelet runs pods with `weft cni` as its network plugin (issue
// 11, bar item 2): pods in namespaces labelled for nginx and leonardo
// start and get Weft addresses; nginx reaches leonardo on TCP 8000 and
// nothing else, leonardo never reaches nginx (the config's policy); a
// leonardo pod reaches the static db endpoint on node-b through the
// shared route target over each encapsulation, while node-a's agent is
// restarted under the running pods (no address changes, an established
// connection survives); deleting a pod removes its endpoint and
// withdraws its route.
func TestKubelet(t *testing.T) {
	r := newKubeletRig(t, "wkl")
	ctx := context.Background()
	for ns, network := range map[string]string{"shop": "nginx", "art": "leonardo"} {
		if err := r.cp.Namespace(ctx, ns, map[string]string{kubernetes.LabelNetwork: network}); err != nil {
			t.Fatal(err)
		}
	}
	echoOn(t, r.pg1, "10.0.100.3:5432")
	start := time.Now()
	r.pod(t, "shop", "web-1", nil)
	r.pod(t, "art", "leo-1", nil)
	r.pod(t, "art", "leo-2", nil)
	webIP, web := r.running(t, "shop", "web-1")
	leoIP, leo := r.running(t, "art", "leo-1")
	_, leo2 := r.running(t, "art", "leo-2")
	t.Logf("3 pods running with Weft addresses %v after creation", time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		att     agentapi.Attachment
		ip      string
		network string
		subnet  string
	}{{web, webIP, "nginx", "10.0.30.0/24"}, {leo, leoIP, "leonardo", "10.0.10.0/24"}, {leo2, "", "leonardo", "10.0.10.0/24"}} {
		a := netip.MustParsePrefix(c.att.Addresses[0]).Addr()
		if c.att.Network != c.network || !netip.MustParsePrefix(c.subnet).Contains(a) || (c.ip != "" && a.String() != c.ip) || !c.att.Installed {
			t.Fatalf("pod %s/%s: pod IP %q, attachment %+v, want network %s in %s", c.att.PodNamespace, c.att.PodName, c.ip, c.att, c.network, c.subnet)
		}
	}

	// The policy: nginx → leonardo on TCP 8000 only; nothing back.
	mustConnect(t, web.Netns, leoIP+":8000")
	for _, c := range []struct {
		from agentapi.Attachment
		to   string
	}{{web, leoIP + ":9000"}, {leo, webIP + ":8000"}, {leo, webIP + ":9000"}} {
		if conn, err := klDial(c.from.Netns, c.to, 2*time.Second); err == nil {
			conn.Close()
			t.Errorf("%s/%s connected to %s: the policy allows nginx → leonardo TCP 8000 only", c.from.PodNamespace, c.from.PodName, c.to)
		}
	}

	// Over each encapsulation, after a restart of both agents (node-a's
	// under the running pods): leonardo reaches db on node-b and db
	// reaches leonardo; addresses stay, the held connection lives.
	held, err := klDial(web.Netns, leoIP+":8000", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	before := r.attachments(t)
	for _, enc := range []string{"mplsoudp", "vxlan", "mplsogre"} {
		r.encap = enc
		r.writeConfigs(t)
		r.b.Agent.Kill(unix.SIGTERM)
		r.startAgent(t, r.b)
		restart := time.Now()
		r.a.Agent.Kill(unix.SIGTERM)
		r.startAgent(t, r.a)
		via := map[string]string{"mplsoudp": "mplsoudp 192.0.2.2", "vxlan": "vxlan 192.0.2.2", "mplsogre": "mplsogre 192.0.2.2"}[enc]
		klWaitRoute(t, r.a, "leonardo", "10.0.100.3/32", via)
		klWaitRoute(t, r.b, "db", netip.MustParsePrefix(leo.Addresses[0]).Addr().String()+"/32", strings.Replace(via, "192.0.2.2", "192.0.2.1", 1))
		t.Logf("%s: node-a's agent restarted, routes back in %v", enc, time.Since(restart).Round(time.Millisecond))
		if after := r.attachments(t); !sameAddresses(before, after) {
			t.Fatalf("%s: attachments changed across the agent's restart:\nbefore %+v\nafter  %+v", enc, before, after)
		}
		if err := klEcho(held, "still here "+enc+"\n"); err != nil {
			t.Fatalf("%s: the connection established before the restarts: %v", enc, err)
		}
		mustConnect(t, leo.Netns, "10.0.100.3:5432")
		mustConnect(t, r.pg1.Path(), leoIP+":8000")
	}

	// Deleting a pod removes its endpoint and withdraws its route.
	leo2Route := netip.MustParsePrefix(leo2.Addresses[0]).Addr().String() + "/32"
	klWaitRoute(t, r.b, "db", leo2Route, "192.0.2.1")
	del := time.Now()
	if err := r.cp.Admin.CoreV1().Pods("art").Delete(ctx, "leo-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var gone, withdrawn time.Duration
	for deadline := time.Now().Add(time.Minute); gone == 0 || withdrawn == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pod art/leo-2 deleted a minute ago: attachment gone %v, route withdrawn on node-b %v", gone, withdrawn)
		}
		if _, ok := r.attachment(t, "art", "leo-2"); !ok && gone == 0 {
			gone = time.Since(del)
		}
		if !klHasRoute(t, r.b, "db", leo2Route) && withdrawn == 0 {
			withdrawn = time.Since(del)
		}
	}
	eps, err := r.a.AgentAPI.Endpoints()
	if err != nil || slices.ContainsFunc(eps, func(e agentapi.Endpoint) bool { return e.PodName == "leo-2" }) {
		t.Fatalf("endpoints after leo-2's deletion: %v %+v", err, eps)
	}
	t.Logf("pod deleted → attachment gone on node-a %v, route withdrawn on node-b %v", gone.Round(time.Millisecond), withdrawn.Round(time.Millisecond))

	// Pod created → first connection from the remote node's db endpoint.
	d := r.podToRemote(t, "art", "leo-3")
	t.Logf("pod created → first TCP connection from node-b's db endpoint: %v", d.Round(time.Millisecond))
}

// BenchmarkPodToRemote is the time from a pod's creation to the first
// TCP connection that reaches it from an endpoint on another node.
func BenchmarkPodToRemote(b *testing.B) {
	r := newKubeletRig(b, "wklb")
	if err := r.cp.Namespace(context.Background(), "art", map[string]string{kubernetes.LabelNetwork: "leonardo"}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total time.Duration
	for i := range b.N {
		name := fmt.Sprintf("leo-%d", i)
		total += r.podToRemote(b, "art", name)
		if err := r.cp.Admin.CoreV1().Pods("art").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/pod-to-remote")
}

// podToRemote creates a pod and returns how long until node-b's db
// endpoint connects to it: the address from node-a's agent as soon as
// it has one, a connection tried every 20 ms.
func (r *klRig) podToRemote(t testing.TB, ns, name string) time.Duration {
	t.Helper()
	created := time.Now()
	r.pod(t, ns, name, nil)
	deadline := created.Add(2 * time.Minute)
	addr := ""
	for time.Now().Before(deadline) {
		if addr == "" {
			if att, ok := r.attachment(t, ns, name); ok {
				addr = netip.MustParsePrefix(att.Addresses[0]).Addr().String() + ":8000"
			}
		}
		if addr != "" {
			if c, err := klDial(r.pg1.Path(), addr, 200*time.Millisecond); err == nil {
				c.Close()
				return time.Since(created)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pod %s/%s: no connection from node-b after 2 min (address %q)", ns, name, addr)
	return 0
}

func mustConnect(t testing.TB, netns, addr string) {
	t.Helper()
	c, err := klDial(netns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s from %s: %v", addr, netns, err)
	}
	defer c.Close()
	if err := klEcho(c, "ping\n"); err != nil {
		t.Fatalf("echo via %s from %s: %v", addr, netns, err)
	}
}

func sameAddresses(a, b []agentapi.Attachment) bool {
	key := func(x []agentapi.Attachment) []string {
		var s []string
		for _, e := range x {
			s = append(s, e.ContainerID+" "+strings.Join(e.Addresses, ","))
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(key(a), key(b))
}

func klHasRoute(t testing.TB, h *lab.Host, network, prefix string) bool {
	t.Helper()
	rs, err := h.AgentAPI.Routes(network)
	if err != nil {
		t.Fatalf("%s: routes of %s: %v", h.Name, network, err)
	}
	return slices.ContainsFunc(rs, func(r agentapi.Route) bool { return r.Prefix == prefix })
}

// klWaitRoute waits until h has a route to prefix in network whose next
// hop contains via.
func klWaitRoute(t testing.TB, h *lab.Host, network, prefix, via string) {
	t.Helper()
	var last []agentapi.Route
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rs, err := h.AgentAPI.Routes(network)
		if err != nil {
			continue // the agent is restarting
		}
		last = rs
		if slices.ContainsFunc(rs, func(r agentapi.Route) bool { return r.Prefix == prefix && strings.Contains(r.Via, via) }) {
			return
		}
	}
	t.Fatalf("%s: no route %s %s via %q; routes: %+v", h.Name, network, prefix, via, last)
}

// echoOn echoes every connection to addr inside ns (the db endpoint).
func echoOn(t testing.TB, ns interface{ Do(func() error) error }, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
}
