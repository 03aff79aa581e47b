package agent

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
)

// The reference scenario of DESIGN.md: leonardo pods, db VMs joined by a
// route target, nginx allowed to reach leonardo on TCP 8000, and another
// tenant with the same addresses.
const referenceYAML = `
bgp: {asn: 64512, controllers: [{address: 192.0.2.254}]}
overlay: {encapsulation: [mplsoudp, vxlan, mplsogre]}
networks:
  - {name: leonardo, vni: 100, routeTargets: {import: ["64512:100"], export: ["64512:100"]}, subnets: ["10.0.10.0/24"]}
  - {name: db, vni: 200, routeTargets: {import: ["64512:100", "64512:200"], export: ["64512:200", "64512:100"]}, subnets: ["10.0.100.0/24"]}
  - {name: nginx, vni: 300, routeTargets: {import: ["64512:300"], export: ["64512:300"]}, subnets: ["10.0.30.0/24"]}
  - {name: other, vni: 400, routeTargets: {import: ["64512:400"], export: ["64512:400"]}, subnets: ["10.0.10.0/24"]}
policies:
  - {from: nginx, to: leonardo, allow: [{protocol: tcp, ports: [8000]}]}
endpoints:
  - {name: leo1, network: leonardo, address: 10.0.10.5/24, node: a}
  - {name: web1, network: nginx, address: 10.0.30.5/24, node: a}
  - {name: oth1, network: other, address: 10.0.10.5/24, node: a}
  - {name: pg1, network: db, address: 10.0.100.3/24, node: b}
`

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func localEndpoints(c *config.Config, node string) []LocalEndpoint {
	var out []LocalEndpoint
	for _, e := range c.LocalEndpoints(node) {
		out = append(out, LocalEndpoint{Name: e.Name, Network: e.Network, Address: e.Address, Netns: e.Name})
	}
	return out
}

var allTunnels = []packet.Encap{packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN}

// rt is a received route target, as weft.yaml writes it.
func rt(s string) bgp.RouteTarget {
	r, err := config.ParseRouteTarget(s)
	if err != nil {
		panic(err)
	}
	return r
}

func TestComputeReferenceScenario(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	// Node a sees pg1 (db) advertised by node b over VPN and EVPN.
	pg1 := Path{RD: "192.0.2.2:2", Prefix: netip.MustParsePrefix("10.0.100.3/32"), NextHop: netip.MustParseAddr("192.0.2.2"),
		RTs: []bgp.RouteTarget{rt("64512:200"), rt("64512:100")}, OriginVN: 200,
		Label: 17, Encaps: []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN}, HasVPN: true, VNI: 200, HasEVPN: true}
	// And an endpoint of "other" on b in the subnet leonardo uses too.
	oth2 := Path{RD: "192.0.2.2:3", Prefix: netip.MustParsePrefix("10.0.10.6/32"), NextHop: netip.MustParseAddr("192.0.2.2"),
		RTs: []bgp.RouteTarget{rt("64512:400")}, OriginVN: 400, Label: 18, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, HasVPN: true}
	d := Compute(Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: localEndpoints(c, "a"),
		Paths: []Path{pg1, oth2}, Tunnels: allTunnels})

	if got := sortedKeysS(d.VRFs); !slices.Equal(got, []string{"leonardo", "nginx", "other"}) {
		t.Fatalf("VRFs %v, want leonardo nginx other (db has no endpoint on a)", got)
	}
	// leonardo imports db's 64512:100 export -> pg1 via MPLSoUDP (first in priority).
	k, ok := d.Routes[routeKey{"leonardo", netip.MustParsePrefix("10.0.100.3/32")}]
	if !ok {
		t.Fatal("leonardo has no route to pg1")
	}
	nh := d.NextHops[k]
	if nh.GetEncap() != vrouterv1.Encap_ENCAP_MPLSOUDP || nh.GetLabel() != 17 || nh.GetUnderlay() != "192.0.2.2" || nh.GetNetwork() != 200 {
		t.Errorf("pg1 next hop %v", nh)
	}
	// leo1 is local in leonardo; nginx gets it too (policy), other does not.
	for _, vrf := range []string{"leonardo", "nginx"} {
		if k := d.Routes[routeKey{vrf, netip.MustParsePrefix("10.0.10.5/32")}]; k != portNHKey("leo1") {
			t.Errorf("%s: 10.0.10.5 -> %q, want leo1's port", vrf, k)
		}
	}
	if k := d.Routes[routeKey{"other", netip.MustParsePrefix("10.0.10.5/32")}]; k != portNHKey("oth1") {
		t.Errorf("other: 10.0.10.5 -> %q, want oth1's port (never leo1)", k)
	}
	if _, ok := d.Routes[routeKey{"other", netip.MustParsePrefix("10.0.10.6/32")}]; !ok {
		t.Error("other lacks its remote endpoint oth2")
	}
	if _, ok := d.Routes[routeKey{"leonardo", netip.MustParsePrefix("10.0.10.6/32")}]; ok {
		t.Error("leonardo must not see other's oth2")
	}
	if _, ok := d.Routes[routeKey{"other", netip.MustParsePrefix("10.0.100.3/32")}]; ok {
		t.Error("other must not see pg1")
	}
	// Rules: the policy, and route-target joins both ways for leonardo/db.
	var names []string
	for _, r := range d.Rules {
		names = append(names, r.GetName())
	}
	for _, want := range []string{"->leonardo", "route-target leonardo->db", "route-target db->leonardo"} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, want) }) {
			t.Errorf("rules %q lack %q", names, want)
		}
	}
	if d.Rules[0].GetProtocol() != 6 || d.Rules[0].GetDstPorts()[0].GetFirst() != 8000 {
		t.Errorf("policy rule %v", d.Rules[0])
	}
}

func TestComputeEncapChoice(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	base := Path{RD: "192.0.2.2:1", Prefix: netip.MustParsePrefix("10.0.10.9/32"), NextHop: netip.MustParseAddr("192.0.2.2"),
		RTs: []bgp.RouteTarget{rt("64512:100")}, OriginVN: 100, Label: 20, VNI: 100}
	tests := []struct {
		name    string
		prio    []config.Encapsulation
		tunnels []packet.Encap
		vpn     []packet.Encap
		hasVPN  bool
		hasEVPN bool
		want    vrouterv1.Encap
	}{
		{"first choice offered", config.DefaultEncapsulations, allTunnels, []packet.Encap{packet.EncapMPLSoUDP}, true, true, vrouterv1.Encap_ENCAP_MPLSOUDP},
		{"remote has only evpn", config.DefaultEncapsulations, allTunnels, nil, false, true, vrouterv1.Encap_ENCAP_VXLAN},
		{"vpn without communities is gre", []config.Encapsulation{config.EncapMPLSoUDP, config.EncapMPLSoGRE}, allTunnels, nil, true, false, vrouterv1.Encap_ENCAP_MPLSOGRE},
		{"local priority vxlan first", []config.Encapsulation{config.EncapVXLAN, config.EncapMPLSoUDP}, allTunnels, []packet.Encap{packet.EncapMPLSoUDP}, true, true, vrouterv1.Encap_ENCAP_VXLAN},
		{"no local tunnel for udp", config.DefaultEncapsulations, []packet.Encap{packet.EncapMPLSoGRE}, []packet.Encap{packet.EncapMPLSoUDP, packet.EncapMPLSoGRE}, true, true, vrouterv1.Encap_ENCAP_MPLSOGRE},
		{"nothing in common", []config.Encapsulation{config.EncapVXLAN}, allTunnels, []packet.Encap{packet.EncapMPLSoUDP}, true, false, vrouterv1.Encap_ENCAP_UNSPECIFIED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			cc.Overlay.Encapsulation = tc.prio
			p := base
			p.Encaps, p.HasVPN, p.HasEVPN = tc.vpn, tc.hasVPN, tc.hasEVPN
			d := Compute(Inputs{Config: &cc, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: localEndpoints(c, "a"), Paths: []Path{p}, Tunnels: tc.tunnels})
			k, ok := d.Routes[routeKey{"leonardo", p.Prefix}]
			if tc.want == vrouterv1.Encap_ENCAP_UNSPECIFIED {
				if ok {
					t.Fatalf("route via %v, want none", d.NextHops[k])
				}
				return
			}
			if got := d.NextHops[k].GetEncap(); got != tc.want {
				t.Fatalf("encap %v, want %v", got, tc.want)
			}
		})
	}
}

func TestComputeECMPAndOwnRoutes(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	var paths []Path
	for i, nh := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.1"} {
		paths = append(paths, Path{RD: nh + ":1", Prefix: netip.MustParsePrefix("10.0.10.100/32"), NextHop: netip.MustParseAddr(nh),
			RTs: []bgp.RouteTarget{rt("64512:100")}, OriginVN: 100, Label: uint32(30 + i), Encaps: []packet.Encap{packet.EncapMPLSoUDP}, HasVPN: true})
	}
	d := Compute(Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: localEndpoints(c, "a"), Paths: paths, Tunnels: allTunnels})
	k := d.Routes[routeKey{"leonardo", netip.MustParsePrefix("10.0.10.100/32")}]
	if d.NextHops[k].GetKind() != vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE || len(d.Composites[k]) != 3 {
		t.Fatalf("anycast from three remotes (and our own reflected path ignored): %v members %v", d.NextHops[k], d.Composites[k])
	}
	if d.NextHops[k].GetNetwork() != 100 {
		t.Errorf("composite network %d, want 100", d.NextHops[k].GetNetwork())
	}
}

// applyOps plays ops onto an Installed by the vRouter's rules (a port in
// a missing VRF, a delete of what is still named, a route to a missing
// next hop are refused), filling in what the vRouter chooses, enough to
// check that plans converge.
func applyOps(t *testing.T, in *Installed, ops []*vrouterv1.Op) {
	t.Helper()
	if n, err := in.Apply(ops); err != nil {
		t.Fatalf("applied %d of %d: %v", n, len(ops), err)
	}
	for _, op := range ops {
		if p := in.Ports[op.GetPutPort().GetId()]; p != nil {
			p.Mac = []byte{2, 0, 0, 0, 0, byte(p.Id)} // the vRouter fills these in
			p.Mtu = 1450
		}
	}
}

func TestPlanConvergesAndRestartChangesNothing(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	pg1 := Path{RD: "192.0.2.2:2", Prefix: netip.MustParsePrefix("10.0.100.3/32"), NextHop: netip.MustParseAddr("192.0.2.2"),
		RTs: []bgp.RouteTarget{rt("64512:100")}, OriginVN: 200, Label: 17, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, HasVPN: true}
	in := Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: localEndpoints(c, "a"), Paths: []Path{pg1}, Tunnels: allTunnels}
	inst := NewInstalled()
	p1 := MakePlan(Compute(in), inst)
	if len(p1.Ops) == 0 {
		t.Fatal("first plan is empty")
	}
	applyOps(t, inst, p1.Ops)
	// A restarted agent computes the same and finds nothing to do.
	p2 := MakePlan(Compute(in), inst)
	if len(p2.Ops) != 0 {
		t.Fatalf("second plan: %d ops, first %v", len(p2.Ops), p2.Ops[0])
	}
	for ep, l := range p1.LabelOf {
		if p2.LabelOf[ep] != l {
			t.Errorf("label of %s moved from %d to %d", ep, l, p2.LabelOf[ep])
		}
	}
	// The remote withdraws pg1, and web1 goes away: routes, next hops, the
	// port and the nginx VRF are removed in an order the vRouter accepts.
	in.Paths = nil
	in.Endpoints = slices.DeleteFunc(slices.Clone(in.Endpoints), func(e LocalEndpoint) bool { return e.Name == "web1" })
	p3 := MakePlan(Compute(in), inst)
	applyOps(t, inst, p3.Ops)
	if len(inst.VRFs) != 2 || len(inst.Ports) != 2 {
		t.Errorf("after removal: %d VRFs, %d ports; want 2 and 2", len(inst.VRFs), len(inst.Ports))
	}
	if p := MakePlan(Compute(in), inst); len(p.Ops) != 0 {
		t.Errorf("not converged: %v", p.Ops)
	}
	// Labels of the remaining endpoints are unchanged.
	for _, ep := range []string{"leo1", "oth1"} {
		if p3.LabelOf[ep] != p1.LabelOf[ep] {
			t.Errorf("label of %s moved", ep)
		}
	}
}

// A Neutron port's allowed address pairs reach the vRouter's port (its
// anti-spoofing lets them through) and are routed and announced to it.
func TestAllowedSources(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	vip := netip.MustParsePrefix("10.0.100.50/32")
	eps := []LocalEndpoint{{Name: "pg9", Network: "db", Address: netip.MustParsePrefix("10.0.100.9/24"), Netns: "pg9",
		AllowedSources: []netip.Prefix{vip, netip.MustParsePrefix("0.0.0.0/0")}, NeutronPort: "0b0e"}}
	d := Compute(Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: eps, Tunnels: allTunnels})
	if got := d.Ports["pg9"].GetAllowedSources(); !slices.Equal(got, []string{"10.0.100.50/32", "0.0.0.0/0"}) {
		t.Errorf("port allowed_sources = %v, want [10.0.100.50/32 0.0.0.0/0]", got)
	}
	// Any source (port security off) is no default route.
	if k, ok := d.Routes[routeKey{"db", netip.MustParsePrefix("0.0.0.0/0")}]; ok {
		t.Errorf("0.0.0.0/0 routes to %q: an allowed source of any address became a route", k)
	}
	for _, vrf := range []string{"db"} {
		if d.Routes[routeKey{vrf, vip}] != portNHKey("pg9") {
			t.Errorf("vrf %s: %s routes to %q, want the port", vrf, vip, d.Routes[routeKey{vrf, vip}])
		}
	}
	p := MakePlan(d, NewInstalled())
	var announced []netip.Prefix
	for _, r := range announcements(c, eps, p, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1"), allTunnels, packet.MAC{2}) {
		announced = append(announced, r.Prefix)
	}
	if !slices.Contains(announced, vip) || !slices.Contains(announced, netip.MustParsePrefix("10.0.100.9/32")) {
		t.Errorf("announced %v, want the address and the allowed source", announced)
	}
}

// An endpoint on a device (a VM's tap on a Nova compute host) is an
// AF_PACKET port on that netdev, in no namespace; the API refuses one
// with a namespace or without the VM's MAC (AF_PACKET has no MAC of its
// own to give it).
func TestDeviceEndpoint(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	ep := LocalEndpoint{Name: "os-0b0e", Network: "db", Address: netip.MustParsePrefix("10.0.100.9/24"), MAC: packet.MAC{0xfa, 0x16, 0x3e, 0, 0, 9},
		Device: "tap0b0e1234-56", NeutronPort: "0b0e1234-5678"}
	d := Compute(Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: []LocalEndpoint{ep}, Tunnels: allTunnels})
	p := d.Ports["os-0b0e"]
	if p.GetKind() != vrouterv1.PortKind_PORT_KIND_AF_PACKET || p.GetIfname() != "tap0b0e1234-56" || p.GetNetns() != "" ||
		!slices.Equal(p.GetAddresses(), []string{"10.0.100.9/24"}) || len(p.GetMac()) != 6 {
		t.Errorf("port %v: want AF_PACKET on tap0b0e1234-56 in no namespace, with the address and MAC", p)
	}
	decl := newDeclared("a", c, slog.New(slog.DiscardHandler))
	if got, err := decl.add(ep); err != nil || got.Netns != "" {
		t.Errorf("add: %+v, %v; want it added without a namespace", got, err)
	}
	withNS := ep
	withNS.Name, withNS.Netns = "os-1", "ns1"
	noMAC := ep
	noMAC.Name, noMAC.MAC = "os-2", packet.MAC{}
	for _, bad := range []LocalEndpoint{withNS, noMAC} {
		if _, err := decl.add(bad); err == nil {
			t.Errorf("add %+v: accepted", bad)
		}
	}
}

// TestComputeImportTargets: a node asks (RFC 4684) for the route targets
// its VRFs import and for the exports of the networks joined to them by
// policy, and for nothing of a network it does not host; the counts
// follow the paths each VRF imports and accepts.
func TestComputeImportTargets(t *testing.T) {
	c := mustConfig(t, referenceYAML)
	for _, tc := range []struct {
		node string
		want []string
	}{
		// leonardo imports 100; nginx (joined by policy) exports 300 and
		// imports 300; leonardo, joined to nginx, exports 100; other 400.
		{"a", []string{"64512:100", "64512:300", "64512:400"}},
		// db imports 100 and 200; no policy.
		{"b", []string{"64512:100", "64512:200"}},
		{"c", nil},
		// leonardo alone: nginx is joined by policy only, so its export.
		{"leo1 only", []string{"64512:100", "64512:300"}},
	} {
		eps := localEndpoints(c, tc.node)
		if tc.node == "leo1 only" {
			eps = localEndpoints(c, "a")[:1]
		}
		d := Compute(Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: eps, Tunnels: allTunnels})
		var got []string
		for _, r := range d.ImportTargets {
			got = append(got, r.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("node %s: import targets %v, want %v", tc.node, got, tc.want)
		}
	}
	paths := []Path{
		{RD: "192.0.2.2:1", Prefix: netip.MustParsePrefix("10.0.100.3/32"), NextHop: netip.MustParseAddr("192.0.2.2"), RTs: []bgp.RouteTarget{rt("64512:200"), rt("64512:100")},
			OriginVN: 200, HasVPN: true, Label: 17, Encaps: []packet.Encap{packet.EncapMPLSoUDP}},
		// No encapsulation a has: received, not accepted.
		{RD: "192.0.2.3:1", Prefix: netip.MustParsePrefix("10.0.100.4/32"), NextHop: netip.MustParseAddr("192.0.2.3"), RTs: []bgp.RouteTarget{rt("64512:100")},
			OriginVN: 200, HasVPN: true, Label: 18, Encaps: []packet.Encap{packet.EncapMPLSoGRE}},
	}
	d := Compute(Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: localEndpoints(c, "a"), Tunnels: []packet.Encap{packet.EncapMPLSoUDP}, Paths: paths})
	if got, want := d.Imported["leonardo"], (PathCounts{Received: 2, Accepted: 1}); got != want {
		t.Errorf("leonardo: %+v, want %+v", got, want)
	}
	if got := d.Imported["other"]; got != (PathCounts{}) {
		t.Errorf("other: %+v, want nothing", got)
	}
}

// TestSameTunnelKnowsEveryField: sameTunnel, MakePlan's fast proto.Equal
// for tunnel next hops, tells apart two next hops that differ in any one
// field of NextHop, including a field added after it was written.
func TestSameTunnelKnowsEveryField(t *testing.T) {
	base := &vrouterv1.NextHop{Id: 7, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL, Port: 1, Encap: vrouterv1.Encap_ENCAP_MPLSOUDP,
		Underlay: "192.0.2.9", Label: 17, Vni: 100, RouterMac: []byte{2, 0, 0, 0, 0, 1}, Members: []uint32{1}, Network: 100, Vrf: 1,
		AcceptEncaps: []vrouterv1.Encap{vrouterv1.Encap_ENCAP_VXLAN}}
	if !sameTunnel(base, proto.CloneOf(base)) {
		t.Fatal("sameTunnel: a next hop differs from its copy")
	}
	fields := base.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		other := proto.CloneOf(base)
		m := other.ProtoReflect()
		switch {
		case fd.IsList():
			l := m.NewField(fd).List()
			l.Append(l.NewElement())
			l.Append(l.NewElement())
			m.Set(fd, protoreflect.ValueOfList(l))
		case fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, protoreflect.ValueOfBytes([]byte{9}))
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("198.51.100.1"))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(m.Get(fd).Enum()+1))
		case fd.Kind() == protoreflect.Uint32Kind:
			m.Set(fd, protoreflect.ValueOfUint32(uint32(m.Get(fd).Uint())+1))
		default:
			t.Fatalf("NextHop.%s: a field of kind %v; teach sameTunnel and this test about it", fd.Name(), fd.Kind())
		}
		if sameTunnel(base, other) {
			t.Errorf("sameTunnel does not see a change of NextHop.%s", fd.Name())
		}
	}
}
