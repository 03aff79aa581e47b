// Package underlay brings up the node's underlay network from a
// config.Underlay: it finds the NICs (by MAC, waiting a bounded time for
// late ones), creates bonds and VLANs, sets MTUs before any address,
// configures static addresses, routes and DNS, and runs DHCPv4 with
// renewal in the background. Every link gets a verdict through init/steps
// ("link" per declared link, "dhcp" per leased interface), so an operator
// sees why a node has no network before any control plane is reachable.
//
// What to do is computed by a pure function (makeLayout, layout.go): the
// declared links resolved against the host's current links (which NIC,
// which name, in which order, with which MTU); the Linux side applies it
// with netlink and is idempotent: applying the same Underlay again
// changes nothing, and a new Underlay that fails leaves the previous
// configuration in place.
package underlay

import (
	"net/netip"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
)

// Step names reported by the Manager.
const (
	StepLink = "link" // attr link=<declared id>
	StepDHCP = "dhcp" // attr link=<kernel name>
)

// LinkStatus is one underlay link as the status API shows it.
type LinkStatus struct {
	ID        string          `json:"id"`             // declared id
	Name      string          `json:"name,omitempty"` // kernel name; empty while no NIC matched
	Kind      config.LinkKind `json:"kind"`
	MAC       string          `json:"mac,omitempty"`
	MTU       int             `json:"mtu,omitempty"`
	Up        bool            `json:"up"`
	Addresses []netip.Prefix  `json:"addresses,omitempty"` // all addresses on the link now
	Lease     *Lease          `json:"lease,omitempty"`     // current DHCPv4 lease
	Verdict   steps.Verdict   `json:"verdict"`
	Detail    string          `json:"detail,omitempty"`
}
