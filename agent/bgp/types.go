package bgp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/vrouter/packet"

	"github.com/weftnet/weft/internal/routetarget"
)

// Family is an address family the speaker negotiates and carries.
type Family int

const (
	VPNv4       Family = iota + 1 // l3vpn-ipv4-unicast (RFC 4364)
	VPNv6                         // l3vpn-ipv6-unicast (RFC 4659)
	EVPN                          // l2vpn-evpn, type 5 IP prefix routes (RFC 9136)
	IPv4Unicast                   // ipv4-unicast, for VIPs and floating IPs toward the fabric
	IPv6Unicast                   // ipv6-unicast
)

// AllFamilies is what a peer negotiates when Peer.Families is empty.
var AllFamilies = []Family{VPNv4, VPNv6, EVPN, IPv4Unicast, IPv6Unicast}

var familyNames = map[Family]string{
	VPNv4:       "l3vpn-ipv4-unicast",
	VPNv6:       "l3vpn-ipv6-unicast",
	EVPN:        "l2vpn-evpn",
	IPv4Unicast: "ipv4-unicast",
	IPv6Unicast: "ipv6-unicast",
}

// String gives GoBGP's (and OpenConfig's) name of the family.
func (f Family) String() string {
	if s, ok := familyNames[f]; ok {
		return s
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// ParseFamily reads a family name as String writes it.
func ParseFamily(s string) (Family, error) {
	for f, n := range familyNames {
		if strings.EqualFold(s, n) {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%q is not a family (l3vpn-ipv4-unicast, l3vpn-ipv6-unicast, l2vpn-evpn, ipv4-unicast, ipv6-unicast)", s)
}

func (f Family) valid() bool { _, ok := familyNames[f]; return ok }

// isVPN reports whether routes of f carry an RD.
func (f Family) isVPN() bool { return f == VPNv4 || f == VPNv6 || f == EVPN }

// RouteTarget is a route target as it travels in BGP: the one type that
// weft.yaml's schema parses too (internal/routetarget).
type RouteTarget = routetarget.RouteTarget

// RDType is the type field of a route distinguisher (RFC 4364 4.2).
type RDType uint8

const (
	RDType0 RDType = 0 // 2-byte ASN : 4-byte number
	RDType1 RDType = 1 // IPv4 address : 2-byte number; Weft's own <router-id>:<index>
	RDType2 RDType = 2 // 4-byte ASN : 2-byte number
)

// RD is a route distinguisher. It is comparable and usable as a map key;
// the zero value (type 0, 0:0) means "none" for the families without one.
type RD struct {
	Type     RDType
	ASN      uint32     // RDType0, RDType2
	Addr     netip.Addr // RDType1
	Assigned uint32     // the assigned number: 16 bits for types 1 and 2
}

// NewRD makes Weft's RD for a VRF: type 1, <router-id>:<index>.
func NewRD(routerID netip.Addr, index uint16) RD {
	return RD{Type: RDType1, Addr: routerID, Assigned: uint32(index)}
}

// IsZero reports whether rd is the zero value.
func (rd RD) IsZero() bool { return rd == RD{} }

// String writes the RD so that ParseRD reads it back unchanged: 64512:7,
// 192.0.2.1:7, and 4200000000:7 or 64512L:7 (a small ASN in the type 2
// form).
func (rd RD) String() string {
	n := strconv.FormatUint(uint64(rd.Assigned), 10)
	switch rd.Type {
	case RDType1:
		return rd.Addr.String() + ":" + n
	case RDType2:
		if rd.ASN <= 0xffff {
			return strconv.FormatUint(uint64(rd.ASN), 10) + "L:" + n
		}
	}
	return strconv.FormatUint(uint64(rd.ASN), 10) + ":" + n
}

// ParseRD reads an RD as String writes it. Unlike route targets, AS 0 is
// accepted: RDs seen on the wire are printed and parsed back losslessly.
func ParseRD(s string) (RD, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return RD{}, fmt.Errorf("route distinguisher %q: want ASN:number or IPv4:number", s)
	}
	admin, local := s[:i], s[i+1:]
	n, err := parseUint(local, 32)
	if err != nil {
		return RD{}, fmt.Errorf("route distinguisher %q: %q is not a number in 0..4294967295", s, local)
	}
	rd := RD{Assigned: uint32(n)}
	switch {
	case strings.Contains(admin, "."):
		a, err := netip.ParseAddr(admin)
		if err != nil || !a.Is4() {
			return RD{}, fmt.Errorf("route distinguisher %q: %q is not an IPv4 address", s, admin)
		}
		rd.Type, rd.Addr = RDType1, a
	case strings.HasSuffix(admin, "L") || strings.HasSuffix(admin, "l"):
		asn, err := parseUint(admin[:len(admin)-1], 32)
		if err != nil {
			return RD{}, fmt.Errorf("route distinguisher %q: %q is not an ASN", s, admin)
		}
		rd.Type, rd.ASN = RDType2, uint32(asn)
	default:
		asn, err := parseUint(admin, 32)
		if err != nil {
			return RD{}, fmt.Errorf("route distinguisher %q: %q is not an ASN", s, admin)
		}
		rd.ASN = uint32(asn)
		if asn > 0xffff {
			rd.Type = RDType2
		}
	}
	if err := rd.validate(); err != nil {
		return RD{}, fmt.Errorf("route distinguisher %q: %w", s, err)
	}
	return rd, nil
}

func parseUint(s string, bits int) (uint64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(s, 10, bits)
}

func (rd RD) validate() error {
	switch rd.Type {
	case RDType0:
		if rd.ASN > 0xffff {
			return fmt.Errorf("type 0 needs a 2-byte ASN, not %d", rd.ASN)
		}
	case RDType1:
		if !rd.Addr.Is4() {
			return fmt.Errorf("type 1 needs an IPv4 address, not %v", rd.Addr)
		}
		if rd.Assigned > 0xffff {
			return fmt.Errorf("type 1 needs a number in 0..65535, not %d", rd.Assigned)
		}
	case RDType2:
		if rd.Assigned > 0xffff {
			return fmt.Errorf("type 2 needs a number in 0..65535, not %d", rd.Assigned)
		}
	default:
		return fmt.Errorf("unknown type %d", rd.Type)
	}
	if rd.Type != RDType1 && rd.Addr.IsValid() {
		return fmt.Errorf("type %d has no address", rd.Type)
	}
	if rd.Type == RDType1 && rd.ASN != 0 {
		return fmt.Errorf("type 1 has no ASN")
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (rd RD) MarshalText() ([]byte, error) { return []byte(rd.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (rd *RD) UnmarshalText(b []byte) error {
	v, err := ParseRD(string(b))
	if err != nil {
		return err
	}
	*rd = v
	return nil
}

// Route is one path: what the agent announces, or a best path received
// from a peer.
type Route struct {
	Family Family
	RD     RD // VPNv4, VPNv6 and EVPN; zero for the unicast families
	Prefix netip.Prefix
	// Label is the MPLS label (VPN families, 20 bits) or the VNI (EVPN type
	// 5, 24 bits); 0 for the unicast families.
	Label   uint32
	NextHop netip.Addr
	// RouteTargets become route target extended communities.
	RouteTargets []RouteTarget
	// Encaps are the tunnel types the next hop accepts, most preferred
	// first: each becomes an encapsulation extended community (RFC 9012
	// 4.1) and a TLV of the Tunnel Encapsulation attribute (RFC 9012 2),
	// in this order. Received routes take the attribute's order when it
	// arrived, else the communities'; tunnel types the vRouter does not
	// speak are left out.
	Encaps []packet.Encap
	// OriginVN is Contrail's origin-vn extended community (type 0x80 sub
	// 0x71, ASN:VN); 0 = none. Weft puts the network's VNI in it so that
	// a receiver knows which network a route came from.
	OriginVN uint32
	// RouterMAC is the EVPN Router's MAC extended community (RFC 9135),
	// for VXLAN; nil = none.
	RouterMAC net.HardwareAddr
	// TunnelEndpoint is the RFC 9012 Tunnel Egress Endpoint sub-TLV of
	// the Tunnel Encapsulation attribute's first TLV that names one
	// (received routes only; announced routes send NextHop there): the
	// address to tunnel to where a route server has rewritten the next
	// hop to itself. Zero = none, or one that is not a usable unicast
	// address. Endpoint gives the address to tunnel to.
	TunnelEndpoint netip.Addr
	LocalPref      uint32 // 0 = not sent (iBGP peers assume 100)
	MED            uint32 // 0 = not sent

	// Set on received routes only.
	Peer  netip.Addr // the peer the path came from (a reflector, usually)
	Stale bool       // the peer is in graceful restart and has not refreshed the path yet
}

// Key identifies a route in a RIB: two routes with the same key replace
// each other. With an RD per node, the same prefix from three nodes has
// three keys.
type Key struct {
	Family Family
	RD     RD
	Prefix netip.Prefix
}

// Key returns r's key.
func (r Route) Key() Key { return Key{r.Family, r.RD, r.Prefix.Masked()} }

// String writes the key as GoBGP and FRR do: RD:prefix for the VPN
// families, the prefix alone for the others.
func (k Key) String() string {
	if k.Family.isVPN() {
		return k.Family.String() + " " + k.RD.String() + ":" + k.Prefix.String()
	}
	return k.Family.String() + " " + k.Prefix.String()
}

// Equal reports whether r and o carry the same key and attributes (Peer
// and Stale are ignored): announcing o after r changes nothing.
func (r Route) Equal(o Route) bool {
	return r.Key() == o.Key() &&
		r.Label == o.Label &&
		r.NextHop == o.NextHop &&
		r.TunnelEndpoint == o.TunnelEndpoint &&
		slices.Equal(r.RouteTargets, o.RouteTargets) &&
		slices.Equal(r.Encaps, o.Encaps) &&
		r.OriginVN == o.OriginVN &&
		slices.Equal(r.RouterMAC, o.RouterMAC) &&
		r.LocalPref == o.LocalPref &&
		r.MED == o.MED
}

// Endpoint is the address to tunnel to for r: the Tunnel Egress Endpoint
// when the route carries a usable one (RFC 9012 6: it names the tunnel's
// far end, which the next hop of a route passed on by an eBGP route
// server no longer does), else the next hop.
func (r Route) Endpoint() netip.Addr {
	if r.TunnelEndpoint.IsValid() {
		return r.TunnelEndpoint
	}
	return r.NextHop
}

// Clone returns a deep copy of r.
func (r Route) Clone() Route {
	r.RouteTargets = slices.Clone(r.RouteTargets)
	r.Encaps = slices.Clone(r.Encaps)
	r.RouterMAC = slices.Clone(r.RouterMAC)
	return r
}

// String is for logs and test failures.
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Key().String())
	fmt.Fprintf(&b, " label %d nh %v", r.Label, r.NextHop)
	for _, rt := range r.RouteTargets {
		b.WriteString(" rt " + rt.String())
	}
	for _, e := range r.Encaps {
		b.WriteString(" encap " + e.String())
	}
	if r.OriginVN != 0 {
		fmt.Fprintf(&b, " origin-vn %d", r.OriginVN)
	}
	if r.RouterMAC != nil {
		b.WriteString(" rmac " + r.RouterMAC.String())
	}
	if r.TunnelEndpoint.IsValid() {
		fmt.Fprintf(&b, " egress %v", r.TunnelEndpoint)
	}
	if r.LocalPref != 0 {
		fmt.Fprintf(&b, " local-pref %d", r.LocalPref)
	}
	if r.MED != 0 {
		fmt.Fprintf(&b, " med %d", r.MED)
	}
	if r.Peer.IsValid() {
		fmt.Fprintf(&b, " from %v", r.Peer)
	}
	if r.Stale {
		b.WriteString(" stale")
	}
	return b.String()
}
