package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

var twoEndpoints = []epSpec{
	{Name: "leo1", Network: "leonardo", Address: "10.0.10.5/24", Node: "a"},
	{Name: "pg1", Network: "db", Address: "10.0.100.3/24", Node: "b"},
}

// Each encapsulation in turn, chosen by the local priority and what the
// remote advertises: a prefers MPLSoUDP but b offers only VXLAN and
// MPLSoGRE, so a sends VXLAN; then a prefers MPLSoGRE; then both agree on
// MPLSoUDP.
func TestEncapsulationChoice(t *testing.T) { lab.Modes(t, encapsulationChoice) }

func encapsulationChoice(t *testing.T, m lab.Mode) {
	f := newFleet(t, "wtae", bgpd.FRR, []string{"a", "b"}, fleetConfig{Mode: m, Endpoints: twoEndpoints,
		Encaps:  "[mplsoudp, vxlan, mplsogre]",
		PerNode: map[string]fleetConfig{"b": {Encaps: "[vxlan, mplsogre]"}}})
	a := f.hosts["a"]
	cases := []struct {
		name    string
		aEncaps string // a's priority; "" = keep
		bEncaps string
		via     string // what a's route to pg1 must say
	}{
		{"remote offers no mplsoudp", "", "", "vxlan 192.0.2.2 vni 200"},
		{"local priority gre", "[mplsogre, vxlan]", "", "mplsogre 192.0.2.2 label"},
		{"both mplsoudp", "[mplsoudp]", "[mplsoudp, vxlan, mplsogre]", "mplsoudp 192.0.2.2 label"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.aEncaps != "" {
				f.l.WriteFile(t, "weft.yaml", renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Encaps: tc.aEncaps, Endpoints: twoEndpoints}))
				if err := a.AgentAPI.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.bEncaps != "" {
				f.l.WriteFile(t, "b.yaml", renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Encaps: tc.bEncaps, Endpoints: twoEndpoints}))
				if err := f.hosts["b"].AgentAPI.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			r := waitRoute(t, a, "leonardo", "10.0.100.3/32", tc.via, 15*time.Second)
			encap := strings.Fields(r.Via)[0]
			before := tunnelTx(t, a, encap)
			mustPing(t, f.eps["leo1"], "10.0.100.3")
			if tunnelTx(t, a, encap) == before {
				t.Errorf("a's %s tunnel sent nothing during the ping", encap)
			}
		})
	}
}

// An anycast address on endpoints of three nodes gives the fourth an ECMP
// route over the three, and traffic reaches each of them.
func TestAnycastECMP(t *testing.T) { lab.Modes(t, anycastECMP) }

func anycastECMP(t *testing.T, m lab.Mode) {
	eps := []epSpec{{Name: "src", Network: "leonardo", Address: "10.0.10.2/24", Node: "d"}}
	for _, n := range []string{"a", "b", "c"} {
		eps = append(eps, epSpec{Name: "vip" + n, Network: "leonardo", Address: "10.0.10.100/24", Node: n, Anycast: true})
	}
	f := newFleet(t, "wtaa", bgpd.FRR, []string{"a", "b", "c", "d"}, fleetConfig{Mode: m, Endpoints: eps})
	r := waitRoute(t, f.hosts["d"], "leonardo", "10.0.10.100/32", "ecmp", 20*time.Second)
	for _, u := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if !strings.Contains(r.Via, u) {
			// The third path may still be on its way.
			r = waitRoute(t, f.hosts["d"], "leonardo", "10.0.10.100/32", u, 10*time.Second)
		}
	}
	t.Logf("d: 10.0.10.100/32 via %s", r.Via)
	if strings.Count(r.Via, "label") != 3 {
		t.Errorf("want three members: %s", r.Via)
	}
	// Many flows from src reach all three: each answers TCP on its own.
	for _, n := range []string{"a", "b", "c"} {
		echo(t, f.eps["vip"+n], "10.0.10.100:7000")
	}
	hits := map[string]int{}
	for _, n := range []string{"a", "b", "c"} {
		hits[n] = 0
	}
	for i := range 60 {
		c, err := dial(f.eps["src"], "10.0.10.100:7000", 3*time.Second)
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		c.Close()
	}
	for _, n := range []string{"a", "b", "c"} {
		if rx := portTx(t, f.hosts[n], endpointPort(t, f.hosts[n], "vip"+n)); rx == 0 {
			t.Errorf("vip on %s received nothing over 60 flows", n)
		}
	}
}

// An endpoint removed is withdrawn at the reflector and gone from the
// remote FIB (within 5 s: how fast is BenchmarkEndpointRemoval's figure);
// added, it is reachable from the remote.
func TestEndpointAddRemove(t *testing.T) {
	for _, k := range reflectorKinds {
		t.Run(k.kind.String(), func(t *testing.T) { endpointAddRemove(t, "wtr"+k.tag, k.kind, k.encaps) })
	}
}

// reflectorKinds are the reflectors the scenarios run against: BIRD has
// no EVPN, so its fleets use the MPLS encapsulations only.
var reflectorKinds = []struct {
	kind   bgpd.Kind
	tag    string
	encaps string
}{
	{bgpd.FRR, "f", ""},
	{bgpd.GoBGPd, "g", ""},
	{bgpd.BIRD, "b", "[mplsoudp, mplsogre]"},
}

func endpointAddRemove(t *testing.T, prefix string, kind bgpd.Kind, encaps string) {
	f := newFleet(t, prefix, kind, []string{"a", "b"}, fleetConfig{Endpoints: twoEndpoints, Encaps: encaps,
		AgentArgs: []string{"--metrics", "127.0.0.1:9473"}})
	a, b := f.hosts["a"], f.hosts["b"]
	waitRoute(t, b, "db", "10.0.10.5/32", "192.0.2.1", 20*time.Second)
	ns := f.l.Endpoint(t, "leo9")

	// Prometheus metrics, scraped in a's namespace. b's route may reach a
	// after a's reached b, which is all the wait above knows of.
	wants := []string{`weft_bgp_session_up{peer="192.0.2.254"} 1`, `weft_vrf_routes{network="leonardo"} 2`,
		`weft_port_rx_packets_total{port="leo1"}`, `weft_synced 1`}
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		metrics := scrape(t, a, "127.0.0.1:9473")
		missing = slices.DeleteFunc(slices.Clone(wants), func(w string) bool { return strings.Contains(metrics, w) })
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range missing {
		t.Errorf("metrics lack %q after 10s", w)
	}

	// A probe that fails says so, and weft ctl exits non-zero.
	if out, err := exec.Command(lab.Binary(t), "ctl", "probe", "--endpoint", "leo1", "--to", "10.0.100.99", "--count", "1",
		"--agent", a.AgentSocket).CombinedOutput(); err == nil || !strings.Contains(string(out), "0/1 echo replies") {
		t.Errorf("probe of an address nobody has: err %v, output %s", err, out)
	}

	// The operator's view, through weft ctl.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"status"}, []string{"router id", "192.0.2.1", "1 of 1 established"}},
		{[]string{"peers"}, []string{"192.0.2.254", "established", "l3vpn-ipv4-unicast"}},
		{[]string{"routes", "--network", "leonardo"}, []string{"10.0.100.3/32", "mplsoudp 192.0.2.2 label", "local leo1"}},
		{[]string{"endpoints"}, []string{"leo1", "leonardo", "10.0.10.5/24", "config"}},
		{[]string{"flows"}, []string{"flows)"}},
		{[]string{"config"}, []string{"networks:", "leonardo"}},
		{[]string{"peers", "-o", "json"}, []string{`"state": "established"`}},
		{[]string{"probe", "--endpoint", "leo1", "--to", "10.0.100.3"}, []string{"3/3 echo replies from 10.0.100.3"}},
	} {
		out, err := exec.Command(lab.Binary(t), append(append([]string{"ctl"}, c.args...), "--agent", a.AgentSocket)...).CombinedOutput()
		if err != nil {
			t.Errorf("weft ctl %v: %v\n%s", c.args, err, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("weft ctl %v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}

	start := time.Now()
	if err := a.AgentAPI.AddEndpoint(agentapi.Endpoint{Name: "leo9", Network: "leonardo", Address: "10.0.10.9/24", Netns: ns.Name}); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "pg1 to reach the new endpoint", 20*time.Second, func() bool { return ping(f.eps["pg1"], "10.0.10.9", 1) })
	t.Logf("endpoint created on a -> first ping from b answered: %v", took.Round(time.Millisecond))
	_ = start

	rrTook, fibTook := removeEndpoint(t, f, "leo9", "10.0.10.9/32")
	t.Logf("endpoint removed -> withdrawn at the reflector in %v, gone from b's FIB in %v", rrTook.Round(time.Millisecond), fibTook.Round(time.Millisecond))
	if ports := endpointPortOrZero(t, a, "leo9"); ports != 0 {
		t.Errorf("a still has a port for leo9")
	}
}

// removeEndpoint removes endpoint name from node a and waits, 5 s at most
// each, for the reflector to withdraw prefix and for node b's FIB to drop
// it; it returns how long each took from the removal.
func removeEndpoint(t testing.TB, f *fleet, name, prefix string) (atReflector, atB time.Duration) {
	t.Helper()
	if err := f.hosts["a"].AgentAPI.RemoveEndpoint(name); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	waitFor(t, "the reflector to withdraw "+prefix, 5*time.Second, func() bool {
		rib, err := f.rr.VPNv4()
		if err != nil {
			return false
		}
		for _, e := range rib {
			if e.Prefix.String() == prefix {
				return false
			}
		}
		return true
	})
	atReflector = time.Since(gone)
	waitFor(t, "b's FIB to drop "+prefix, 5*time.Second, func() bool { return !hasRoute(t, f.hosts["b"], "db", prefix) })
	return atReflector, time.Since(gone)
}

// endpointPortOrZero is the ID of the port h's vRouter has for endpoint
// name, 0 when it has none.
func endpointPortOrZero(t *testing.T, h *lab.Host, name string) uint32 {
	t.Helper()
	for id, p := range tables(t, h).Ports {
		if p.GetName() == name {
			return id
		}
	}
	return 0
}

// stream runs a TCP echo stream from ns to addr and records the longest
// pause between echoed chunks.
type stream struct {
	maxGap atomic.Int64
	bytes  atomic.Int64
	stop   chan struct{}
	done   chan error
}

func startStream(t testing.TB, f *fleet, from, addr string) *stream {
	c, err := dial(f.eps[from], addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 16<<10)
		for {
			select {
			case <-s.stop:
				c.Close()
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		last := time.Now()
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(buf)
			now := time.Now()
			if gap := now.Sub(last); int64(gap) > s.maxGap.Load() {
				s.maxGap.Store(int64(gap))
			}
			last = now
			s.bytes.Add(int64(n))
			if err != nil {
				select {
				case <-s.stop:
					s.done <- nil
				default:
					s.done <- err
				}
				return
			}
		}
	}()
	return s
}

func (s *stream) finish(t testing.TB) time.Duration {
	close(s.stop)
	if err := <-s.done; err != nil {
		t.Errorf("the stream broke: %v", err)
	}
	return time.Duration(s.maxGap.Load())
}

// maxStall is the longest pause a TCP stream may see while an agent or the
// reflector restarts: forwarding goes on from the vRouter's tables, so a
// stall this long means it stopped. The usual figure is far smaller; it is
// BenchmarkRestartStall's, not a pass mark.
const maxStall = 5 * time.Second

// kill -9 of an agent under a running TCP transfer: no stall over
// maxStall, the agent comes back, the reflector's routes never disappear.
// Then the reflector restarts: the routes come back and forwarding never
// stops.
func TestAgentKillAndReflectorRestart(t *testing.T) {
	lab.Modes(t, func(t *testing.T, m lab.Mode) {
		for _, k := range reflectorKinds {
			t.Run(k.kind.String(), func(t *testing.T) { agentKillAndReflectorRestart(t, "wtk"+k.tag, k.kind, k.encaps, m) })
		}
	})
}

func agentKillAndReflectorRestart(t *testing.T, prefix string, kind bgpd.Kind, encaps string, m lab.Mode) {
	f := restartFleet(t, prefix, kind, encaps, m)
	gap, missing := killAgentUnderStream(t, f)
	t.Logf("agent kill -9 and restart: longest stall %v; reflector lost a's route in %d of its polls", gap.Round(time.Millisecond), missing)
	if gap > maxStall {
		t.Errorf("the transfer stalled for %v, want at most %v", gap, maxStall)
	}
	if missing > 0 {
		t.Errorf("the reflector lost a's route %d times during the agent restart", missing)
	}
	transfer(t, f.eps["leo1"], "10.0.100.3:5432", 1<<20)

	gap = restartReflectorUnderStream(t, f)
	t.Logf("reflector restart: longest stall %v", gap.Round(time.Millisecond))
	if gap > maxStall {
		t.Errorf("forwarding stalled for %v while the reflector restarted, want at most %v", gap, maxStall)
	}
}

// kill -9 of a vRouter under a running TCP transfer, and a new one
// started: the agent notices it and programs it again, the endpoint's
// device comes back (a TAP made anew, a veth pair taken over), and the
// stream goes on without breaking. The stall is logged; the bar's 1 s
// needs the fast path's programs and maps to outlive the process
// (pinning), which this test does not assume.
func TestVRouterKillUnderStream(t *testing.T) {
	lab.Modes(t, func(t *testing.T, m lab.Mode) {
		f := restartFleet(t, "wtkv", bgpd.FRR, "", m)
		a := f.hosts["a"]
		st := startStream(t, f, "leo1", "10.0.100.3:5432")
		time.Sleep(time.Second)
		a.VRouter.Kill(unix.SIGKILL)
		t.Log("vRouter a killed with SIGKILL")
		killed := time.Now()
		a.StartVRouter(t)
		sent := st.bytes.Load()
		waitFor(t, "the stream to carry 1 MiB after the vRouter's restart", 40*time.Second, func() bool {
			return st.bytes.Load() > sent+1<<20
		})
		t.Logf("the stream moves again %v after the kill", time.Since(killed).Round(time.Millisecond))
		gap := st.finish(t)
		t.Logf("%s: vRouter kill -9 and restart: longest stall %v, %d MiB streamed", m, gap.Round(time.Millisecond), st.bytes.Load()>>20)
		if gap > maxStall {
			t.Errorf("the transfer stalled for %v, want at most %v", gap, maxStall)
		}
	})
}

// restartFleet is two nodes with vRouters in mode m, routes exchanged,
// pg1 echoing on port 5432.
func restartFleet(t testing.TB, prefix string, kind bgpd.Kind, encaps string, m lab.Mode) *fleet {
	f := newFleet(t, prefix, kind, []string{"a", "b"}, fleetConfig{Endpoints: twoEndpoints, Encaps: encaps, Mode: m})
	waitRoute(t, f.hosts["a"], "leonardo", "10.0.100.3/32", "192.0.2.2", 20*time.Second)
	waitRoute(t, f.hosts["b"], "db", "10.0.10.5/32", "192.0.2.1", 20*time.Second)
	echo(t, f.eps["pg1"], "10.0.100.3:5432")
	return f
}

// killAgentUnderStream kills a's agent with SIGKILL under a TCP stream
// from leo1 to pg1 and restarts it; it returns the stream's longest stall
// and how many of the reflector's polls lacked a's route. The restarted
// agent must find the vRouter's state in place.
func killAgentUnderStream(t testing.TB, f *fleet) (time.Duration, int64) {
	t.Helper()
	a := f.hosts["a"]
	var missing atomic.Int64
	watch := func(stop <-chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			rib, err := f.rr.VPNv4()
			if err != nil {
				continue // the reflector itself may be restarting
			}
			found := false
			for _, e := range rib {
				if e.Prefix.String() == "10.0.10.5/32" && e.NextHop.String() == "192.0.2.1" {
					found = true
				}
			}
			if !found {
				missing.Add(1)
			}
		}
	}
	st := startStream(t, f, "leo1", "10.0.100.3:5432")
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go watch(stopWatch, &wg)
	time.Sleep(time.Second)
	genBefore := generation(t, a)
	a.Agent.Kill(unix.SIGKILL)
	t.Log("agent a killed with SIGKILL")
	time.Sleep(2 * time.Second)
	a.StartAgent(t, f.cfg)
	waitFor(t, "a's agent to resync", 40*time.Second, func() bool {
		s, err := a.AgentAPI.Status()
		return err == nil && s.Synced && s.PeersUp == 1
	})
	time.Sleep(time.Second)
	if g := generation(t, a); g != genBefore {
		t.Errorf("the restarted agent changed the vRouter's state (generation %d -> %d); it should find everything in place", genBefore, g)
	}
	close(stopWatch)
	wg.Wait()
	gap := st.finish(t)
	t.Logf("%d MiB streamed across the agent's restart", st.bytes.Load()>>20)
	return gap, missing.Load()
}

// restartReflectorUnderStream restarts the reflector under a TCP stream
// from leo1 to pg1, waits for both sessions and the routes to come back,
// and returns the stream's longest stall.
func restartReflectorUnderStream(t testing.TB, f *fleet) time.Duration {
	t.Helper()
	st := startStream(t, f, "leo1", "10.0.100.3:5432")
	time.Sleep(500 * time.Millisecond)
	f.rr.Restart(t)
	f.rr.WaitEstablished(t, 40*time.Second, f.hosts["a"].Underlay, f.hosts["b"].Underlay)
	waitFor(t, "routes back at the reflector", 30*time.Second, func() bool {
		rib, err := f.rr.VPNv4()
		return err == nil && len(rib) >= 2
	})
	time.Sleep(time.Second)
	return st.finish(t)
}

// Bad input: an invalid config is refused at start naming the path, and
// on reload without touching the running state (the vRouter still has
// leo1's port and forwards for it: its gateway answers, and pings to an
// address with no route are dropped and counted); a wrong MD5 password
// never establishes and says so.
func TestBadInput(t *testing.T) { lab.Modes(t, badInput) }

func badInput(t *testing.T, m lab.Mode) {
	f := newFleet(t, "wtax", bgpd.FRR, []string{"a", "b"}, fleetConfig{Mode: m, Endpoints: twoEndpoints,
		Password: "s3cret", PerNode: map[string]fleetConfig{"b": {Password: "wrong"}}})
	a, b := f.hosts["a"], f.hosts["b"]
	f.rr.WaitEstablished(t, 30*time.Second, a.Underlay)

	// Start with an invalid config: refused with the path.
	bad := f.l.WriteFile(t, "bad.yaml", strings.Replace(renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: twoEndpoints}), "asn: 64512", "asn: 99999999999", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, lab.Binary(t), "agent", "--config", bad, "--vrouter-socket", "/nonexistent").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bgp.asn") {
		t.Errorf("weft agent with an invalid config: err %v, output %s; want a refusal naming bgp.asn", err, out)
	}

	// Reload with an invalid config: refused, the running state stays.
	good := renderConfig(t, fleetConfig{Prefix: f.l.Prefix, Endpoints: twoEndpoints, Password: "s3cret"})
	f.l.WriteFile(t, "weft.yaml", strings.Replace(good, "vni: 100", "vni: 0", 1))
	if err := a.AgentAPI.Reload(); err == nil || !strings.Contains(err.Error(), "networks[0].vni") {
		t.Errorf("reload of an invalid config: %v, want a refusal naming networks[0].vni", err)
	}
	s, _ := a.AgentAPI.Status()
	if !strings.Contains(s.ConfigErr, "networks[0].vni") {
		t.Errorf("status configError %q", s.ConfigErr)
	}
	if eps, _ := a.AgentAPI.Endpoints(); len(eps) != 1 {
		t.Errorf("a's endpoints after the refused reload: %v", eps)
	}
	// The vRouter still forwards for leo1, through its port: the gateway
	// answers (the vRouter itself), and pg1, on b whose session never came
	// up, has no route in leonardo: those pings are dropped and counted.
	leo1 := endpointPort(t, a, "leo1")
	if leo1 == 0 || endpointPortOrZero(t, a, "leo1") != leo1 {
		t.Fatalf("a's vRouter has no port for leo1 after the refused reload")
	}
	rx, noRoute := portRx(t, a, leo1), drops(t, a, "no-route")
	mustPing(t, f.eps["leo1"], "10.0.10.1")
	if n := portRx(t, a, leo1) - rx; n < 3 {
		t.Errorf("leo1's port took in %d frames during 3 pings of the gateway", n)
	}
	if hasRoute(t, a, "leonardo", "10.0.100.3/32") {
		t.Fatal("a has a route to pg1, whose node never established")
	}
	if ping(f.eps["leo1"], "10.0.100.3", 2) {
		t.Error("leo1 reached 10.0.100.3 with no route to it")
	}
	if n := drops(t, a, "no-route") - noRoute; n < 2 {
		t.Errorf("a counted %d no-route drops for 2 pings to an address it has no route to", n)
	}

	// b's wrong MD5 password: never established, and the agent says why.
	time.Sleep(5 * time.Second)
	peers, err := b.AgentAPI.Peers()
	if err != nil || len(peers) != 1 {
		t.Fatalf("b's peers: %v %v", peers, err)
	}
	if peers[0].State == "established" {
		t.Error("b established with a wrong MD5 password")
	}
	if !strings.Contains(strings.ToLower(peers[0].LastError), "md5") {
		t.Errorf("b's session error %q does not mention MD5", peers[0].LastError)
	}
	if b.Agent.Exited() {
		t.Error("b's agent exited")
	}
	t.Logf("b with a wrong password: %s: %s", peers[0].State, peers[0].LastError)
}

func generation(t testing.TB, h *lab.Host) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := h.Client.Info(ctx, &vrouterv1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return info.GetGeneration()
}

// scrape reads /metrics from addr inside h's namespace (the connection is
// made on the namespace's thread; http.Client would dial on another).
func scrape(t *testing.T, h *lab.Host, addr string) string {
	t.Helper()
	var c net.Conn
	if err := h.NS.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return }); err != nil {
		t.Fatalf("%s: metrics: %v", h.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: metrics: %v", h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: metrics: %v", h.Name, err)
	}
	return string(body)
}
