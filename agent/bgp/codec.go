package bgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/internal/routetarget"
	"github.com/weftnet/weft/vrouter/packet"
)

// This file turns a Route into GoBGP's native NLRI and path attributes (and
// from there its API path), codec_decode.go back. They know the wire
// formats; the speaker (speaker.go) knows nothing of them.

const (
	// Contrail's origin-vn extended community: type 0x80 (generic
	// transitive experimental, RFC 5575 space) with a 2-byte ASN and a
	// 4-byte VN index, or type 0x82 with a 4-byte ASN and a 2-byte VN
	// index for speakers whose ASN does not fit in two bytes.
	originVNType2    = 0x80
	originVNType4    = 0x82
	originVNSubType  = 0x71
	maxMPLSLabel     = 1<<20 - 1
	maxVNI           = 1<<24 - 1
	ecSubRouteTarget = bgp.EC_SUBTYPE_ROUTE_TARGET
)

// tunnelType numbers e as IANA's BGP Tunnel Encapsulation Attribute Tunnel
// Types registry does, for both the encapsulation extended community and
// the attribute's TLVs; 0 (reserved) for an encapsulation BGP cannot carry.
func tunnelType(e packet.Encap) bgp.TunnelType {
	switch e {
	case packet.EncapVXLAN:
		return bgp.TUNNEL_TYPE_VXLAN // 8
	case packet.EncapMPLSoGRE:
		return bgp.TUNNEL_TYPE_MPLS_IN_GRE // 11
	case packet.EncapMPLSoUDP:
		return bgp.TUNNEL_TYPE_MPLS_IN_UDP // 13
	}
	return 0
}

// encapOf is the encapsulation tunnel type t names; false for a tunnel
// type the vRouter does not speak (IP-in-IP, say), which is left out.
func encapOf(t bgp.TunnelType) (packet.Encap, bool) {
	for _, e := range []packet.Encap{packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN} {
		if tunnelType(e) == t {
			return e, true
		}
	}
	return packet.EncapNone, false
}

// udpPort is the destination port the tunnel type uses on the wire, for the
// Tunnel Encapsulation attribute's UDP Destination Port sub-TLV; 0 = none.
func udpPort(e packet.Encap) uint16 {
	switch e {
	case packet.EncapMPLSoUDP:
		return packet.MPLSoUDPPort
	case packet.EncapVXLAN:
		return packet.VXLANPort
	}
	return 0
}

// errUnsupported marks a received path of a kind the speaker does not
// decode (an EVPN route type other than 5, a family we do not carry):
// skipped quietly, unlike a malformed one.
var errUnsupported = errors.New("not a route Weft uses")

func (f Family) routeFamily() bgp.RouteFamily {
	switch f {
	case VPNv4:
		return bgp.RF_IPv4_VPN
	case VPNv6:
		return bgp.RF_IPv6_VPN
	case EVPN:
		return bgp.RF_EVPN
	case IPv4Unicast:
		return bgp.RF_IPv4_UC
	case IPv6Unicast:
		return bgp.RF_IPv6_UC
	}
	return 0
}

func familyOf(rf bgp.RouteFamily) (Family, bool) {
	switch rf {
	case bgp.RF_IPv4_VPN:
		return VPNv4, true
	case bgp.RF_IPv6_VPN:
		return VPNv6, true
	case bgp.RF_EVPN:
		return EVPN, true
	case bgp.RF_IPv4_UC:
		return IPv4Unicast, true
	case bgp.RF_IPv6_UC:
		return IPv6Unicast, true
	}
	return 0, false
}

func (f Family) apiFamily() *api.Family {
	afi, safi := bgp.RouteFamilyToAfiSafi(f.routeFamily())
	return &api.Family{Afi: api.Family_Afi(afi), Safi: api.Family_Safi(safi)}
}

// Validate checks that r can be announced, naming the field at fault.
func (r Route) Validate() error {
	if !r.Family.valid() {
		return fmt.Errorf("family: unknown (%d)", int(r.Family))
	}
	p := r.Prefix
	if !p.IsValid() {
		return fmt.Errorf("prefix: missing")
	}
	if p != p.Masked() {
		return fmt.Errorf("prefix %v: host bits set (want %v)", p, p.Masked())
	}
	if p.Addr().Is4In6() {
		return fmt.Errorf("prefix %v: IPv4-mapped IPv6 prefix", p)
	}
	switch r.Family {
	case VPNv4, IPv4Unicast:
		if !p.Addr().Is4() {
			return fmt.Errorf("prefix %v: not IPv4, as %s needs", p, r.Family)
		}
	case VPNv6, IPv6Unicast:
		if !p.Addr().Is6() {
			return fmt.Errorf("prefix %v: not IPv6, as %s needs", p, r.Family)
		}
	}
	if r.Family.isVPN() {
		if r.RD.IsZero() {
			return fmt.Errorf("rd: required for %s", r.Family)
		}
		if err := r.RD.validate(); err != nil {
			return fmt.Errorf("rd %v: %w", r.RD, err)
		}
	} else if !r.RD.IsZero() {
		return fmt.Errorf("rd %v: %s has no route distinguisher", r.RD, r.Family)
	}
	switch r.Family {
	case VPNv4, VPNv6:
		if r.Label > maxMPLSLabel {
			return fmt.Errorf("label %d: above the 20-bit MPLS maximum %d", r.Label, maxMPLSLabel)
		}
	case EVPN:
		if r.Label > maxVNI {
			return fmt.Errorf("label %d: a VNI has 24 bits (max %d)", r.Label, maxVNI)
		}
	default:
		if r.Label != 0 {
			return fmt.Errorf("label %d: %s carries no label", r.Label, r.Family)
		}
	}
	nh := r.NextHop
	if !nh.IsValid() || nh.IsUnspecified() {
		return fmt.Errorf("next hop %v: missing or unspecified", nh)
	}
	if nh.Zone() != "" || nh.Is4In6() {
		return fmt.Errorf("next hop %v: use a plain IPv4 or IPv6 address", nh)
	}
	if (r.Family == VPNv4 || r.Family == IPv4Unicast) && !nh.Is4() {
		// RFC 8950 (IPv6 next hop for IPv4 routes) needs a capability
		// the reflectors we test do not all have.
		return fmt.Errorf("next hop %v: %s needs an IPv4 next hop", nh, r.Family)
	}
	for i, rt := range r.RouteTargets {
		if err := validateRT(rt); err != nil {
			return fmt.Errorf("route targets[%d] %v: %w", i, rt, err)
		}
	}
	for i, e := range r.Encaps {
		if tunnelType(e) == 0 {
			return fmt.Errorf("encaps[%d]: tunnel type 0 (%v): not an encapsulation BGP carries", i, e)
		}
		if slices.Index(r.Encaps, e) != i {
			return fmt.Errorf("encaps[%d] %v: given twice", i, e)
		}
	}
	if r.RouterMAC != nil && len(r.RouterMAC) != 6 {
		return fmt.Errorf("router MAC %v: want 6 bytes", r.RouterMAC)
	}
	return nil
}

func validateRT(rt RouteTarget) error {
	switch rt.Type {
	case routetarget.AS2:
		if rt.ASN > 0xffff {
			return fmt.Errorf("two-octet AS form with ASN %d", rt.ASN)
		}
	case routetarget.AS4:
		if rt.Local > 0xffff {
			return fmt.Errorf("four-octet AS form with number %d above 65535", rt.Local)
		}
	case routetarget.IPv4:
		if !rt.Addr.Is4() {
			return fmt.Errorf("IPv4 form without an IPv4 address")
		}
		if rt.Local > 0xffff {
			return fmt.Errorf("IPv4 form with number %d above 65535", rt.Local)
		}
	default:
		return fmt.Errorf("unknown type %d", rt.Type)
	}
	return nil
}

func nativeRD(rd RD) bgp.RouteDistinguisherInterface {
	switch rd.Type {
	case RDType1:
		return bgp.NewRouteDistinguisherIPAddressAS(rd.Addr.String(), uint16(rd.Assigned))
	case RDType2:
		return bgp.NewRouteDistinguisherFourOctetAS(rd.ASN, uint16(rd.Assigned))
	}
	return bgp.NewRouteDistinguisherTwoOctetAS(uint16(rd.ASN), rd.Assigned)
}

func rdFromNative(n bgp.RouteDistinguisherInterface) (RD, error) {
	switch v := n.(type) {
	case *bgp.RouteDistinguisherTwoOctetAS:
		return RD{Type: RDType0, ASN: uint32(v.Admin), Assigned: v.Assigned}, nil
	case *bgp.RouteDistinguisherIPAddressAS:
		a, ok := netip.AddrFromSlice(v.Admin)
		if !ok {
			return RD{}, fmt.Errorf("rd: bad address %v", v.Admin)
		}
		return RD{Type: RDType1, Addr: a.Unmap(), Assigned: uint32(v.Assigned)}, nil
	case *bgp.RouteDistinguisherFourOctetAS:
		return RD{Type: RDType2, ASN: v.Admin, Assigned: uint32(v.Assigned)}, nil
	case nil:
		return RD{}, fmt.Errorf("rd: missing")
	}
	return RD{}, fmt.Errorf("rd: unknown type %T", n)
}

// nlri builds r's NLRI (r is valid).
func (r Route) nlri() bgp.AddrPrefixInterface {
	p := r.Prefix
	bits, addr := uint8(p.Bits()), p.Addr().String()
	switch r.Family {
	case VPNv4:
		return bgp.NewLabeledVPNIPAddrPrefix(bits, addr, *bgp.NewMPLSLabelStack(r.Label), nativeRD(r.RD))
	case VPNv6:
		return bgp.NewLabeledVPNIPv6AddrPrefix(bits, addr, *bgp.NewMPLSLabelStack(r.Label), nativeRD(r.RD))
	case EVPN:
		gw := "0.0.0.0"
		if p.Addr().Is6() {
			gw = "::"
		}
		return bgp.NewEVPNIPPrefixRoute(nativeRD(r.RD), bgp.EthernetSegmentIdentifier{}, 0, bits, addr, gw, r.Label)
	case IPv4Unicast:
		return bgp.NewIPAddrPrefix(bits, addr)
	case IPv6Unicast:
		return bgp.NewIPv6AddrPrefix(bits, addr)
	}
	return nil
}

// nextHopString is what GoBGP's API takes as next hop. For VPNv6 and
// IPv6 unicast over IPv4 (RFC 4659 3.2.1.2, RFC 4798) the IPv4 next hop
// travels IPv4-mapped; net.ParseIP returns the 16-byte form GoBGP copies
// verbatim into MP_REACH, which is exactly that.
func (r Route) nextHopString() string { return r.NextHop.String() }

func rtCommunity(rt RouteTarget) bgp.ExtendedCommunityInterface {
	switch rt.Type {
	case routetarget.AS4:
		return bgp.NewFourOctetAsSpecificExtended(ecSubRouteTarget, rt.ASN, uint16(rt.Local), true)
	case routetarget.IPv4:
		return bgp.NewIPv4AddressSpecificExtended(ecSubRouteTarget, rt.Addr.String(), uint16(rt.Local), true)
	}
	return bgp.NewTwoOctetAsSpecificExtended(ecSubRouteTarget, uint16(rt.ASN), rt.Local, true)
}

func originVNCommunity(asn, vn uint32) (bgp.ExtendedCommunityInterface, error) {
	v := make([]byte, 7)
	v[0] = originVNSubType
	if asn <= 0xffff {
		binary.BigEndian.PutUint16(v[1:], uint16(asn))
		binary.BigEndian.PutUint32(v[3:], vn)
		return bgp.NewUnknownExtended(originVNType2, v), nil
	}
	if vn > 0xffff {
		return nil, fmt.Errorf("origin VN %d: above 65535, the most a 4-byte ASN (%d) leaves room for", vn, asn)
	}
	binary.BigEndian.PutUint32(v[1:], asn)
	binary.BigEndian.PutUint16(v[5:], uint16(vn))
	return bgp.NewUnknownExtended(originVNType4, v), nil
}

// encoding is what the speaker's configuration changes in how a Route is
// encoded.
type encoding struct {
	asn         uint32 // the speaker's, for origin-vn
	tunnelEncap TunnelEncapMode
}

// attributes builds r's path attributes except the next hop and MP_REACH,
// which GoBGP's API builds from the next hop it is given.
func (r Route) attributes(enc encoding) ([]bgp.PathAttributeInterface, error) {
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if r.MED != 0 {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(r.MED))
	}
	if r.LocalPref != 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(r.LocalPref))
	}
	var ecs []bgp.ExtendedCommunityInterface
	for _, rt := range r.RouteTargets {
		ecs = append(ecs, rtCommunity(rt))
	}
	for _, e := range r.Encaps {
		ecs = append(ecs, bgp.NewEncapExtended(tunnelType(e)))
	}
	if r.OriginVN != 0 {
		c, err := originVNCommunity(enc.asn, r.OriginVN)
		if err != nil {
			return nil, err
		}
		ecs = append(ecs, c)
	}
	if r.RouterMAC != nil {
		ecs = append(ecs, &bgp.RouterMacExtended{Mac: slices.Clone(r.RouterMAC)})
	}
	if len(ecs) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeExtendedCommunities(ecs))
	}
	tlvEncaps := r.Encaps
	switch enc.tunnelEncap {
	case TunnelEncapFirst:
		tlvEncaps = tlvEncaps[:min(len(tlvEncaps), 1)]
	case TunnelEncapNone:
		tlvEncaps = nil
	}
	if len(tlvEncaps) > 0 {
		tlvs := make([]*bgp.TunnelEncapTLV, 0, len(tlvEncaps))
		for _, e := range tlvEncaps {
			sub := []bgp.TunnelEncapSubTLVInterface{bgp.NewTunnelEncapSubTLVEgressEndpoint(r.NextHop.String())}
			if port := udpPort(e); port != 0 {
				sub = append(sub, bgp.NewTunnelEncapSubTLVUDPDestPort(port))
			}
			tlvs = append(tlvs, bgp.NewTunnelEncapTLV(tunnelType(e), sub))
		}
		attrs = append(attrs, bgp.NewPathAttributeTunnelEncap(tlvs))
	}
	return attrs, nil
}

// apiPath builds the GoBGP API path that announces r (or withdraws it:
// only the NLRI matters then).
func (r Route) apiPath(enc encoding, withdraw bool) (*api.Path, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	nlri := r.nlri()
	attrs, err := r.attributes(enc)
	if err != nil {
		return nil, err
	}
	if r.Family == IPv4Unicast {
		attrs = append(attrs, bgp.NewPathAttributeNextHop(r.nextHopString()))
	} else {
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(r.nextHopString(), []bgp.AddrPrefixInterface{nlri}))
	}
	p, err := apiutil.NewPath(nlri, withdraw, attrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%v: encoding for GoBGP: %w", r.Key(), err)
	}
	return p, nil
}
