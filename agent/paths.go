package agent

import (
	"net/netip"
	"slices"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/vrouter/packet"
)

// pathKey groups the VPN and EVPN routes of one remote endpoint.
type pathKey struct {
	rd     bgp.RD
	prefix netip.Prefix
}

// pathsFrom merges received best paths into Paths: the VPN route of a
// remote endpoint gives its label and MPLS encapsulations, the EVPN type-5
// route with the same RD and prefix its VNI and router MAC.
func pathsFrom(received map[bgp.Key]bgp.Route) []Path {
	byKey := map[pathKey]*Path{}
	var order []pathKey
	get := func(r bgp.Route) *Path {
		k := pathKey{r.RD, r.Prefix.Masked()}
		p := byKey[k]
		if p == nil {
			p = &Path{RD: r.RD.String(), Prefix: k.prefix, NextHop: r.Endpoint().Unmap(), From: r.Peer, OriginVN: r.OriginVN}
			byKey[k] = p
			order = append(order, k)
		}
		for _, rt := range r.RouteTargets {
			if !slices.Contains(p.RTs, rt) {
				p.RTs = append(p.RTs, rt)
			}
		}
		if p.OriginVN == 0 {
			p.OriginVN = r.OriginVN
		}
		return p
	}
	for _, r := range received {
		switch r.Family {
		case bgp.VPNv4, bgp.VPNv6:
			p := get(r)
			p.HasVPN, p.Label, p.NextHop = true, r.Label, r.Endpoint().Unmap()
			p.Encaps = append(p.Encaps[:0], r.Encaps...)
		case bgp.EVPN:
			p := get(r)
			p.HasEVPN, p.VNI = true, r.Label
			if !p.HasVPN {
				p.NextHop = r.Endpoint().Unmap()
			}
			if len(r.RouterMAC) == 6 {
				p.RouterMAC = packet.MAC(r.RouterMAC)
			}
		}
	}
	out := make([]Path, 0, len(order))
	for _, k := range order {
		if p := byKey[k]; p.NextHop.IsValid() {
			out = append(out, *p)
		}
	}
	return out
}

// announcements are the routes this node advertises for its endpoints:
// per endpoint a VPN route (label, MPLS encapsulations) when an MPLS
// encapsulation is in use, and an EVPN type-5 route (the network's VNI,
// the router MAC) when VXLAN is, both with the network's export route
// targets, RD <router-id>:<VRF ID> and the origin-VN community.
func announcements(c *config.Config, eps []LocalEndpoint, p *Plan, routerID, underlay netip.Addr, tunnels []packet.Encap, routerMAC packet.MAC) []bgp.Route {
	if p == nil {
		return nil // nothing programmed yet: no label to announce
	}
	var mpls []packet.Encap
	vxlan := false
	for _, e := range encapPriority(c) {
		if !slices.Contains(tunnels, e) {
			continue
		}
		if e == packet.EncapVXLAN {
			vxlan = true
		} else {
			mpls = append(mpls, e)
		}
	}
	var out []bgp.Route
	for _, ep := range eps {
		n := c.Network(ep.Network)
		vrf, ok := p.VRFIDs[ep.Network]
		if n == nil || !ok {
			continue
		}
		rd := bgp.NewRD(routerID, uint16(vrf))
		rts := slices.Clip(n.RouteTargets.Export)
		for _, prefix := range ep.routed() {
			prefix = prefix.Masked()
			if len(mpls) > 0 {
				fam := bgp.VPNv4
				if prefix.Addr().Is6() {
					fam = bgp.VPNv6
				}
				out = append(out, bgp.Route{Family: fam, RD: rd, Prefix: prefix, Label: p.LabelOf[ep.Name], NextHop: underlay,
					RouteTargets: rts, Encaps: slices.Clone(mpls), OriginVN: n.VNI})
			}
			if vxlan && n.VNI != 0 {
				out = append(out, bgp.Route{Family: bgp.EVPN, RD: rd, Prefix: prefix, Label: n.VNI, NextHop: underlay,
					RouteTargets: rts, Encaps: []packet.Encap{packet.EncapVXLAN}, OriginVN: n.VNI, RouterMAC: routerMAC[:]})
			}
		}
	}
	return out
}

// encapPriority parses weft.yaml's encapsulation names (overlay.encapsulation,
// most preferred first) into the wire vocabulary the agent and agent/bgp
// use: the one place where the config's names become packet.Encap. The
// config has refused unknown names already; one that slips through a
// Config built in code is left out.
func encapPriority(c *config.Config) []packet.Encap {
	names := c.Overlay.Encapsulations()
	out := make([]packet.Encap, 0, len(names))
	for _, n := range names {
		if e, err := packet.ParseEncap(string(n)); err == nil {
			out = append(out, e)
		}
	}
	return out
}
