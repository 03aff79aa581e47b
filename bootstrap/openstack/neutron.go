package openstack

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// Port is what Weft uses of a Neutron port.
type Port struct {
	ID        string
	NetworkID string
	MAC       string
	// FixedIPs are the port's addresses with their subnet's length.
	FixedIPs []netip.Prefix
	// PortSecurity off lets the port send from any address.
	PortSecurity bool
	// AllowedPairs are the allowed address pairs' prefixes (a bare
	// address is a host prefix).
	AllowedPairs []netip.Prefix
	// HostID and VIFType are the port's binding: the compute host it is
	// bound to, and how (VIFTap: a plain tap, Weft's).
	HostID, VIFType string
}

// Network is what Weft uses of a Neutron network.
type Network struct {
	ID, Name       string
	Type           string // provider:network_type: vxlan, vlan, flat, geneve
	SegmentationID uint32 // provider:segmentation_id; 0 when there is none
}

// InstancePorts lists the ports whose device_id is the instance's uuid.
func (s *Session) InstancePorts(ctx context.Context, instance string) ([]Port, error) {
	return s.listPorts(ctx, ports.ListOpts{DeviceID: instance})
}

// HostPorts lists the ports bound to compute host host
// (binding:host_id, a filter only an admin or a service role may use
// under Neutron's default policy; gophercloud's ListOpts lacks it).
func (s *Session) HostPorts(ctx context.Context, host string) ([]Port, error) {
	return s.listPorts(ctx, hostFilter{host: host})
}

// hostFilter is the port list's query for one compute host's ports.
type hostFilter struct{ host string }

func (h hostFilter) ToPortListQuery() (string, error) {
	return "?" + url.Values{"binding:host_id": {h.host}}.Encode(), nil
}

// listPorts lists the ports q selects, with their subnets' lengths.
func (s *Session) listPorts(ctx context.Context, q ports.ListOptsBuilder) ([]Port, error) {
	c, err := s.network(ctx)
	if err != nil {
		return nil, err
	}
	const call = "neutron GET /v2.0/ports"
	pages, err := ports.List(c, q).AllPages(ctx)
	if err != nil {
		return nil, callError(call, err)
	}
	var raw []struct {
		ports.Port
		portsecurity.PortSecurityExt
		portsbinding.PortsBindingExt
	}
	if err := ports.ExtractPortsInto(pages, &raw); err != nil {
		return nil, callError(call, err)
	}
	subnetLen := map[string]int{}
	var out []Port
	for _, r := range raw {
		p := Port{ID: r.ID, NetworkID: r.NetworkID, MAC: r.MACAddress, PortSecurity: r.PortSecurityEnabled, HostID: r.HostID, VIFType: r.VIFType}
		for _, ip := range r.FixedIPs {
			a, err := netip.ParseAddr(ip.IPAddress)
			if err != nil {
				return nil, fmt.Errorf("%s: port %s: fixed_ips: %w", call, r.ID, err)
			}
			bits, ok := subnetLen[ip.SubnetID]
			if !ok {
				sn, err := subnets.Get(ctx, c, ip.SubnetID).Extract()
				if err != nil {
					return nil, callError("neutron GET /v2.0/subnets/"+ip.SubnetID, err)
				}
				pfx, err := netip.ParsePrefix(sn.CIDR)
				if err != nil {
					return nil, fmt.Errorf("neutron subnet %s: cidr: %w", ip.SubnetID, err)
				}
				bits = pfx.Bits()
				subnetLen[ip.SubnetID] = bits
			}
			p.FixedIPs = append(p.FixedIPs, netip.PrefixFrom(a, bits))
		}
		for _, ap := range r.AllowedAddressPairs {
			pfx, err := parsePrefixOrAddr(ap.IPAddress)
			if err != nil {
				return nil, fmt.Errorf("%s: port %s: allowed_address_pairs: %w", call, r.ID, err)
			}
			p.AllowedPairs = append(p.AllowedPairs, pfx)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(s)
}

// Network reads one network with its provider attributes.
func (s *Session) Network(ctx context.Context, id string) (Network, error) {
	c, err := s.network(ctx)
	if err != nil {
		return Network{}, err
	}
	var raw struct {
		networks.Network
		provider.NetworkProviderExt
	}
	if err := networks.Get(ctx, c, id).ExtractInto(&raw); err != nil {
		return Network{}, callError("neutron GET /v2.0/networks/"+id, err)
	}
	n := Network{ID: raw.ID, Name: raw.Name, Type: raw.NetworkType}
	if raw.SegmentationID != "" {
		seg, err := strconv.ParseUint(raw.SegmentationID, 10, 32)
		if err != nil {
			return Network{}, fmt.Errorf("neutron network %s: provider:segmentation_id %q: %w", id, raw.SegmentationID, err)
		}
		n.SegmentationID = uint32(seg)
	}
	return n, nil
}
