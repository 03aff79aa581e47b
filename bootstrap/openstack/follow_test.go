package openstack

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
)

// A Neutron network is a Weft network by its ID, by its name, or by its
// segmentation id (matchVNI); anything else is refused with the reason.
func TestMapping(t *testing.T) {
	c := needCloud(t)
	n := admin(t, c)
	suffix := uuid()[:8]
	idNet, _ := makeNetwork(t, n, "by-id-"+suffix, 1101, "10.11.1.0/24")
	nameNet, _ := makeNetwork(t, n, "db-"+suffix, 1102, "10.11.2.0/24")
	segNet, _ := makeNetwork(t, n, "seg-"+suffix, 1103, "10.11.3.0/24")
	strayNet, _ := makeNetwork(t, n, "stray-"+suffix, 1104, "10.11.4.0/24")
	cfg, err := config.Parse(fmt.Appendf(nil, `
networks:
  - {name: web, vni: 7, routeTargets: {import: ["64512:7"], export: ["64512:7"]}}
  - {name: db, vni: 8, routeTargets: {import: ["64512:8"], export: ["64512:8"]}}
  - {name: seg, vni: 1103, routeTargets: {import: ["64512:1103"], export: ["64512:1103"]}}
join:
  openstack:
    authURL: %s
    password: {username: admin, password: x, project: admin}
    networks: [{neutron: %s, network: web}, {neutron: db-%s, network: db}]
    matchVNI: true
`, c.AuthURL, idNet, suffix))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Dial(context.Background(), adminJoin(c), quiet())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMapping(cfg)
	resolve := func(id string) (string, error) {
		nw, err := s.Network(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return m.Resolve(nw)
	}
	if got, err := resolve(idNet); got != "web" || err != nil {
		t.Errorf("by ID: %q, %v; want web", got, err)
	}
	nets, _ := s.Network(context.Background(), segNet)
	if nets.SegmentationID != 1103 || nets.Type != "vxlan" {
		t.Errorf("network %s: segmentation %d type %q, want 1103 vxlan", segNet, nets.SegmentationID, nets.Type)
	}
	if got, err := resolve(segNet); got != "seg" || err != nil {
		t.Errorf("by segmentation id: %q, %v; want seg", got, err)
	}
	if got, err := resolve(strayNet); got != "" || err == nil {
		t.Errorf("an unmapped network: %q, %v; want an error", got, err)
	} else {
		t.Logf("unmapped: %v", err)
	}
	if got, err := resolve(nameNet); got != "db" || err != nil {
		t.Errorf("by name: %q, %v; want db", got, err)
	}
}

// memAgent keeps endpoints as the agent's API does, for the follower.
type memAgent struct {
	mu  sync.Mutex
	eps map[string]agentapi.Endpoint
}

func (a *memAgent) Endpoints() ([]agentapi.Endpoint, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []agentapi.Endpoint
	for _, e := range a.eps {
		out = append(out, e)
	}
	return out, nil
}

func (a *memAgent) AddEndpoint(e agentapi.Endpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.eps[e.Name] = e
	return nil
}

func (a *memAgent) RemoveEndpoint(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.eps, name)
	return nil
}

func (a *memAgent) get(name string) (agentapi.Endpoint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.eps[name]
	return e, ok
}

// waitFor polls cond for up to 30 s (generous: the follower polls every
// 200 ms here).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The instance's ports become endpoints on their networks with their
// addresses, MACs and allowed address pairs; ports added, changed and
// deleted later are followed.
func TestFollowInstancePorts(t *testing.T) {
	c := needCloud(t)
	n := admin(t, c)
	suffix := uuid()[:8]
	netID, subnetID := makeNetwork(t, n, "pg-"+suffix, 1201, "10.12.0.0/24")
	cfg, err := config.Parse(fmt.Appendf(nil, `
networks:
  - {name: db, vni: 1201, routeTargets: {import: ["64512:1201"], export: ["64512:1201"]}}
join:
  openstack: {authURL: %s, password: {username: admin, password: x, project: admin}, matchVNI: true}
`, c.AuthURL))
	if err != nil {
		t.Fatal(err)
	}
	instance := uuid()
	p1 := makePort(t, n, ports.CreateOpts{NetworkID: netID, DeviceID: instance, FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: "10.12.0.5"}},
		AllowedAddressPairs: []ports.AddressPair{{IPAddress: "10.12.0.50"}}})
	other := makePort(t, n, ports.CreateOpts{NetworkID: netID, DeviceID: uuid(), FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: "10.12.0.6"}}})

	s, err := Dial(context.Background(), adminJoin(c), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ag := &memAgent{eps: map[string]agentapi.Endpoint{"static": {Name: "static", Network: "db", Address: "10.12.0.99/24"}}}
	f := &Follower{Session: s, Agent: ag, Mapping: NewMapping(cfg), Instance: instance, Interval: 200 * time.Millisecond, Log: quiet()}
	if err := f.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	e1, ok := ag.get(EndpointName(p1.ID))
	want := agentapi.Endpoint{Name: EndpointName(p1.ID), Network: "db", Address: "10.12.0.5/24", MAC: p1.MACAddress,
		AllowedSources: []string{"10.12.0.50/32"}, NeutronPort: p1.ID}
	if !ok || !slices.Equal(e1.AllowedSources, want.AllowedSources) || e1.Name != want.Name || e1.Network != want.Network ||
		e1.Address != want.Address || e1.MAC != want.MAC || e1.NeutronPort != want.NeutronPort {
		t.Fatalf("endpoint of port %s: %+v (present %v), want %+v", p1.ID, e1, ok, want)
	}
	if _, ok := ag.get(EndpointName(other.ID)); ok {
		t.Errorf("another instance's port %s was attached", other.ID)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)

	// A port added later, without port security: any source is allowed.
	off := false
	p2 := makePort(t, n, portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: netID, DeviceID: instance,
		FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: "10.12.0.7"}}, SecurityGroups: &[]string{}}, PortSecurityEnabled: &off})
	start := time.Now()
	waitFor(t, "the added port attached", func() bool { _, ok := ag.get(EndpointName(p2.ID)); return ok })
	t.Logf("added port attached after %s", time.Since(start).Round(time.Millisecond))
	if e2, _ := ag.get(EndpointName(p2.ID)); !slices.Equal(e2.AllowedSources, []string{"0.0.0.0/0", "::/0"}) {
		t.Errorf("port without port security: allowed sources %v, want any", e2.AllowedSources)
	}

	// An allowed address pair added: the endpoint's allowed sources follow.
	pairs := []ports.AddressPair{{IPAddress: "10.12.0.50"}, {IPAddress: "10.12.0.64/28"}}
	if _, err := ports.Update(context.Background(), n, p1.ID, ports.UpdateOpts{AllowedAddressPairs: &pairs}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new allowed address pair reached the endpoint", func() bool {
		e, _ := ag.get(EndpointName(p1.ID))
		return slices.Equal(e.AllowedSources, []string{"10.12.0.50/32", "10.12.0.64/28"})
	})

	// The first port deleted: its endpoint goes, the static one stays.
	if err := ports.Delete(context.Background(), n, p1.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, "the deleted port detached", func() bool { _, ok := ag.get(EndpointName(p1.ID)); return !ok })
	t.Logf("deleted port detached after %s", time.Since(start).Round(time.Millisecond))
	if _, ok := ag.get("static"); !ok {
		t.Error("the follower removed an endpoint that came from no Neutron port")
	}
	if _, ok := ag.get(EndpointName(p2.ID)); !ok {
		t.Error("the other port's endpoint went with the deleted one")
	}
}
