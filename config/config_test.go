package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/routetarget"
)

func mustParseFile(t *testing.T, name string) *Config {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", name, err)
	}
	return c
}

func TestParseReferenceScenario(t *testing.T) {
	c := mustParseFile(t, "testdata/weft.yaml")

	if c.Node.Hostname != "" || c.Node.RouterID.IsValid() {
		t.Errorf("node: auto should decode to zero values, got %+v", c.Node)
	}
	if c.BGP == nil || c.BGP.ASN != 64512 || len(c.BGP.Controllers) != 2 {
		t.Fatalf("bgp = %+v", c.BGP)
	}
	if got := c.BGP.Controllers[0]; got.Address != netip.MustParseAddr("192.0.2.1") || got.Password != "s3cret" {
		t.Errorf("controllers[0] = %+v", got)
	}
	wantEnc := []Encapsulation{EncapMPLSoUDP, EncapVXLAN, EncapMPLSoGRE}
	if !reflect.DeepEqual(c.Overlay.Encapsulations(), wantEnc) || c.Overlay.MTU != 0 {
		t.Errorf("overlay = %+v", c.Overlay)
	}
	db := c.Network("db")
	if db == nil || db.VNI != 200 || db.Gateway != netip.MustParseAddr("10.0.100.1") {
		t.Fatalf("network db = %+v", db)
	}
	// leonardo and db share route target 64512:100 / 64512:200.
	leo := c.Network("leonardo")
	shared := map[RouteTarget]bool{}
	for _, rt := range leo.RouteTargets.Export {
		shared[rt] = true
	}
	found := false
	for _, rt := range db.RouteTargets.Import {
		found = found || shared[rt]
	}
	if !found {
		t.Errorf("leonardo's export %v is not in db's import %v", leo.RouteTargets.Export, db.RouteTargets.Import)
	}
	other := c.Network("other-tenant-db")
	if other.RouteTargets.Import[0] != (RouteTarget{Type: routetarget.AS4, ASN: 4200000000, Local: 1}) {
		t.Errorf("other tenant import = %+v", other.RouteTargets.Import[0])
	}
	if p := c.Policies[0]; p.From != "nginx" || p.To != "leonardo" || p.Allow[0].Protocol != ProtoTCP || p.Allow[0].Ports[0] != (PortRange{8000, 8000}) {
		t.Errorf("policies[0] = %+v", p)
	}
	if e := c.Endpoints[0]; e.Name != "pg1" || e.Address != netip.MustParsePrefix("10.0.100.3/24") || e.Netns != "pg1" {
		t.Errorf("endpoints[0] = %+v", e)
	}
	if c.Join.Kubernetes == nil || c.Join.Kubernetes.DefaultNetwork != "nginx" || c.Join.OpenStack == nil || c.Join.OpenStack.Region != "RegionOne" {
		t.Errorf("join = %+v", c.Join)
	}
	if !strings.Contains(c.Summary(), "4 networks") {
		t.Errorf("summary = %q", c.Summary())
	}
}

func TestConfigUnderlay(t *testing.T) {
	c := mustParseFile(t, "testdata/weft.yaml")
	u, ok := c.Underlay()
	if !ok {
		t.Fatal("underlay section not reported")
	}
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	want := []Link{
		{ID: "eno1", Kind: LinkPhy, Match: LinkMatch{MAC: mac("52:54:00:00:00:01")}, MTU: 9000},
		{ID: "eno2", Kind: LinkPhy, Match: LinkMatch{MAC: mac("52:54:00:00:00:02")}, MTU: 9000},
		{ID: "bond0", Kind: LinkBond, Name: "bond0", MTU: 9000, BondMembers: []string{"eno1", "eno2"}, BondMode: "802.3ad", BondMiimon: 100},
		{ID: "bond0.101", Kind: LinkVLAN, Name: "bond0.101", VLANParent: "bond0", VLANID: 101,
			Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24")},
			Routes: []Route{
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("192.0.2.254"), Metric: 100},
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1")},
			}},
		{ID: "eth2", Kind: LinkPhy, Match: LinkMatch{Name: "eth2"}, DHCP4: true},
	}
	for i := range want {
		if want[i].Addresses == nil {
			want[i].Addresses = []netip.Prefix{}
		}
	}
	for i := range u.Links {
		if u.Links[i].Addresses == nil {
			u.Links[i].Addresses = []netip.Prefix{}
		}
	}
	if !reflect.DeepEqual(u.Links, want) {
		t.Errorf("links:\n got %+v\nwant %+v", u.Links, want)
	}

	c2, err := Parse([]byte("bgp: {asn: 1, controllers: [{address: 192.0.2.1}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c2.Underlay(); ok {
		t.Error("absent underlay section reported as present")
	}
}

// TestParseErrors checks that each mistake is reported at its path and line.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string // substrings, each must be in one error line
	}{
		{"empty", "", []string{"weft.yaml: the document is empty"}},
		{"only comments", "# nothing\n", []string{"the document is empty"}},
		{"null", "~\n", []string{"the document is empty"}},
		{"two documents", "node: {}\n---\nnode: {}\n", []string{"more than one YAML document"}},
		{"syntax", "node: [\n", []string{"weft.yaml: yaml: line"}},
		{"not a mapping", "- a\n", []string{"weft.yaml (line 1): expected a mapping with keys node, underlay"}},
		{"asn out of range", "bgp:\n  asn: 64512\n  controllers:\n    - {address: 192.0.2.1}\n    - address: 192.0.2.2\n      asn: 4294967296\n",
			[]string{"bgp.controllers[1].asn (line 6): 4294967296 is out of range 1..4294967295"}},
		{"asn zero", "bgp: {asn: 0, controllers: [{address: 192.0.2.1}]}\n", []string{"bgp.asn (line 1): 0 is out of range 1..4294967295"}},
		{"asn huge", "bgp: {asn: 99999999999999999999999, controllers: [{address: 192.0.2.1}]}\n", []string{"bgp.asn (line 1): 99999999999999999999999 is out of range"}},
		{"asn text", "bgp: {asn: many, controllers: [{address: 192.0.2.1}]}\n", []string{`bgp.asn (line 1): expected an integer, got "many"`}},
		{"asn missing", "bgp: {controllers: [{address: 192.0.2.1}]}\n", []string{"bgp.asn (line 1): required"}},
		{"no controllers", "bgp: {asn: 1}\n", []string{"bgp.controllers (line 1): required"}},
		{"unknown key suggestion", "networks:\n  - name: a\n    vnii: 7\n", []string{`networks[0].vnii (line 3): unknown key; did you mean "vni"?`, "networks[0].vni (line 2): required"}},
		{"unknown key case", "node: {routerid: auto}\n", []string{`node.routerid (line 1): unknown key; did you mean "routerID"?`}},
		{"unknown top key", "netwroks: []\n", []string{`netwroks (line 1): unknown key; did you mean "networks"?`}},
		{"repeated key", "node: {}\nnode: {}\n", []string{"node (line 2): key repeated (first at line 1)"}},
		{"merge key used", "node:\n  <<: {hostname: a}\n", []string{"node.<< (line 2): merge keys (<<) are not supported"}},
		{"vni range", "networks: [{name: a, vni: 16777216}]\n", []string{"networks[0].vni (line 1): 16777216 is out of range 1..16777215"}},
		{"duplicate network", "networks:\n  - {name: a, vni: 1}\n  - {name: a, vni: 1}\n",
			[]string{`networks[1].name (line 3): network "a" is already defined at networks[0]`, "networks[1].vni (line 3): VNI 1 is already used by networks[0]"}},
		{"bad subnet", "networks: [{name: a, vni: 1, subnets: [10.0.0.0/33]}]\n", []string{`networks[0].subnets[0] (line 1): "10.0.0.0/33" is not an address with a prefix length`}},
		{"host bits", "networks: [{name: a, vni: 1, subnets: [10.0.0.1/24]}]\n", []string{"did you mean 10.0.0.0/24?"}},
		{"overlap", "networks: [{name: a, vni: 1, subnets: [10.0.0.0/16, 10.0.1.0/24]}]\n", []string{"networks[0].subnets[1] (line 1): 10.0.1.0/24 overlaps 10.0.0.0/16"}},
		{"gateway outside", "networks: [{name: a, vni: 1, subnets: [10.0.0.0/24], gateway: 10.0.1.1}]\n", []string{"networks[0].gateway (line 1): 10.0.1.1 is in none"}},
		{"gateway broadcast", "networks: [{name: a, vni: 1, subnets: [10.0.0.0/24], gateway: 10.0.0.255}]\n", []string{"broadcast address"}},
		{"route target", "networks: [{name: a, vni: 1, routeTargets: {import: ['1.2.3.4:70000', '64512', 'target:0:1', '1.0:5', '4200000000L:1']}}]\n",
			[]string{"import[0] (line 1): route target \"1.2.3.4:70000\"", "import[1] (line 1): route target \"64512\": want ASN:number", "import[2] (line 1): route target \"target:0:1\": AS 0 is reserved"}},
		{"route target repeated", "networks: [{name: a, vni: 1, routeTargets: {export: ['64512:1', 'target:64512:1']}}]\n", []string{"export[1] (line 1): 64512:1 is already listed"}},
		{"policy refs", "networks: [{name: nginx, vni: 1}]\npolicies:\n  - {from: ngnix, to: leo, allow: [{protocol: tcp}]}\n",
			[]string{`policies[0].from (line 3): no network is called "ngnix"; did you mean "nginx"?`, `policies[0].to (line 3): no network is called "leo"`}},
		{"policy ports", "networks: [{name: a, vni: 1}, {name: b, vni: 2}]\npolicies: [{from: a, to: b, allow: [{ports: [80]}, {protocol: tcp, ports: [0]}, {protocol: sctp}]}]\n",
			[]string{"policies[0].allow[0].ports (line 2): ports need protocol tcp or udp, not any", `allow[1].ports[0] (line 2): "0" is not a port`, `allow[2].protocol (line 2): "sctp" is not a protocol`}},
		{"policy no rules", "networks: [{name: a, vni: 1}, {name: b, vni: 2}]\npolicies: [{from: a, to: b}]\n", []string{"policies[0].allow (line 2): required"}},
		{"endpoint outside subnet", "networks: [{name: db, vni: 1, subnets: [10.0.100.0/24]}]\nendpoints:\n  - {name: pg1, network: db, address: 10.0.101.3/24}\n",
			[]string{`endpoints[0].address (line 3): 10.0.101.3 is in none of the subnets of network "db" (10.0.100.0/24)`}},
		{"endpoint network", "endpoints: [{name: pg1, network: db, address: 10.0.100.3/24}]\n", []string{`endpoints[0].network (line 1): no network is called "db"`}},
		{"endpoint no prefix", "networks: [{name: db, vni: 1}]\nendpoints: [{name: pg1, network: db, address: 10.0.100.3}]\n", []string{"endpoints[0].address (line 2): \"10.0.100.3\" is not an address with a prefix length"}},
		{"endpoint dup", "networks: [{name: db, vni: 1}]\nendpoints:\n  - {name: a, network: db, address: 10.0.0.2/24}\n  - {name: b, network: db, address: 10.0.0.2/24}\n",
			[]string{"endpoints[1].address (line 4): 10.0.0.2 is already endpoints[0]'s address"}},
		{"mtu", "overlay: {mtu: 100}\n", []string{"overlay.mtu (line 1): 100 is out of range 576..65535"}},
		{"underlay mtu", "underlay: {links: [{match: {name: eth0}, mtu: 100}, {match: {name: eth1}, mtu: 65536}]}\n",
			[]string{"underlay.links[0].mtu (line 1): 100 is out of range 576..65535", "underlay.links[1].mtu (line 1): 65536 is out of range 576..65535"}},
		{"mtu text", "overlay: {mtu: big}\n", []string{`overlay.mtu (line 1): expected an integer or auto, got "big"`}},
		{"encapsulation", "overlay: {encapsulation: [vxlan, gre, vxlan]}\n",
			[]string{`overlay.encapsulation[1] (line 1): "gre" is not an encapsulation`, "overlay.encapsulation[2] (line 1): vxlan is already listed"}},
		{"wrong types", "node: [a]\nunderlay: {links: {}}\n", []string{"node (line 1): expected a mapping", "underlay.links (line 2): expected a list, got a mapping"}},
		{"bool", "underlay: {links: [{match: {name: eth0}, dhcp: yes}]}\n", []string{`underlay.links[0].dhcp (line 1): expected true or false, got "yes"`}},
		{"optional bool", "bgp: {asn: 1, routeTargetConstraint: 1}\n", []string{`bgp.routeTargetConstraint (line 1): expected true or false, got the number 1`}},
		{"underlay refs", "underlay:\n  links:\n    - {name: bond0, bond: {members: [eth0, eth9], mode: lacp}}\n    - {match: {name: eth0}}\n    - {name: v, vlan: {parent: nope, id: 4095}}\n",
			[]string{`underlay.links[0].bond.members[1] (line 3): no underlay link is called "eth9"`, `underlay.links[0].bond.mode (line 3): "lacp" is not a bonding mode`,
				"underlay.links[2].vlan.id (line 5): 4095 is out of range 1..4094", `underlay.links[2].vlan.parent (line 5): no underlay link is called "nope"`}},
		{"underlay no match", "underlay: {links: [{dhcp: true}]}\n", []string{"underlay.links[0].match (line 1): a NIC needs match.mac or match.name"}},
		{"underlay mac", "underlay: {links: [{match: {mac: 52:54:00}}]}\n", []string{`underlay.links[0].match.mac (line 1): "52:54:00" is not a MAC address`}},
		{"hostname", "node: {hostname: under_score}\n", []string{"node.hostname (line 1): \"under_score\" is not a valid hostname"}},
		{"router id", "node: {routerID: 2001:db8::1}\n", []string{"node.routerID (line 1): 2001:db8::1 is not a usable router ID"}},
		{"keepalive", "bgp: {asn: 1, holdTime: 9, keepalive: 4, controllers: [{address: 192.0.2.1}]}\n", []string{"bgp.keepalive (line 1): 4 s is more than a third"}},
		{"md5", "bgp: {asn: 1, controllers: [{address: 192.0.2.1, password: " + strings.Repeat("x", 81) + "}]}\n", []string{"bgp.controllers[0].password (line 1): 81 characters"}},
		{"join", "join:\n  kubernetes: {server: 'http://k', token: abc}\n  openstack: {authURL: keystone}\n",
			[]string{`join.kubernetes.server (line 2): "http://k" is not an https:// URL`, "join.kubernetes.token (line 2): not a bootstrap token",
				`join.openstack.authURL (line 3): "keystone" is not an http(s):// URL`, "join.openstack.applicationCredential.id (line 3): required"}},
		{"kubernetes kubeconfig and bootstrap", "networks: [{name: web, vni: 7}]\njoin:\n  kubernetes: {kubeconfig: kubelet.conf, token: abcdef.0123456789abcdef, defaultNetwork: db}\n",
			[]string{`join.kubernetes.defaultNetwork (line 3): no network is called "db"`, `join.kubernetes.kubeconfig (line 3): "kubelet.conf" is not an absolute path`,
				"join.kubernetes.token (line 3): give kubeconfig (a node with a credential) or server, token and caCertHashes (a bootstrap), not both"}},
		{"openstack both credentials", "join:\n  openstack: {authURL: 'http://k/v3', applicationCredential: {id: a, secret: b}, password: {username: u, password: p, project: x}, matchVNI: true}\n",
			[]string{"join.openstack.password (line 2): give applicationCredential or password, not both"}},
		{"openstack password fields", "join:\n  openstack: {authURL: 'http://k/v3', password: {username: u}, matchVNI: true}\n",
			[]string{"join.openstack.password.password (line 2): required", "join.openstack.password.project (line 2): required"}},
		{"openstack mapping", "networks: [{name: db, vni: 7}]\njoin:\n  openstack:\n    authURL: 'http://k/v3'\n    applicationCredential: {id: a, secret: b}\n    caCert: nonsense\n    networks: [{neutron: n1, network: db}, {neutron: n1, network: web}, {network: db}]\n",
			[]string{"join.openstack.caCert (line 6): not PEM", `join.openstack.networks[1].neutron (line 7): "n1" is mapped already by join.openstack.networks[0]`,
				`join.openstack.networks[1].network (line 7): no network is called "web"`, "join.openstack.networks[2].neutron (line 7): required"}},
		{"openstack vendorData2 and a credential", "join:\n  openstack: {authURL: 'http://k/v3', vendorData2: true, applicationCredential: {id: a, secret: b}, matchVNI: true}\n",
			[]string{"join.openstack.vendorData2 (line 2): the credential comes from vendor_data2.json"}},
		{"openstack no mapping", "join:\n  openstack: {authURL: 'http://k/v3', applicationCredential: {id: a, secret: b}}\n",
			[]string{"join.openstack.networks (line 2): required: map Neutron networks to Weft networks, or set matchVNI"}},
		{"alias bomb", aliasBomb(), []string{"document too large"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q; got:\n%s", w, msg)
				}
			}
			// Every joined error is a FieldError, so callers can list them.
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("no FieldError in %v", err)
			}
		})
	}
}

// aliasBomb is a small document that expands quadratically through
// aliases: a thousand references to a network with a thousand subnets.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("x: &n {name: a, vni: 1, subnets: [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("10.0.0.0/24")
	}
	b.WriteString("]}\nnetworks: [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("*n")
	}
	b.WriteString("]\n")
	return b.String()
}

func TestParseAcceptsNotations(t *testing.T) {
	doc := `
node: {hostname: node-1.example.net, routerID: 192.0.2.11}
bgp:
  asn: 0xFC00
  listenPort: -1
  controllers:
    - address: "2001:db8::1"
      asn: 4_200_000_000
      port: "1179"
overlay: {mtu: 8950, encapsulation: [VXLAN]}
networks:
  - {name: a, vni: 1, routeTargets: {import: [target:64512:4294967295, 192.0.2.1:65535, 1.10:7, 64512L:9]}}
policies:
  - {from: a, to: a, allow: [{protocol: udp, ports: [53, "1000-2000"]}]}
endpoints:
  - {name: e1, network: a, address: "2001:db8:a::5/64", mac: "02-00-00-00-00-05"}
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP.ASN != 64512 || c.BGP.ListenPort != -1 || c.BGP.Controllers[0].ASN != 4200000000 || c.BGP.Controllers[0].Port != 1179 {
		t.Errorf("bgp = %+v", c.BGP)
	}
	if c.Overlay.Encapsulation[0] != EncapVXLAN {
		t.Errorf("encapsulation = %v", c.Overlay.Encapsulation)
	}
	rts := c.Networks[0].RouteTargets.Import
	want := []string{"64512:4294967295", "192.0.2.1:65535", "65546:7", "64512L:9"}
	for i, w := range want {
		if rts[i].String() != w {
			t.Errorf("import[%d] = %s, want %s", i, rts[i], w)
		}
	}
	if got := c.Policies[0].Allow[0].Ports[1]; got != (PortRange{1000, 2000}) || !got.Contains(1500) || got.String() != "1000-2000" {
		t.Errorf("port range = %+v", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/weft.yaml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("bgp: {asn: 1, controllers: [{address: 192.0.2.1}]}\n"))
	f.Add([]byte("networks: [{name: a, vni: 1, subnets: [10.0.0.0/24]}]\nendpoints: [{name: e, network: a, address: 10.0.0.2/24}]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("underlay: {links: [{name: b, bond: {members: [x]}}, {match: {name: x}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			for _, e := range flattenErrs(err) {
				if _, ok := e.(*FieldError); !ok {
					t.Fatalf("error %T %v is not a FieldError", e, e)
				}
			}
			return
		}
		// What validated must hold the invariants consumers rely on.
		for _, n := range c.Networks {
			if n.VNI < 1 || n.VNI > 1<<24-1 || n.Name == "" {
				t.Fatalf("invalid network passed: %+v", n)
			}
		}
		for _, e := range c.Endpoints {
			if c.Network(e.Network) == nil || !e.Address.IsValid() {
				t.Fatalf("invalid endpoint passed: %+v", e)
			}
		}
		if u, ok := c.Underlay(); ok {
			ids := map[string]bool{}
			for _, l := range u.Links {
				ids[l.ID] = true
			}
			for _, l := range u.Links {
				for _, m := range l.BondMembers {
					if !ids[m] {
						t.Fatalf("bond member %q dangling", m)
					}
				}
				if l.Kind == LinkVLAN && !ids[l.VLANParent] {
					t.Fatalf("vlan parent %q dangling", l.VLANParent)
				}
			}
		}
		_ = c.Summary()
	})
}

func flattenErrs(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrs(e)...)
		}
		return out
	}
	return []error{err}
}

// TestMTUBoundsOneSet: every MTU range the schema declares in a tag is the
// one set of bounds (MinMTU..MaxMTU), so a new bound cannot creep in.
func TestMTUBoundsOneSet(t *testing.T) {
	want := fmt.Sprintf("%d..%d", MinMTU, MaxMTU)
	found := 0
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice:
			walk(typ.Elem(), path)
			return
		case reflect.Struct:
		default:
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			p := path + "." + f.Name
			if strings.Contains(strings.ToLower(f.Name), "mtu") {
				if r, ok := f.Tag.Lookup("range"); ok {
					found++
					if r != want {
						t.Errorf("%s: range %q, want %q (MinMTU..MaxMTU)", p, r, want)
					}
				}
			}
			if f.Type.PkgPath() == typ.PkgPath() || f.Type.Kind() == reflect.Slice || f.Type.Kind() == reflect.Pointer {
				walk(f.Type, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "Config")
	if found == 0 {
		t.Fatal("no MTU field with a range tag found: the walk or the schema changed")
	}
}

// bgp.routeTargetConstraint is on unless set to false.
func TestRouteTargetConstraintDefault(t *testing.T) {
	for y, want := range map[string]bool{
		"bgp: {asn: 1, controllers: [{address: 192.0.2.1}]}\n":                               true,
		"bgp: {asn: 1, controllers: [{address: 192.0.2.1}], routeTargetConstraint: true}\n":  true,
		"bgp: {asn: 1, controllers: [{address: 192.0.2.1}], routeTargetConstraint: false}\n": false,
	} {
		c, err := Parse([]byte(y))
		if err != nil {
			t.Fatalf("%q: %v", y, err)
		}
		if got := c.BGP.RTCEnabled(); got != want {
			t.Errorf("%q: RTCEnabled() = %v, want %v", y, got, want)
		}
	}
}
