package openstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// The Nova compute host, end to end: real Neutron binds two ports to host
// compute-1; a "VM" per port is a namespace whose eth0 has the port's MAC
// and address, joined by a veth to a host netdev named as Nova's libvirt
// driver names the VM's tap. (A libvirt tap's other end is QEMU's file
// descriptor; what the guest sends is received by the host netdev, and
// what is written to the netdev reaches the guest, exactly as with the
// veth's peer, and the vRouter's AF_PACKET socket binds to that host
// netdev either way.) Real `weft vrouter` and `weft agent` run on
// compute-1 and node-2 under a real reflector; the follower (this
// package) runs in the test's process, the one place that reaches
// Neutron on loopback, and feeds compute-1's agent through its API
// socket.
//
// Checked: no endpoint before the taps exist; a tap created later is
// picked up; two endpoints on their taps in the right VRFs; traffic
// between the VMs (two VRFs joined by route targets) and to node-2's
// endpoint; an allowed address pair lets that source through and a
// spoofed one is dropped and counted; Neutron failing (500) or slow
// changes nothing and traffic keeps flowing; a port rebound to another
// host is removed here, and so is a port whose tap goes.
func TestComputeHostPorts(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ping", "ip")
	c := needCloud(t)
	n := admin(t, c)
	fail, slow := faultyNeutron(t, c.NeutronURL, c.AuthURL, func() (*gophercloud.ProviderClient, error) { return c.Admin(context.Background()) })
	suffix := uuid()[:8]
	dbNet, dbSub := makeNetwork(t, n, "vm-db-"+suffix, 1501, "10.15.1.0/24")
	appNet, appSub := makeNetwork(t, n, "vm-app-"+suffix, 1502, "10.15.2.0/24")
	bound := func(netID, subnetID, ip string, pairs ...ports.AddressPair) *ports.Port {
		return makePort(t, n, portsbinding.CreateOptsExt{HostID: "compute-1", CreateOptsBuilder: ports.CreateOpts{NetworkID: netID,
			DeviceID: uuid(), DeviceOwner: "compute:nova", FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: ip}}, AllowedAddressPairs: pairs}})
	}
	p1 := bound(dbNet, dbSub, "10.15.1.5", ports.AddressPair{IPAddress: "10.15.1.50"})
	p2 := bound(appNet, appSub, "10.15.2.5")
	elsewhere := makePort(t, n, portsbinding.CreateOptsExt{HostID: "compute-9", CreateOptsBuilder: ports.CreateOpts{NetworkID: dbNet,
		DeviceID: uuid(), DeviceOwner: "compute:nova", FixedIPs: []ports.IP{{SubnetID: dbSub, IPAddress: "10.15.1.9"}}}})

	const rr = "192.0.2.254"
	l := lab.New(t, "wnv")
	bgpd.Start(t, l.Host(t, "rr", rr).NS, bgpd.Config{Kind: bgpd.FRR, ASN: 64512, RouterID: netip.MustParseAddr(rr), Listen: netip.MustParseAddr(rr),
		Clients: []bgpd.Client{{Address: netip.MustParseAddr("192.0.2.1")}, {Address: netip.MustParseAddr("192.0.2.2")}}, HoldTime: 9 * time.Second})
	n2 := l.Endpoint(t, "n2")
	cfgPath := l.WriteFile(t, "weft.yaml", `
bgp: {asn: 64512, connectRetry: 1, holdTime: 9, controllers: [{address: `+rr+`}]}
networks:
  - {name: db, vni: 1501, routeTargets: {import: ["64512:1501", "64512:1502"], export: ["64512:1501"]}, subnets: ["10.15.1.0/24"]}
  - {name: app, vni: 1502, routeTargets: {import: ["64512:1502", "64512:1501"], export: ["64512:1502"]}, subnets: ["10.15.2.0/24"]}
endpoints:
  - {name: n2, network: db, address: 10.15.1.20/24, node: node-2, netns: wnv-n2}
`)
	c1 := l.Host(t, "compute-1", "192.0.2.1")
	node2 := l.Host(t, "node-2", "192.0.2.2")
	for _, h := range []*lab.Host{c1, node2} {
		h.StartVRouter(t)
		h.StartAgent(t, cfgPath)
	}

	cfg, err := config.Parse([]byte(`
networks:
  - {name: db, vni: 1501, routeTargets: {import: ["64512:1501"], export: ["64512:1501"]}}
  - {name: app, vni: 1502, routeTargets: {import: ["64512:1502"], export: ["64512:1502"]}}
join:
  openstack: {authURL: ` + c.AuthURL + `, password: {username: admin, password: x, project: admin}, matchVNI: true, computeHost: compute-1}
`))
	if err != nil {
		t.Fatal(err)
	}
	j := adminJoin(c)
	j.Region = "Faulty" // through the proxy that fails on demand
	s, err := Dial(context.Background(), j, quiet())
	if err != nil {
		t.Fatal(err)
	}
	links, err := HostLinks(c1.NS.Handle, quiet())
	if err != nil {
		t.Fatal(err)
	}
	f := &Follower{Session: s, Agent: c1.AgentAPI, Mapping: NewMapping(cfg), Host: "compute-1", Links: links, Interval: time.Second, Log: quiet()}

	// Bound, but libvirt has not plugged the VMs: nothing to attach.
	if err := f.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if eps := neutronEndpoints(t, c1); len(eps) != 0 {
		t.Fatalf("endpoints before any tap exists: %+v", eps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { f.Run(ctx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone })
	time.Sleep(200 * time.Millisecond) // the follower has subscribed to link events

	start := time.Now()
	vm1 := plugVM(t, l, c1, "vm1", p1, "10.15.1.5/24", "10.15.1.1")
	vm2 := plugVM(t, l, c1, "vm2", p2, "10.15.2.5/24", "10.15.2.1")
	waitFor(t, "both ports' endpoints on compute-1", func() bool { return len(neutronEndpoints(t, c1)) == 2 })
	t.Logf("taps plugged -> both endpoints in the agent after %s (link events; poll interval %s)", time.Since(start).Round(time.Millisecond), f.Interval)
	eps := neutronEndpoints(t, c1)
	for _, w := range []struct {
		p       *ports.Port
		network string
		addr    string
		allowed []string
	}{{p1, "db", "10.15.1.5/24", []string{"10.15.1.50/32"}}, {p2, "app", "10.15.2.5/24", nil}} {
		e, ok := eps[EndpointName(w.p.ID)]
		if !ok || e.NeutronPort != w.p.ID || e.Network != w.network || e.Address != w.addr || e.Device != TapName(w.p.ID) ||
			!strings.EqualFold(e.MAC, w.p.MACAddress) || e.Netns != "" || !slices.Equal(e.AllowedSources, w.allowed) {
			t.Errorf("endpoint of port %s: %+v (present %v); want on %s with %s, device %s, MAC %s, allowed %v",
				w.p.ID, e, ok, w.network, w.addr, TapName(w.p.ID), w.p.MACAddress, w.allowed)
		}
	}
	if _, ok := eps[EndpointName(elsewhere.ID)]; ok {
		t.Errorf("a port bound to compute-9 was attached on compute-1")
	}
	// `weft ctl endpoints` shows where each endpoint came from.
	out, err := exec.Command(lab.Binary(t), "ctl", "endpoints", "--agent", c1.AgentSocket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "neutron port "+p1.ID) || !strings.Contains(string(out), TapName(p1.ID)) {
		t.Errorf("weft ctl endpoints: %v; want port %s and its tap:\n%s", err, p1.ID, out)
	}

	// Traffic: VM to VM across the two VRFs, and to node-2's endpoint
	// over the overlay.
	pingOK(t, vm1, "", "10.15.2.5")
	pingOK(t, vm2, "", "10.15.1.5")
	pingOK(t, vm1, "", "10.15.1.20")
	pingOK(t, n2, "", "10.15.2.5")

	// The allowed address pair is a source the vRouter lets through (and
	// routes back); any other is spoofed: dropped and counted.
	vm1.Run(t, "ip", "addr", "add", "10.15.1.50/32", "dev", "eth0")
	vm1.Run(t, "ip", "addr", "add", "10.15.1.60/32", "dev", "eth0")
	pingOK(t, vm1, "10.15.1.50", "10.15.1.20")
	before := spoofDrops(t, c1)
	if out, err := vm1.Try(10*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.15.1.60", "10.15.1.20"); err == nil {
		t.Errorf("ping from 10.15.1.60, neither the port's address nor an allowed pair, got through:\n%s", out)
	}
	if after := spoofDrops(t, c1); after < before+3 {
		t.Errorf("spoofed-ip drops went %d -> %d, want the 3 echo requests counted", before, after)
	}

	// Neutron failing: the poll says which call, the status and the
	// request id; the endpoints stay and forward.
	fail.Store(true)
	err = f.Sync(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Call != "neutron GET /v2.0/ports" || e.Status != 500 || e.RequestID != "req-injected-500" {
		t.Fatalf("sync against a failing Neutron: %v; want neutron GET /v2.0/ports, HTTP 500, request req-injected-500", err)
	}
	t.Logf("failing neutron: %v", err)
	time.Sleep(3 * time.Second) // several failed polls, backing off
	if got := len(neutronEndpoints(t, c1)); got != 2 {
		t.Fatalf("%d endpoints while Neutron failed, want both kept", got)
	}
	pingOK(t, vm1, "", "10.15.1.20")
	pingOK(t, vm1, "", "10.15.2.5")
	fail.Store(false)
	// Slow: each poll takes 3 s; nothing changes meanwhile.
	slow.Store(true)
	time.Sleep(4 * time.Second)
	if got := len(neutronEndpoints(t, c1)); got != 2 {
		t.Fatalf("%d endpoints while Neutron was slow, want both kept", got)
	}
	pingOK(t, vm2, "", "10.15.1.20")
	slow.Store(false)

	// Rebound to another host (a live migration's end): removed here,
	// the other port untouched.
	other := "compute-2"
	if _, err := ports.Update(context.Background(), n, p2.ID, portsbinding.UpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{}, HostID: &other}).Extract(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, "the rebound port's endpoint removed from compute-1", func() bool {
		_, ok := neutronEndpoints(t, c1)[EndpointName(p2.ID)]
		return !ok
	})
	t.Logf("rebound port removed after %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the rebound port's vRouter port gone", func() bool { return !hasVRouterPort(t, c1, EndpointName(p2.ID)) })
	if _, ok := neutronEndpoints(t, c1)[EndpointName(p1.ID)]; !ok {
		t.Error("the other port's endpoint went with the rebound one")
	}
	pingOK(t, vm1, "", "10.15.1.20")

	// The VM gone (libvirt removed its tap), its port still bound: the
	// endpoint goes.
	c1.NS.Run(t, "ip", "link", "del", TapName(p1.ID))
	waitFor(t, "the endpoint of a port whose tap is gone removed", func() bool { return len(neutronEndpoints(t, c1)) == 0 })
}

// plugVM does what libvirt does for a tap-bound port (a host netdev
// tap+ID[:11]) with the guest's side in namespace prefix-name: eth0 with
// the port's MAC and address, routed via the subnet's gateway.
func plugVM(t *testing.T, l *lab.Lab, h *lab.Host, name string, p *ports.Port, addr, gw string) *nettest.NS {
	t.Helper()
	vm := l.Endpoint(t, name)
	nettest.Veth(t, h.NS, TapName(p.ID), "", vm, "eth0", "")
	eth0, err := vm.NL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(p.MACAddress)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.NL.LinkSetHardwareAddr(eth0, mac); err != nil {
		t.Fatal(err)
	}
	vm.Run(t, "ip", "addr", "add", addr, "dev", "eth0")
	vm.Run(t, "ip", "route", "add", "default", "via", gw)
	return vm
}

// neutronEndpoints are h's agent's endpoints that came from Neutron ports.
func neutronEndpoints(t *testing.T, h *lab.Host) map[string]agentapi.Endpoint {
	t.Helper()
	eps, err := h.AgentAPI.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]agentapi.Endpoint{}
	for _, e := range eps {
		if e.NeutronPort != "" {
			out[e.Name] = e
		}
	}
	return out
}

func hasVRouterPort(t *testing.T, h *lab.Host, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	objs, err := h.Client.DumpAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if p := o.GetPort(); p != nil && p.GetName() == name {
			return true
		}
	}
	return false
}

func spoofDrops(t *testing.T, h *lab.Host) uint64 {
	t.Helper()
	c, err := h.AgentAPI.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.GetDrops()["spoofed-ip"]
}

// pingOK pings dst from ns (from source src when not empty) until one
// echo is answered, for up to 30 s (routes travel through the reflector).
func pingOK(t *testing.T, ns *nettest.NS, src, dst string) {
	t.Helper()
	args := []string{"-c", "1", "-W", "1"}
	if src != "" {
		args = append(args, "-I", src)
	}
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		o, err := ns.Try(5*time.Second, "ping", append(args, dst)...)
		if err == nil {
			return
		}
		out = o
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("ping %s from %s (source %q): no answer in 30 s:\n%s", dst, ns.Name, src, out)
}
