package config

import (
	"net"
	"net/netip"
	"slices"
)

// NodeOverride is one entry of weft.yaml's nodes list: what differs for
// the node it matches from the fleet-wide settings.
type NodeOverride struct {
	// Hostname and MAC select the node: its hostname, or the MAC address
	// of one of its NICs. Give at least one; with both, both must match.
	Hostname string           `yaml:"hostname"`
	MAC      net.HardwareAddr `yaml:"mac"`
	// RouterID replaces node.routerID.
	RouterID netip.Addr `yaml:"routerID"`
	// BGP replaces fields of the bgp section; zero fields keep the
	// fleet's.
	BGP *BGPOverride `yaml:"bgp"`
}

// BGPOverride is the part of the bgp section a node may set for itself:
// in an AS-per-rack fabric, its AS number, router ID and the leaf
// switches of its rack.
type BGPOverride struct {
	ASN      uint32     `yaml:"asn" range:"1..4294967295"`
	RouterID netip.Addr `yaml:"routerID"`
	// Controllers, when given, replace bgp.controllers.
	Controllers []Controller `yaml:"controllers"`
}

// matches reports whether o selects the node called hostname with NICs macs.
func (o NodeOverride) matches(hostname string, macs []net.HardwareAddr) bool {
	if o.Hostname == "" && o.MAC == nil {
		return false
	}
	if o.Hostname != "" && o.Hostname != hostname {
		return false
	}
	if o.MAC != nil && !slices.ContainsFunc(macs, func(m net.HardwareAddr) bool { return slices.Equal(m, o.MAC) }) {
		return false
	}
	return true
}

// ForNode is c as the node called hostname, with NICs macs, applies it:
// the first nodes entry that matches overrides node.routerID and the bgp
// fields it sets. c itself is not changed; without a match it is returned.
func (c *Config) ForNode(hostname string, macs []net.HardwareAddr) *Config {
	i := slices.IndexFunc(c.Nodes, func(o NodeOverride) bool { return o.matches(hostname, macs) })
	if i < 0 {
		return c
	}
	o := c.Nodes[i]
	out := *c
	if o.RouterID.IsValid() {
		out.Node.RouterID = o.RouterID
	}
	if o.BGP != nil && out.BGP != nil {
		b := *out.BGP
		if o.BGP.ASN != 0 {
			b.ASN = o.BGP.ASN
		}
		if o.BGP.RouterID.IsValid() {
			b.RouterID = o.BGP.RouterID
		}
		if len(o.BGP.Controllers) > 0 {
			b.Controllers = o.BGP.Controllers
		}
		out.BGP = &b
	}
	return &out
}

func (v *validator) nodes(c *Config) {
	type sel struct {
		host string
		mac  string
	}
	seen := map[sel]int{}
	for i, o := range c.Nodes {
		p := idx("nodes", i)
		if o.Hostname == "" && o.MAC == nil {
			v.fail(p, "give hostname or mac: which node the entry is for")
		}
		if o.Hostname != "" {
			if err := checkHostname(o.Hostname); err != nil {
				v.fail(p+".hostname", "%v", err)
			}
		}
		if o.MAC != nil && (len(o.MAC) != 6 || o.MAC[0]&1 != 0) {
			v.fail(p+".mac", "%v is not a unicast Ethernet address", o.MAC)
		}
		k := sel{o.Hostname, o.MAC.String()}
		if j, dup := seen[k]; dup {
			v.fail(p, "selects the same node as nodes[%d]", j)
		}
		seen[k] = i
		if o.RouterID.IsValid() && (!o.RouterID.Is4() || o.RouterID.IsUnspecified()) {
			v.fail(p+".routerID", "%s is not a usable router ID (an IPv4 address)", o.RouterID)
		}
		if o.BGP == nil {
			continue
		}
		if c.BGP == nil {
			v.fail(p+".bgp", "overrides a bgp section the document does not have")
		}
		if r := o.BGP.RouterID; r.IsValid() && (!r.Is4() || r.IsUnspecified()) {
			v.fail(p+".bgp.routerID", "%s is not a usable router ID (an IPv4 address)", r)
		}
		v.controllers(p+".bgp.controllers", o.BGP.Controllers)
	}
}
