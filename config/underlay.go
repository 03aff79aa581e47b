package config

import (
	"net"
	"net/netip"
)

// Underlay is the normalised underlay network of one node, whatever its
// source: OpenStack network_data.json, the underlay section of weft.yaml, or
// the DHCP-everything default. init/underlay applies it; nothing else needs
// to know where it came from.
type Underlay struct {
	Links []Link `json:"links"`
	// DNS servers and search domains not tied to one link
	// (network_data.json "services" of type "dns").
	DNS    []netip.Addr `json:"dns,omitempty"`
	Search []string     `json:"search,omitempty"`
	// Source names where this came from, for verdicts ("config-drive network_data.json").
	Source string `json:"source,omitempty"`
}

// LinkKind is the kind of an underlay link.
type LinkKind string

const (
	LinkPhy  LinkKind = "phy"  // an existing NIC, matched by MAC or name
	LinkBond LinkKind = "bond" // created from member links
	LinkVLAN LinkKind = "vlan" // created on a parent link
)

// Link is one underlay interface and the addressing on it.
type Link struct {
	// ID names the link within this Underlay (network_data.json "id", or the
	// position in weft.yaml, "underlay.links[0]"). Bonds and VLANs refer to
	// their members and parents by ID.
	ID   string   `json:"id"`
	Kind LinkKind `json:"kind"`
	// Match selects a phy link: by MAC (preferred) or by kernel name.
	Match LinkMatch `json:"match,omitzero"`
	// Name is the interface name to create (bond, vlan). For phy links it is
	// empty: the kernel's name is found by Match.
	Name string `json:"name,omitempty"`
	// MTU to set; 0 leaves the kernel default, or DHCP option 26 when DHCP4.
	MTU int `json:"mtu,omitempty"`

	// Bond settings (Kind == LinkBond).
	BondMembers    []string `json:"bondMembers,omitempty"` // link IDs
	BondMode       string   `json:"bondMode,omitempty"`    // "802.3ad", "active-backup", "balance-xor", ...
	BondMiimon     int      `json:"bondMiimon,omitempty"`  // ms
	BondHashPolicy string   `json:"bondHashPolicy,omitempty"`

	// VLAN settings (Kind == LinkVLAN).
	VLANParent string           `json:"vlanParent,omitempty"` // link ID
	VLANID     int              `json:"vlanID,omitempty"`
	MAC        net.HardwareAddr `json:"mac,omitempty"` // for bond/vlan: MAC to set (optional)

	// Addressing.
	DHCP4     bool           `json:"dhcp4,omitempty"`
	SLAAC     bool           `json:"slaac,omitempty"` // accept router advertisements
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Routes    []Route        `json:"routes,omitempty"`
	DNS       []netip.Addr   `json:"dns,omitempty"`
}

// LinkMatch selects an existing NIC.
type LinkMatch struct {
	MAC  net.HardwareAddr `json:"mac,omitempty"`
	Name string           `json:"name,omitempty"`
}

// Route is a static route via a gateway on a link.
type Route struct {
	Dst     netip.Prefix `json:"dst"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	Metric  int          `json:"metric,omitempty"`
}
