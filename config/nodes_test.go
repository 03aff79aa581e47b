package config

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

// An RFC 7938 fleet in one document (issue 15, finding 10): an AS per
// host, chosen by hostname or by a NIC's MAC; route targets in FRR's
// display form.
const ebgpFleet = `
bgp:
  asn: 65000
  controllers: [{address: 192.0.2.254, asn: 65000}]
nodes:
  - hostname: a
    bgp: {asn: 65001}
  - mac: "52:54:00:00:00:02"
    routerID: 10.255.0.2
    bgp:
      asn: 65002
      controllers: [{address: 192.0.2.253, asn: 65100}]
networks:
  - {name: web, vni: 10, routeTargets: {import: ["RT:65000:100"], export: ["target:65000:100"]}, subnets: ["10.0.0.0/24"]}
`

func TestNodeOverrides(t *testing.T) {
	c, err := Parse([]byte(ebgpFleet))
	if err != nil {
		t.Fatal(err)
	}
	a := c.ForNode("a", nil)
	if a.BGP.ASN != 65001 || len(a.BGP.Controllers) != 1 || a.BGP.Controllers[0].Address != netip.MustParseAddr("192.0.2.254") {
		t.Errorf("node a: bgp %+v, want asn 65001 and the fleet's controllers", a.BGP)
	}
	mac, _ := net.ParseMAC("52:54:00:00:00:02")
	b := c.ForNode("whatever", []net.HardwareAddr{{2, 0, 0, 0, 0, 9}, mac})
	if b.BGP.ASN != 65002 || b.Node.RouterID != netip.MustParseAddr("10.255.0.2") || b.BGP.Controllers[0].ASN != 65100 {
		t.Errorf("node by MAC: bgp %+v node %+v", b.BGP, b.Node)
	}
	if o := c.ForNode("c", nil); o.BGP.ASN != 65000 {
		t.Errorf("unmatched node: asn %d, want the fleet's 65000", o.BGP.ASN)
	}
	if c.BGP.ASN != 65000 {
		t.Errorf("ForNode changed the document: asn %d", c.BGP.ASN)
	}
	if rt := c.Networks[0].RouteTargets; rt.Import[0] != rt.Export[0] {
		t.Errorf("RT:65000:100 and target:65000:100 differ: %v %v", rt.Import[0], rt.Export[0])
	}
}

func TestNodeOverrideErrors(t *testing.T) {
	base := "bgp: {asn: 65000, controllers: [{address: 192.0.2.254}]}\n"
	for _, tc := range []struct{ doc, want string }{
		{"nodes: [{bgp: {asn: 1}}]", "nodes[0] (line 2): give hostname or mac"},
		{"nodes: [{hostname: a, bgp: {asn: 0}}]", "nodes[0].bgp.asn"},
		{"nodes: [{hostname: a, bgp: {asn: 1, holdTime: 3}}]", "nodes[0].bgp.holdTime"},
		{"nodes: [{hostname: a}, {hostname: a}]", "nodes[1] (line 2): selects the same node as nodes[0]"},
		{"nodes: [{hostname: a, routerID: 2001:db8::1}]", "nodes[0].routerID"},
		{"nodes: [{mac: \"01:00:5e:00:00:01\"}]", "nodes[0].mac"},
		{"nodes: [{hostname: a, bgp: {controllers: [{address: 127.0.0.1}]}}]", "nodes[0].bgp.controllers[0].address"},
	} {
		_, err := Parse([]byte(base + tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.doc, err, tc.want)
		}
	}
}
