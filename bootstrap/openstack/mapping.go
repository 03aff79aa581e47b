package openstack

import (
	"fmt"

	"github.com/weftnet/weft/config"
)

// Mapping decides which Weft network a Neutron network is, the same on
// every node of the fleet (they share weft.yaml):
//
//  1. an entry of join.openstack.networks whose neutron is the network's
//     ID, else one whose neutron is its name;
//  2. with matchVNI, the network of the networks section whose vni equals
//     the Neutron network's provider:segmentation_id (VXLAN's VNI, a
//     VLAN's ID), so Neutron's segment and Weft's VNI are one number;
//  3. else the network is not mapped, and its ports are not attached.
//
// The Weft network brings its VNI and route targets; the Neutron network
// never changes them.
type Mapping struct {
	cfg *config.Config
}

// NewMapping is cfg's mapping; cfg has been validated.
func NewMapping(cfg *config.Config) Mapping { return Mapping{cfg: cfg} }

// Resolve returns the Weft network n is.
func (m Mapping) Resolve(n Network) (string, error) {
	o := m.cfg.Join.OpenStack
	for _, byName := range []bool{false, true} {
		for _, e := range o.Networks {
			if !byName && e.Neutron == n.ID || byName && e.Neutron == n.Name {
				return e.Network, nil
			}
		}
	}
	if o.MatchVNI && n.SegmentationID != 0 {
		for _, w := range m.cfg.Networks {
			if w.VNI == n.SegmentationID {
				return w.Name, nil
			}
		}
		return "", fmt.Errorf("neutron network %s (%s): no Weft network has vni %d (its %s segmentation id), and join.openstack.networks does not list it",
			n.Name, n.ID, n.SegmentationID, n.Type)
	}
	return "", fmt.Errorf("neutron network %s (%s): join.openstack.networks does not list it by name or ID", n.Name, n.ID)
}
