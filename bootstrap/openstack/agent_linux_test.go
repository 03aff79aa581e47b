package openstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/testrig/cloud"
	"github.com/weftnet/weft/internal/testrig/inproc"
	"github.com/weftnet/weft/internal/testrig/testenv"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// The bare-metal case end to end but for the wire: a real agent (its
// local API socket) over a real vRouter server (quiet ports), the node's
// ports read from real Neutron. The port's endpoint appears in
// `weft ctl endpoints` with its Neutron port, and its allowed address
// pair reaches the vRouter port's anti-spoofing list; deleting the port
// removes the vRouter port.
func TestAgentAttachesInstancePorts(t *testing.T) {
	testenv.RequireRoot(t)
	c := needCloud(t)
	n := admin(t, c)
	suffix := uuid()[:8]
	netID, subnetID := makeNetwork(t, n, "bm-"+suffix, 1301, "10.13.0.0/24")
	instance := uuid()
	p := makePort(t, n, ports.CreateOpts{NetworkID: netID, DeviceID: instance, FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: "10.13.0.5"}},
		AllowedAddressPairs: []ports.AddressPair{{IPAddress: "10.13.0.50"}}})
	name := EndpointName(p.ID)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })

	_, vr := inproc.VRouter(t, "wos-vr")
	dir := t.TempDir()
	// No BGP session is needed: the controller is a closed port on one
	// of this host's own addresses (the config refuses loopback).
	self := ownAddress(t)
	l, err := net.Listen("tcp", net.JoinHostPort(self, "0"))
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	yaml := fmt.Sprintf(`
bgp: {asn: 64512, controllers: [{address: %s, port: %d}]}
networks:
  - {name: db, vni: 1301, routeTargets: {import: ["64512:1301"], export: ["64512:1301"]}, subnets: ["10.13.0.0/24"]}
join:
  openstack: {authURL: %s, vendorData2: true, matchVNI: true}
`, self, closed, c.AuthURL)
	cfgPath := filepath.Join(dir, "weft.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	mdPath := filepath.Join(dir, "meta_data.json")
	if err := os.WriteFile(mdPath, fmt.Appendf(nil, `{"uuid": %q, "name": "bm1"}`, instance), 0o600); err != nil {
		t.Fatal(err)
	}
	// The credential is the node's own, from Nova's vendordata.
	vdPath := filepath.Join(dir, "vendor_data2.json")
	if err := os.WriteFile(vdPath, fmt.Appendf(nil, `{"weft": {"openstack": {"password": {"username": "admin", "password": %q, "project": "admin"}}}, "other": {}}`,
		cloud.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	a, err := agent.New(agent.Options{ConfigPath: cfgPath, VRouterSocket: vr.Socket(), APISocket: sock, Hostname: "bm1",
		BGPListenPort: -1, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx) }()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	api := agentapi.NewClient(sock)
	go func() { done <- Run(ctx, cfg, api, Files{MetaData: mdPath, VendorData2: vdPath}, quiet()) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			<-done
		}
	})

	vrPort := func() *vrouterv1.Port {
		objs, err := vr.DumpAll(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if pt := o.GetPort(); pt != nil && pt.GetName() == name {
				return pt
			}
		}
		return nil
	}
	start := time.Now()
	waitFor(t, "the port's endpoint in the vRouter", func() bool { return vrPort() != nil })
	t.Logf("attached %s after %s (first poll, auth included)", name, time.Since(start).Round(time.Millisecond))
	pt := vrPort()
	if got := pt.GetAllowedSources(); !slices.Equal(got, []string{"10.13.0.50/32"}) {
		t.Errorf("vRouter port allowed_sources %v, want [10.13.0.50/32] (the allowed address pair)", got)
	}
	if got := pt.GetAddresses(); !slices.Equal(got, []string{"10.13.0.5/24"}) {
		t.Errorf("vRouter port addresses %v, want [10.13.0.5/24]", got)
	}
	if got := net.HardwareAddr(pt.GetMac()).String(); got != p.MACAddress {
		t.Errorf("vRouter port MAC %s, want the Neutron port's %s", got, p.MACAddress)
	}
	eps, err := api.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(eps, func(e agentapi.Endpoint) bool { return e.Name == name })
	if i < 0 || eps[i].NeutronPort != p.ID || eps[i].Network != "db" {
		t.Errorf("agent endpoints %+v: want %s on db from Neutron port %s", eps, name, p.ID)
	}

	// A pair added: the agent changes the running port's allowed sources
	// in place (same vRouter port ID).
	id := pt.GetId()
	pairs := []ports.AddressPair{{IPAddress: "10.13.0.50"}, {IPAddress: "10.13.0.51"}}
	if _, err := ports.Update(context.Background(), n, p.ID, ports.UpdateOpts{AllowedAddressPairs: &pairs}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new pair in the vRouter port's allowed sources", func() bool {
		pt := vrPort()
		return pt != nil && slices.Equal(pt.GetAllowedSources(), []string{"10.13.0.50/32", "10.13.0.51/32"})
	})
	if got := vrPort().GetId(); got != id {
		t.Errorf("vRouter port %d became %d: the endpoint was made again, not changed", id, got)
	}

	if err := ports.Delete(context.Background(), n, p.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, "the deleted port's vRouter port removed", func() bool { return vrPort() == nil })
	t.Logf("detached after %s (poll interval %s)", time.Since(start).Round(time.Millisecond), PollInterval)
}

// ownAddress is an IPv4 address of this host that is not loopback.
func ownAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && ip.IP.IsGlobalUnicast() {
			return ip.IP.String()
		}
	}
	testenv.Unavailable(t, "no IPv4 address but loopback for the agent's (unused) BGP controller")
	return ""
}
