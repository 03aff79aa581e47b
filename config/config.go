// Package config holds Weft's configuration: the weft.yaml schema with its
// strict decoding and validation, the OpenStack metadata formats
// (meta_data.json, network_data.json, user_data) and the sources a node reads
// them from (kernel command line, config drive, metadata service, URL), plus
// the store of the last good configuration.
//
// Every error names where it comes from: a weft.yaml error carries the path
// and line of the value at fault (`bgp.controllers[1].asn (line 12): ...`),
// a network_data.json problem the JSON path (`links[2].type: ...`).
package config

import (
	"net"
	"net/netip"
	"strconv"
)

// Config is one validated weft.yaml document. Absent sections are nil (for
// pointer sections) or zero; zero values mean "default" as each field says.
type Config struct {
	Node Node `yaml:"node"`
	// UnderlaySpec is the underlay section; nil when absent (the node then
	// uses network_data.json or DHCP everywhere). Use Underlay() for the
	// normalised form init/underlay applies.
	UnderlaySpec *UnderlaySpec    `yaml:"underlay"`
	BGP          *BGP             `yaml:"bgp"`
	Overlay      Overlay          `yaml:"overlay"`
	Networks     []VirtualNetwork `yaml:"networks"`
	Policies     []Policy         `yaml:"policies"`
	Endpoints    []Endpoint       `yaml:"endpoints"`
	Join         Join             `yaml:"join"`
	// Nodes are per-node overrides, so that one fleet-wide document
	// serves nodes that differ (an AS per rack or per host, RFC 7938):
	// see ForNode.
	Nodes []NodeOverride `yaml:"nodes"`

	// raw is the document Parse read, kept so that Store writes back exactly
	// what the operator wrote (comments included).
	raw []byte
}

// Node holds per-node identity settings.
type Node struct {
	// Hostname is the node's hostname; "" (written "auto" or left out) takes
	// it from meta_data.json or DHCP.
	Hostname string `yaml:"hostname" auto:""`
	// RouterID is the BGP router ID and RD prefix; the zero Addr (written
	// "auto" or left out) takes the node's primary underlay IPv4 address.
	RouterID netip.Addr `yaml:"routerID" auto:""`
}

// UnderlaySpec is weft.yaml's underlay section.
type UnderlaySpec struct {
	Links []UnderlayLink `yaml:"links"`
}

// UnderlayLink is one underlay interface in weft.yaml. A link with bond or
// vlan set is created; any other link is an existing NIC selected by match.
type UnderlayLink struct {
	// Name identifies the link for bond members and VLAN parents, and is
	// the interface name of a bond or VLAN. For a NIC it defaults to
	// match.name.
	Name      string          `yaml:"name"`
	Match     LinkMatchSpec   `yaml:"match"`
	DHCP      bool            `yaml:"dhcp"`
	MTU       int             `yaml:"mtu"`       // 0 (or absent): the kernel's or DHCP's; else MinMTU..MaxMTU
	Addresses []netip.Prefix  `yaml:"addresses"` // host address with prefix length, 192.0.2.10/24
	Routes    []UnderlayRoute `yaml:"routes"`
	// Gateway adds a default route (of its address family) via it.
	Gateway netip.Addr `yaml:"gateway"`
	Bond    *BondSpec  `yaml:"bond"`
	VLAN    *VLANSpec  `yaml:"vlan"`
}

// LinkMatchSpec selects an existing NIC by MAC address or kernel name.
type LinkMatchSpec struct {
	MAC  net.HardwareAddr `yaml:"mac"`
	Name string           `yaml:"name"`
}

// UnderlayRoute is a static route.
type UnderlayRoute struct {
	To     netip.Prefix `yaml:"to"`
	Via    netip.Addr   `yaml:"via"`
	Metric int          `yaml:"metric" range:"0..4294967295"`
}

// BondSpec makes a link a bond of the named member links.
type BondSpec struct {
	Members []string `yaml:"members"`
	// Mode is a Linux bonding mode: balance-rr, active-backup, balance-xor,
	// broadcast, 802.3ad, balance-tlb, balance-alb. "" = active-backup.
	Mode   string `yaml:"mode"`
	Miimon int    `yaml:"miimon" range:"0..65535"` // ms; 0 = kernel default
}

// VLANSpec makes a link an 802.1Q VLAN on a parent link.
type VLANSpec struct {
	Parent string `yaml:"parent"`
	ID     int    `yaml:"id" range:"1..4094"`
}

// BGP is the node's BGP speaker.
type BGP struct {
	ASN uint32 `yaml:"asn" range:"1..4294967295"`
	// RouterID overrides node.routerID for BGP; zero = node.routerID.
	RouterID netip.Addr `yaml:"routerID" auto:""`
	// Timers in seconds; 0 = default (hold 90, keepalive hold/3, connect
	// retry 120).
	HoldTime     int `yaml:"holdTime" range:"0..65535"`
	Keepalive    int `yaml:"keepalive" range:"0..21845"`
	ConnectRetry int `yaml:"connectRetry" range:"0..65535"`
	// ListenPort is where the speaker accepts sessions: 0 = 179, -1 = do
	// not listen (outbound sessions only).
	ListenPort  int          `yaml:"listenPort" range:"-1..65535"`
	Controllers []Controller `yaml:"controllers"`
	// TunnelAttribute is how much of the RFC 9012 Tunnel Encapsulation
	// attribute routes carry: TunnelAttrFirst ("" too) one TLV, for the
	// preferred encapsulation, with the Tunnel Egress Endpoint (FRR 8.4
	// misreads more than one); TunnelAttrAll a TLV per encapsulation in
	// priority order (gobgpd, BIRD); TunnelAttrNone none (communities
	// only, and no egress endpoint).
	TunnelAttribute string `yaml:"tunnelAttribute"`
	// RouteTargetConstraint (RFC 4684): the node tells the reflectors
	// which route targets it imports, and those that speak RTC send it
	// only those routes. nil = on; a reflector without RTC does not
	// negotiate it and sends everything, as before.
	RouteTargetConstraint *bool `yaml:"routeTargetConstraint"`
}

// RTCEnabled reports whether route target constraint is on (the default).
func (b *BGP) RTCEnabled() bool { return b.RouteTargetConstraint == nil || *b.RouteTargetConstraint }

// The values of bgp.tunnelAttribute.
const (
	TunnelAttrFirst = "first"
	TunnelAttrAll   = "all"
	TunnelAttrNone  = "none"
)

// Controller is one BGP peer: a route reflector, gateway router or
// Contrail control node.
type Controller struct {
	Address netip.Addr `yaml:"address"`
	// ASN of the peer; 0 = bgp.asn (iBGP).
	ASN  uint32 `yaml:"asn" range:"1..4294967295"`
	Port int    `yaml:"port" range:"1..65535"` // 0 = 179
	// Password enables TCP MD5 (RFC 2385) on the session.
	Password string `yaml:"password"`
	HoldTime int    `yaml:"holdTime" range:"0..65535"` // 0 = bgp.holdTime
}

// Encapsulation is an overlay tunnel type.
type Encapsulation string

const (
	EncapMPLSoUDP Encapsulation = "mplsoudp"
	EncapMPLSoGRE Encapsulation = "mplsogre"
	EncapVXLAN    Encapsulation = "vxlan"
)

// DefaultEncapsulations is the priority order when overlay.encapsulation is
// not given.
var DefaultEncapsulations = []Encapsulation{EncapMPLSoUDP, EncapMPLSoGRE, EncapVXLAN}

// Overlay holds the tunnel settings.
type Overlay struct {
	// Encapsulation lists the tunnel types this node offers, most preferred
	// first; empty = DefaultEncapsulations.
	Encapsulation []Encapsulation `yaml:"encapsulation"`
	// MTU of the workloads' interfaces; 0 (written "auto") = the underlay
	// MTU minus the largest encapsulation overhead. The range is
	// MinMTU..MaxMTU (a tag cannot name them; TestMTUBoundsOneSet holds it).
	MTU int `yaml:"mtu" auto:"" range:"576..65535"`
	// TunnelEndpoints are the prefixes the fleet's tunnel endpoints (its
	// nodes' underlay addresses, and gateways') lie in. A received route
	// whose endpoint is outside them, or is a BGP peer's own address (a
	// route server that rewrote the next hop to itself), is counted and
	// warned about: tunnelling to it would blackhole the traffic. Empty =
	// only the peers' addresses are suspect.
	TunnelEndpoints []netip.Prefix `yaml:"tunnelEndpoints"`
}

// Encapsulations returns the configured priority order or the default.
func (o Overlay) Encapsulations() []Encapsulation {
	if len(o.Encapsulation) == 0 {
		return DefaultEncapsulations
	}
	return o.Encapsulation
}

// VirtualNetwork is a tenant network: one VRF on every node that has
// endpoints in it, joined to other networks by shared route targets.
type VirtualNetwork struct {
	Name         string         `yaml:"name"`
	VNI          uint32         `yaml:"vni" range:"1..16777215"`
	RouteTargets RouteTargets   `yaml:"routeTargets"`
	Subnets      []netip.Prefix `yaml:"subnets"`
	// Gateway is the virtual gateway address endpoints route through; zero
	// = the first address of each subnet.
	Gateway netip.Addr `yaml:"gateway"`
}

// RouteTargets are a network's import and export route targets.
type RouteTargets struct {
	Import []RouteTarget `yaml:"import"`
	Export []RouteTarget `yaml:"export"`
}

// Policy allows traffic from one network to another; traffic inside a
// network is always allowed, between networks only where a policy says so.
type Policy struct {
	From  string `yaml:"from"`
	To    string `yaml:"to"`
	Allow []Rule `yaml:"allow"`
}

// Protocol of a policy rule.
type Protocol string

const (
	ProtoAny  Protocol = "any"
	ProtoTCP  Protocol = "tcp"
	ProtoUDP  Protocol = "udp"
	ProtoICMP Protocol = "icmp"
)

// Rule is one allowed kind of traffic.
type Rule struct {
	// Protocol; "" means any.
	Protocol Protocol `yaml:"protocol"`
	// Ports are destination ports (tcp and udp only); empty = all.
	Ports []PortRange `yaml:"ports"`
	// CIDR narrows the destination inside the "to" network; zero = all.
	CIDR netip.Prefix `yaml:"cidr"`
}

// Endpoint is a static workload attachment on this node.
type Endpoint struct {
	Name    string `yaml:"name"`
	Network string `yaml:"network"`
	// Address with the prefix length the workload's interface gets.
	Address netip.Prefix `yaml:"address"`
	// MAC of the workload interface; nil = derived by the vRouter.
	MAC net.HardwareAddr `yaml:"mac"`
	// Netns is the network namespace (name under /run/netns) the interface
	// is moved into; "" = the endpoint's name.
	Netns string `yaml:"netns"`
	// Node is the hostname of the node that hosts the endpoint, so one
	// fleet-wide weft.yaml can place endpoints; "" = every node that reads
	// this document (a per-node file).
	Node string `yaml:"node"`
	// Anycast lets endpoints on different nodes share this address (a
	// service VIP): every one of them must say so. Remote nodes reach the
	// address by ECMP over them.
	Anycast bool `yaml:"anycast"`
}

// LocalEndpoints are the endpoints the node called hostname hosts.
func (c *Config) LocalEndpoints(hostname string) []Endpoint {
	var out []Endpoint
	for _, e := range c.Endpoints {
		if e.Node == "" || e.Node == hostname {
			out = append(out, e)
		}
	}
	return out
}

// Join says how the node joins its orchestrators.
type Join struct {
	Kubernetes *KubernetesJoin `yaml:"kubernetes"`
	OpenStack  *OpenStackJoin  `yaml:"openstack"`
}

// KubernetesJoin is join.kubernetes: the node's credential for the API
// server, one of two kinds, and how its pods' Weft networks are chosen.
//   - Kubeconfig: an ordinary node, whose kubelet already has a
//     credential (e.g. /etc/kubernetes/kubelet.conf); the agent uses it.
//   - Server + Token + CACertHashes: the appliance's kubeadm-style TLS
//     bootstrap (token -> CSR approved by kube-controller-manager -> a
//     node certificate kept under the agent's state directory).
type KubernetesJoin struct {
	Kubeconfig   string   `yaml:"kubeconfig"`   // absolute path of the node's kubeconfig
	Server       string   `yaml:"server"`       // https://host:6443
	Token        string   `yaml:"token"`        // bootstrap token abcdef.0123456789abcdef
	CACertHashes []string `yaml:"caCertHashes"` // sha256:<64 hex> of the CA's SubjectPublicKeyInfo
	// DefaultNetwork is the Weft network of a pod whose annotation and
	// namespace label name none (bootstrap/kubernetes documents both).
	DefaultNetwork string `yaml:"defaultNetwork"`
}

// Underlay returns the normalised underlay of the underlay section, and
// false when the section is absent. Parse has validated it, so every bond
// member and VLAN parent names a link of the result.
func (c *Config) Underlay() (Underlay, bool) {
	if c == nil || c.UnderlaySpec == nil {
		return Underlay{}, false
	}
	u := Underlay{Source: "weft.yaml underlay"}
	for i, l := range c.UnderlaySpec.Links {
		out := Link{
			ID:        l.ID(i),
			Kind:      l.Kind(),
			MTU:       l.MTU,
			DHCP4:     l.DHCP,
			Addresses: append([]netip.Prefix(nil), l.Addresses...),
		}
		switch out.Kind {
		case LinkPhy:
			out.Match = LinkMatch{MAC: l.Match.MAC, Name: l.Match.Name}
		case LinkBond:
			out.Name = l.Name
			out.BondMembers = append([]string(nil), l.Bond.Members...)
			out.BondMode = l.Bond.Mode
			if out.BondMode == "" {
				out.BondMode = "active-backup"
			}
			out.BondMiimon = l.Bond.Miimon
		case LinkVLAN:
			out.Name = l.Name
			out.VLANParent = l.VLAN.Parent
			out.VLANID = l.VLAN.ID
		}
		for _, r := range l.Routes {
			out.Routes = append(out.Routes, Route{Dst: r.To, Gateway: r.Via, Metric: r.Metric})
		}
		if l.Gateway.IsValid() {
			out.Routes = append(out.Routes, Route{Dst: defaultRoute(l.Gateway), Gateway: l.Gateway})
		}
		u.Links = append(u.Links, out)
	}
	return u, true
}

// Raw returns the weft.yaml document the Config was parsed from, as written
// (comments included): what PID 1 hands to the agent and Store keeps.
func (c *Config) Raw() []byte { return c.raw }

// ID is the name bonds and VLANs use to refer to link i.
func (l UnderlayLink) ID(i int) string {
	switch {
	case l.Name != "":
		return l.Name
	case l.Bond == nil && l.VLAN == nil && l.Match.Name != "":
		return l.Match.Name
	}
	return "underlay.links[" + strconv.Itoa(i) + "]"
}

// Kind is what the link is: a bond, a VLAN or an existing NIC.
func (l UnderlayLink) Kind() LinkKind {
	switch {
	case l.Bond != nil:
		return LinkBond
	case l.VLAN != nil:
		return LinkVLAN
	}
	return LinkPhy
}

func defaultRoute(gw netip.Addr) netip.Prefix {
	if gw.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// Network returns the virtual network called name, or nil.
func (c *Config) Network(name string) *VirtualNetwork {
	for i := range c.Networks {
		if c.Networks[i].Name == name {
			return &c.Networks[i]
		}
	}
	return nil
}
