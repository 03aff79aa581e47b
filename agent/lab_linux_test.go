package agent_test

// The agent's integration tests: hosts in network namespaces on one
// fabric, each running the real `weft vrouter` and `weft agent`, a real
// route reflector (FRR by default) on the fabric, endpoints in namespaces
// of their own. Helpers here; the scenarios are in agent_linux_test.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/objects"
)

const rrAddr = "192.0.2.254"

// fleet is a lab with a reflector and hosts running vRouter and agent.
type fleet struct {
	l     *lab.Lab
	rr    *bgpd.Daemon
	hosts map[string]*lab.Host
	eps   map[string]*nettest.NS
	cfg   string // path of the fleet's weft.yaml
}

// fleetConfig is the fleet's weft.yaml. Endpoint namespaces carry the
// test's prefix, so that every namespace is the test's own.
type fleetConfig struct {
	Prefix    string
	Encaps    string // "[mplsoudp, vxlan, mplsogre]"
	Password  string
	Endpoints []epSpec
	Extra     string
	// PerNode gives a node a config of its own (its Endpoints are the
	// fleet's): what differs between nodes in a test.
	PerNode map[string]fleetConfig
	// RRPassword is the reflector's side of TCP MD5; "" = Password.
	RRPassword string
	// ExtraClients are more reflector clients (test speakers).
	ExtraClients []string
	// AgentArgs are added to every `weft agent` command line.
	AgentArgs []string
	// RRFamilies are the reflector's; nil = its default.
	RRFamilies []bgpd.Family
	// MoreNetworks are more items of the networks list, YAML lines
	// indented as the template's (a simulated fleet's networks).
	MoreNetworks string
	// Mode is how the fleet's vRouters forward ("": userspace).
	Mode lab.Mode
}

type epSpec struct {
	Name, Network, Address, Node string
	Anycast                      bool
}

var configTmpl = template.Must(template.New("weft.yaml").Parse(`
bgp:
  asn: 64512
  connectRetry: 1
  holdTime: 9
  controllers: [{address: ` + rrAddr + `{{if .Password}}, password: {{.Password}}{{end}}}]
overlay: {encapsulation: {{.Encaps}}}
networks:
  - {name: leonardo, vni: 100, routeTargets: {import: ["64512:100"], export: ["64512:100"]}, subnets: ["10.0.10.0/24"]}
  - {name: db, vni: 200, routeTargets: {import: ["64512:100", "64512:200"], export: ["64512:200", "64512:100"]}, subnets: ["10.0.100.0/24"]}
  - {name: other, vni: 400, routeTargets: {import: ["64512:400"], export: ["64512:400"]}, subnets: ["10.0.10.0/24", "10.0.100.0/24"]}
  - {name: web, vni: 300, routeTargets: {import: ["64512:300"], export: ["64512:300"]}, subnets: ["10.0.30.0/24"]}
{{.MoreNetworks}}
policies:
  - {from: web, to: leonardo, allow: [{protocol: tcp, ports: [8000]}]}
endpoints:
{{- range .Endpoints}}
  - {name: {{.Name}}, network: {{.Network}}, address: {{.Address}}, node: {{.Node}}, netns: {{$.Prefix}}-{{.Name}}{{if .Anycast}}, anycast: true{{end}}}
{{- end}}
{{.Extra}}
`))

func renderConfig(t testing.TB, c fleetConfig) string {
	t.Helper()
	if c.Encaps == "" {
		c.Encaps = "[mplsoudp, vxlan, mplsogre]"
	}
	var b bytes.Buffer
	if err := configTmpl.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// newFleet starts the reflector and, for each node, a host with vRouter
// and agent; hosts get 192.0.2.1, .2, ... in order.
func newFleet(t testing.TB, prefix string, kind bgpd.Kind, nodes []string, c fleetConfig) *fleet {
	t.Helper()
	f := &fleet{l: lab.NewMode(t, prefix, c.Mode), hosts: map[string]*lab.Host{}, eps: map[string]*nettest.NS{}}
	c.Prefix = prefix
	rrHost := f.l.Host(t, "rr", rrAddr)
	var clients []bgpd.Client
	rrPass := c.RRPassword
	if rrPass == "" {
		rrPass = c.Password
	}
	for i := range nodes {
		clients = append(clients, bgpd.Client{Address: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i+1)), Password: rrPass})
	}
	for _, c := range c.ExtraClients {
		clients = append(clients, bgpd.Client{Address: netip.MustParseAddr(c)})
	}
	f.rr = bgpd.Start(t, rrHost.NS, bgpd.Config{Kind: kind, ASN: 64512, RouterID: netip.MustParseAddr(rrAddr),
		Listen: netip.MustParseAddr(rrAddr), Clients: clients, HoldTime: 9 * time.Second, RestartTime: 60 * time.Second, Families: c.RRFamilies})
	for _, e := range c.Endpoints {
		f.eps[e.Name] = f.l.Endpoint(t, e.Name)
	}
	f.cfg = f.l.WriteFile(t, "weft.yaml", renderConfig(t, c))
	for i, n := range nodes {
		h := f.l.Host(t, n, fmt.Sprintf("192.0.2.%d", i+1))
		h.StartVRouter(t)
		cfg := f.cfg
		if o, ok := c.PerNode[n]; ok {
			o.Prefix, o.Endpoints = prefix, c.Endpoints
			if o.Password == "" {
				o.Password = c.Password
			}
			cfg = f.l.WriteFile(t, n+".yaml", renderConfig(t, o))
		}
		h.StartAgent(t, cfg, c.AgentArgs...)
		f.hosts[n] = h
	}
	return f
}

// waitRoute waits until host h has a route to prefix in network whose
// next hop description contains via, and returns it.
func waitRoute(t testing.TB, h *lab.Host, network, prefix, via string, d time.Duration) agentapi.Route {
	t.Helper()
	deadline := time.Now().Add(d)
	var last []agentapi.Route
	for {
		rs, err := h.AgentAPI.Routes(network)
		if err == nil {
			last = rs
			for _, r := range rs {
				if r.Prefix == prefix && strings.Contains(r.Via, via) {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no route %s %s via %q after %v; routes: %v", h.Name, network, prefix, via, d, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tables reads h's vRouter's tables (its Dump, through the control API):
// what forwards, not what the agent meant to program. An error fails the
// test: a vRouter that cannot answer proves nothing gone.
func tables(t testing.TB, h *lab.Host) *objects.Set {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	objs, err := h.Client.DumpAll(ctx)
	if err != nil {
		t.Fatalf("%s: vrouter dump: %v", h.Name, err)
	}
	s, err := objects.Load(objs)
	if err != nil {
		t.Fatalf("%s: vrouter dump: %v", h.Name, err)
	}
	return s
}

// vrfOf returns the ID of network's VRF in s (the agent names a VRF by
// its network).
func vrfOf(s *objects.Set, network string) (uint32, bool) {
	for id, v := range s.VRFs {
		if v.GetName() == network {
			return id, true
		}
	}
	return 0, false
}

// routeIn returns the next hop of the route to prefix in network's VRF.
func routeIn(s *objects.Set, network, prefix string) (*vrouterv1.NextHop, bool) {
	id, ok := vrfOf(s, network)
	if !ok {
		return nil, false
	}
	nh, ok := s.Routes[objects.RouteKey{VRF: id, Prefix: netip.MustParsePrefix(prefix).Masked()}]
	if !ok {
		return nil, false
	}
	return s.NextHops[nh], true
}

// hasRoute reports whether h's vRouter has a route to prefix in network's
// VRF; an error reading the vRouter fails the test.
func hasRoute(t testing.TB, h *lab.Host, network, prefix string) bool {
	t.Helper()
	_, ok := routeIn(tables(t, h), network, prefix)
	return ok
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func ping(ns *nettest.NS, dst string, n int) bool {
	out, err := ns.Try(20*time.Second, "ping", "-c", fmt.Sprint(n), "-i", "0.2", "-W", "2", dst)
	return err == nil && strings.Contains(out, " 0% packet loss")
}

func mustPing(t testing.TB, ns *nettest.NS, dst string) {
	t.Helper()
	if !ping(ns, dst, 3) {
		out, _ := ns.Try(10*time.Second, "ping", "-c", "2", "-W", "1", dst)
		t.Fatalf("ping %s from %s failed:\n%s", dst, ns.Name, out)
	}
}

// echo listens on addr in ns and echoes every connection.
func echo(t testing.TB, ns *nettest.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

func dial(ns *nettest.NS, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return })
	return c, err
}

// transfer echoes n random bytes through addr and checks them.
func transfer(t testing.TB, ns *nettest.NS, addr string, n int) {
	t.Helper()
	c, err := dial(ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s from %s: %v", addr, ns.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, n)
	rand.Read(data)
	go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("transfer via %s: %d of %d bytes back, err %v", addr, len(got), n, err)
	}
}
