// Package fleetsim simulates the rest of a large fleet for one real node:
// N remote nodes, each with its own underlay address (the next hop of its
// routes), its own RD per network and its own labels, hosting a share of
// M networks with their route targets. A Generator speaks BGP to a real
// reflector as one client and announces every simulated node's VPNv4
// routes, so that the real `weft agent` behind the same reflector receives
// what it would in that fleet, and no more than one TCP session costs.
//
// The routes are built by hand with GoBGP's packet library and sent raw:
// one UPDATE per (node, network), all of that pair's endpoints in it, as a
// real node's speaker would pack them. A GoBGP server in the test would
// cost one UPDATE per path and its own RIB (bgp-peers.md).
package fleetsim

import (
	"fmt"
	"net/netip"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Fleet is the simulated fleet's shape. Node i (0-based) hosts networks
// (i*PerNode + j) mod Networks for j < PerNode, so that with Nodes*PerNode
// a multiple of Networks every network has the same number of hosts.
type Fleet struct {
	Nodes     int // simulated remote nodes
	Networks  int // networks in the fleet
	PerNode   int // networks each node hosts
	Endpoints int // endpoints each node has in each network it hosts
	// ASN is the fleet's (2-byte) AS number, the route targets' admin.
	ASN uint16
	// FirstNode is node 0's underlay address; node i's is i above it.
	FirstNode netip.Addr
}

// Network is one simulated network, as weft.yaml would declare it.
type Network struct {
	Name   string // "net007"
	VNI    uint32
	RT     string // "64512:1007", its import and export route target
	Subnet netip.Prefix
}

// Subnet is every simulated network's subnet: the simulated endpoints use
// its low addresses, from 10.0.1.0 up; 10.0.255.0/24 is left for the real
// node's own endpoints.
var Subnet = netip.MustParsePrefix("10.0.0.0/16")

const (
	vniBase   = 1000
	firstHost = 256 // the simulated endpoints' first offset in Subnet
)

// Validate says what would make the fleet ill-formed.
func (f Fleet) Validate() error {
	switch {
	case f.Nodes < 1 || f.Networks < 1 || f.PerNode < 1 || f.Endpoints < 1:
		return fmt.Errorf("fleet %+v: every count must be at least 1", f)
	case f.PerNode > f.Networks:
		return fmt.Errorf("fleet: %d networks per node of %d", f.PerNode, f.Networks)
	case f.Networks > 9000:
		return fmt.Errorf("fleet: %d networks; their VNIs and RDs allow 9000", f.Networks)
	case firstHost+f.Nodes*f.Endpoints > 0xff00:
		return fmt.Errorf("fleet: %d endpoints per network do not fit in %v below 10.0.255.0", f.Nodes*f.Endpoints, Subnet)
	case !f.FirstNode.Is4():
		return fmt.Errorf("fleet: first node address %v: want IPv4", f.FirstNode)
	case f.ASN == 0:
		return fmt.Errorf("fleet: ASN missing")
	}
	return nil
}

// Network returns network m (0-based).
func (f Fleet) Network(m int) Network {
	return Network{Name: fmt.Sprintf("net%03d", m), VNI: uint32(vniBase + m), RT: fmt.Sprintf("%d:%d", f.ASN, vniBase+m), Subnet: Subnet}
}

// Node returns node i's underlay address.
func (f Fleet) Node(i int) netip.Addr {
	a := f.FirstNode
	for range i {
		a = a.Next()
	}
	return a
}

// Hosted returns the networks node i hosts.
func (f Fleet) Hosted(i int) []int {
	out := make([]int, f.PerNode)
	for j := range out {
		out[j] = (i*f.PerNode + j) % f.Networks
	}
	return out
}

// Route is one simulated endpoint's route.
type Route struct {
	Network int
	Node    int
	Prefix  netip.Prefix // a /32
	NextHop netip.Addr
	Label   uint32
}

// endpoint is node i's e-th endpoint's address (the same in every network
// it hosts: networks are separate VRFs).
func (f Fleet) endpoint(i, e int) netip.Addr {
	base := Subnet.Addr().As4()
	n := firstHost + i*f.Endpoints + e
	return netip.AddrFrom4([4]byte{base[0], base[1], byte(n >> 8), byte(n)})
}

// RoutesOf returns network m's routes, from every node that hosts it.
func (f Fleet) RoutesOf(m int) []Route {
	var out []Route
	for i := range f.Nodes {
		for _, h := range f.Hosted(i) {
			if h == m {
				out = append(out, f.nodeRoutes(i, m)...)
			}
		}
	}
	return out
}

// Total is how many routes the fleet announces.
func (f Fleet) Total() int { return f.Nodes * f.PerNode * f.Endpoints }

func (f Fleet) nodeRoutes(i, m int) []Route {
	out := make([]Route, f.Endpoints)
	for e := range out {
		// Labels per node, one per (network, endpoint) it hosts, from 16
		// (below is reserved): as a node allocates them.
		j := slot(f.Hosted(i), m)
		out[e] = Route{Network: m, Node: i, Prefix: netip.PrefixFrom(f.endpoint(i, e), 32), NextHop: f.Node(i),
			Label: uint32(16 + j*f.Endpoints + e)}
	}
	return out
}

func slot(hosted []int, m int) int {
	for j, h := range hosted {
		if h == m {
			return j
		}
	}
	return 0
}

// updates builds one UPDATE per (node, network): MP_REACH with that pair's
// endpoints, its RD (node:VNI, type 1), its route target and MPLSoUDP
// encapsulation community, the attributes a Weft node sends a VPNv4 route
// with (less the RFC 9012 attribute, which the agent does not need).
func (f Fleet) updates() ([][]byte, error) {
	out := make([][]byte, 0, f.Nodes*f.PerNode)
	for i := range f.Nodes {
		nh := f.Node(i).String()
		for _, m := range f.Hosted(i) {
			n := f.Network(m)
			rd := bgp.NewRouteDistinguisherIPAddressAS(nh, uint16(n.VNI))
			var nlris []bgp.AddrPrefixInterface
			for _, r := range f.nodeRoutes(i, m) {
				nlris = append(nlris, bgp.NewLabeledVPNIPAddrPrefix(32, r.Prefix.Addr().String(), *bgp.NewMPLSLabelStack(r.Label), rd))
			}
			attrs := []bgp.PathAttributeInterface{
				bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
				bgp.NewPathAttributeAsPath(nil),
				bgp.NewPathAttributeLocalPref(100),
				bgp.NewPathAttributeMpReachNLRI(nh, nlris),
				bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
					bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, f.ASN, n.VNI, true),
					bgp.NewEncapExtended(bgp.TUNNEL_TYPE_MPLS_IN_UDP),
				}),
			}
			b, err := bgp.NewBGPUpdateMessage(nil, attrs, nil).Serialize()
			if err != nil {
				return nil, fmt.Errorf("node %d network %s: update: %w", i, n.Name, err)
			}
			out = append(out, b)
		}
	}
	return out, nil
}
