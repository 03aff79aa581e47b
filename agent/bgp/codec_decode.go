package bgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/internal/routetarget"
	"github.com/weftnet/weft/vrouter/packet"
)

// GoBGP's API paths, and native NLRI and attributes, back into a Route
// (codec.go encodes). What a peer sent is checked, never trusted.

// routeFromAPI decodes a path GoBGP hands out (a watch event or a RIB
// listing). It fails on anything incomplete rather than guess: a route
// with no next hop must not reach the vRouter.
func routeFromAPI(p *api.Path) (Route, error) {
	if p == nil || p.Family == nil {
		return Route{}, fmt.Errorf("path without family")
	}
	fam, ok := familyOf(apiutil.ToRouteFamily(p.Family))
	if !ok {
		return Route{}, errUnsupported
	}
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return Route{}, fmt.Errorf("%s: nlri: %w", fam, err)
	}
	var attrs []bgp.PathAttributeInterface
	if !p.IsWithdraw {
		attrs, err = apiutil.GetNativePathAttributes(p)
		if err != nil {
			return Route{}, fmt.Errorf("%s %s: attributes: %w", fam, nlri, err)
		}
	}
	r, err := routeFromNative(fam, nlri, attrs, !p.IsWithdraw)
	if err != nil {
		return Route{}, err
	}
	r.Stale = p.Stale
	if a, err := netip.ParseAddr(p.NeighborIp); err == nil && !a.IsUnspecified() {
		r.Peer = a.Unmap()
	}
	return r, nil
}

// routeFromNative decodes an NLRI and its attributes; needAttrs demands a
// next hop (false for withdrawals, which carry the key only).
func routeFromNative(fam Family, nlri bgp.AddrPrefixInterface, attrs []bgp.PathAttributeInterface, needAttrs bool) (Route, error) {
	r := Route{Family: fam}
	if err := r.decodeNLRI(nlri); err != nil {
		if errors.Is(err, errUnsupported) {
			return Route{}, err
		}
		return Route{}, fmt.Errorf("%s %v: %w", fam, nlri, err)
	}
	if !needAttrs {
		return r, nil
	}
	var a attrPart
	if err := a.decode(attrs); err != nil {
		return Route{}, fmt.Errorf("%v: %w", r.Key(), err)
	}
	if err := r.finish(a); err != nil {
		return Route{}, err
	}
	return r, nil
}

// finish settles the attributes into r and checks the route whole.
func (r *Route) finish(a attrPart) error {
	if err := r.applyAttrs(a); err != nil {
		return fmt.Errorf("%v: %w", r.Key(), err)
	}
	if !r.NextHop.IsValid() {
		return fmt.Errorf("%v: no next hop", r.Key())
	}
	// What reaches a subscriber is what could have been announced: a
	// VPNv4 route with an IPv6 next hop, say, is of no use to the vRouter.
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%v: %w", r.Key(), err)
	}
	return nil
}

func prefixFrom(ip net.IP, bits int) (netip.Prefix, error) {
	// 4 bytes give an IPv4 prefix, 16 an IPv6 one (callers pass To4 or
	// To16 as the family says).
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("prefix: bad address %v", ip)
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix %v/%d: %w", ip, bits, err)
	}
	return p, nil
}

func (r *Route) decodeNLRI(n bgp.AddrPrefixInterface) error {
	var err error
	switch v := n.(type) {
	case *bgp.LabeledVPNIPAddrPrefix:
		if r.Family != VPNv4 {
			return errUnsupported
		}
		err = r.decodeVPN(v.Prefix.To4(), int(v.IPPrefixLen()), v.Labels, v.RD)
	case *bgp.LabeledVPNIPv6AddrPrefix:
		if r.Family != VPNv6 {
			return errUnsupported
		}
		err = r.decodeVPN(v.Prefix.To16(), int(v.IPPrefixLen()), v.Labels, v.RD)
	case *bgp.EVPNNLRI:
		ip, ok := v.RouteTypeData.(*bgp.EVPNIPPrefixRoute)
		if r.Family != EVPN || !ok {
			return errUnsupported
		}
		if r.RD, err = rdFromNative(ip.RD); err != nil {
			return err
		}
		r.Label = ip.Label
		a := ip.IPPrefix
		if v4 := a.To4(); v4 != nil {
			// GoBGP keeps some IPv4 prefixes in the 16-byte form.
			a = v4
		}
		r.Prefix, err = prefixFrom(a, int(ip.IPPrefixLength))
	case *bgp.IPv6AddrPrefix:
		if r.Family != IPv6Unicast {
			return errUnsupported
		}
		r.Prefix, err = prefixFrom(v.Prefix.To16(), int(v.Length))
	case *bgp.IPAddrPrefix:
		if r.Family != IPv4Unicast {
			return errUnsupported
		}
		r.Prefix, err = prefixFrom(v.Prefix.To4(), int(v.Length))
	default:
		return errUnsupported
	}
	if err != nil {
		return err
	}
	if r.Prefix != r.Prefix.Masked() {
		return fmt.Errorf("prefix %v: host bits set", r.Prefix)
	}
	return nil
}

func (r *Route) decodeVPN(ip net.IP, bits int, labels bgp.MPLSLabelStack, rd bgp.RouteDistinguisherInterface) error {
	var err error
	if r.RD, err = rdFromNative(rd); err != nil {
		return err
	}
	if len(labels.Labels) == 0 {
		return fmt.Errorf("label: missing")
	}
	// One label is all a VPN route of ours carries; a stack would be the
	// outer labels of something else.
	r.Label = labels.Labels[0]
	r.Prefix, err = prefixFrom(ip, bits)
	return err
}

// attrPart is what a route's path attributes say, before the next hop
// and the encapsulations are settled (applyAttrs): the part that many
// routes share, which a subscription decodes once (attrCache).
type attrPart struct {
	nextHop, mpNextHop    netip.Addr // NEXT_HOP's, MP_REACH's
	localPref, med        uint32
	rts                   []RouteTarget
	commEncaps, tlvEncaps []packet.Encap
	tunnelEndpoint        netip.Addr
	originVN              uint32
	routerMAC             net.HardwareAddr
}

func (a *attrPart) decode(attrs []bgp.PathAttributeInterface) error {
	for _, at := range attrs {
		switch v := at.(type) {
		case *bgp.PathAttributeNextHop:
			if !a.nextHop.IsValid() {
				nh, ok := netip.AddrFromSlice(v.Value)
				if !ok {
					return fmt.Errorf("next hop: bad address %v", v.Value)
				}
				a.nextHop = nh.Unmap()
			}
		case *bgp.PathAttributeMpReachNLRI:
			nh, ok := netip.AddrFromSlice(v.Nexthop)
			if !ok {
				return fmt.Errorf("next hop: bad address %v", v.Nexthop)
			}
			// RFC 4659: an IPv4 next hop of a VPNv6 route arrives
			// IPv4-mapped; the vRouter wants the IPv4 address.
			a.mpNextHop = nh.Unmap()
		case *bgp.PathAttributeLocalPref:
			a.localPref = v.Value
		case *bgp.PathAttributeMultiExitDisc:
			a.med = v.Value
		case *bgp.PathAttributeExtendedCommunities:
			for _, c := range v.Value {
				if err := a.decodeCommunity(c); err != nil {
					return err
				}
			}
		case *bgp.PathAttributeTunnelEncap:
			for _, t := range v.Value {
				e, ok := encapOf(t.Type)
				if !ok {
					continue
				}
				if !slices.Contains(a.tlvEncaps, e) {
					a.tlvEncaps = append(a.tlvEncaps, e)
				}
				if !a.tunnelEndpoint.IsValid() {
					a.tunnelEndpoint = egressEndpoint(t)
				}
			}
		}
	}
	return nil
}

// applyAttrs settles a into r. The slices r gets may be shared with
// other routes (attrCache): they are clipped, so that an append copies.
func (r *Route) applyAttrs(a attrPart) error {
	r.NextHop = a.nextHop
	if a.mpNextHop.IsValid() {
		r.NextHop = a.mpNextHop
	}
	r.LocalPref, r.MED, r.OriginVN, r.RouterMAC = a.localPref, a.med, a.originVN, a.routerMAC
	r.RouteTargets = slices.Clip(a.rts)
	if r.NextHop.IsValid() && r.NextHop.IsUnspecified() {
		return fmt.Errorf("next hop %v: unspecified", r.NextHop)
	}
	r.TunnelEndpoint = a.tunnelEndpoint
	if r.TunnelEndpoint == r.NextHop {
		// The usual case (Weft's own routes, a next hop left
		// unchanged): the endpoint adds nothing.
		r.TunnelEndpoint = netip.Addr{}
	}
	// The attribute keeps the sender's order; communities may have been
	// reordered by a reflector, so they only add what the attribute lacks.
	r.Encaps = slices.Clip(a.tlvEncaps)
	for _, e := range a.commEncaps {
		if !slices.Contains(r.Encaps, e) {
			r.Encaps = append(r.Encaps, e)
		}
	}
	return nil
}

// egressEndpoint is the usable Tunnel Egress Endpoint of a TLV, or the
// zero Addr: RFC 9012 3.1 lets it be absent, or the address family 0
// ("the receiver's choice"); an unspecified, multicast or loopback
// address names no tunnel end either, and one is never trusted more than
// the next hop it would replace.
func egressEndpoint(t *bgp.TunnelEncapTLV) netip.Addr {
	for _, s := range t.Value {
		ep, ok := s.(*bgp.TunnelEncapSubTLVEgressEndpoint)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ep.Address)
		if !ok {
			return netip.Addr{}
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			return netip.Addr{}
		}
		return a
	}
	return netip.Addr{}
}

func (a *attrPart) decodeCommunity(c bgp.ExtendedCommunityInterface) error {
	switch v := c.(type) {
	case *bgp.TwoOctetAsSpecificExtended:
		if v.SubType == ecSubRouteTarget {
			a.addRT(RouteTarget{Type: routetarget.AS2, ASN: uint32(v.AS), Local: v.LocalAdmin})
		}
	case *bgp.FourOctetAsSpecificExtended:
		if v.SubType == ecSubRouteTarget {
			a.addRT(RouteTarget{Type: routetarget.AS4, ASN: v.AS, Local: uint32(v.LocalAdmin)})
		}
	case *bgp.IPv4AddressSpecificExtended:
		if v.SubType == ecSubRouteTarget {
			ip, ok := netip.AddrFromSlice(v.IPv4)
			if !ok {
				return fmt.Errorf("route target: bad address %v", v.IPv4)
			}
			a.addRT(RouteTarget{Type: routetarget.IPv4, Addr: ip.Unmap(), Local: uint32(v.LocalAdmin)})
		}
	case *bgp.EncapExtended:
		if e, ok := encapOf(v.TunnelType); ok && !slices.Contains(a.commEncaps, e) {
			a.commEncaps = append(a.commEncaps, e)
		}
	case *bgp.RouterMacExtended:
		if a.routerMAC == nil && len(v.Mac) == 6 {
			a.routerMAC = slices.Clone(v.Mac)
		}
	case *bgp.UnknownExtended:
		if a.originVN == 0 && len(v.Value) == 7 && v.Value[0] == originVNSubType {
			switch v.Type {
			case originVNType2:
				a.originVN = binary.BigEndian.Uint32(v.Value[3:7])
			case originVNType4:
				a.originVN = uint32(binary.BigEndian.Uint16(v.Value[5:7]))
			}
		}
	}
	return nil
}

func (a *attrPart) addRT(rt RouteTarget) {
	if !slices.Contains(a.rts, rt) {
		a.rts = append(a.rts, rt)
	}
}
