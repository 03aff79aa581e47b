package packet

import "fmt"

// Encap is a tunnel encapsulation the vRouter speaks on the underlay.
type Encap uint8

const (
	EncapNone     Encap = iota
	EncapMPLSoUDP       // RFC 7510: outer IP, UDP to 6635, one MPLS label
	EncapMPLSoGRE       // RFC 4023: outer IP, GRE (0x8847), one MPLS label
	EncapVXLAN          // RFC 7348: outer IP, UDP to 4789, VXLAN, inner Ethernet
)

var encapNames = [...]string{EncapNone: "none", EncapMPLSoUDP: "mplsoudp", EncapMPLSoGRE: "mplsogre", EncapVXLAN: "vxlan"}

func (e Encap) String() string {
	if int(e) < len(encapNames) {
		return encapNames[e]
	}
	return fmt.Sprintf("encap(%d)", uint8(e))
}

// ParseEncap reads the names String gives ("mplsoudp", "mplsogre", "vxlan"),
// as weft.yaml spells them.
func ParseEncap(s string) (Encap, error) {
	for i, n := range encapNames {
		if i != int(EncapNone) && n == s {
			return Encap(i), nil
		}
	}
	return EncapNone, fmt.Errorf("encapsulation %q: want mplsoudp, mplsogre or vxlan", s)
}

// Bytes each encapsulation adds in front of an inner IP packet. The VXLAN
// figures include the inner Ethernet header, which rides inside the tunnel
// too. An endpoint's MTU is the underlay MTU minus the overhead of the
// encapsulation in use; MaxEncapOverhead is the headroom a buffer needs for
// any of them.
const (
	OverheadMPLSoUDP4 = IPv4MinHeaderLen + UDPHeaderLen + MPLSEntryLen                       // 32
	OverheadMPLSoUDP6 = IPv6HeaderLen + UDPHeaderLen + MPLSEntryLen                          // 52
	OverheadMPLSoGRE4 = IPv4MinHeaderLen + GREHeaderLen + MPLSEntryLen                       // 28
	OverheadMPLSoGRE6 = IPv6HeaderLen + GREHeaderLen + MPLSEntryLen                          // 48
	OverheadVXLAN4    = IPv4MinHeaderLen + UDPHeaderLen + VXLANHeaderLen + EthernetHeaderLen // 50
	OverheadVXLAN6    = IPv6HeaderLen + UDPHeaderLen + VXLANHeaderLen + EthernetHeaderLen    // 70
	MaxEncapOverhead  = OverheadVXLAN6
)

// Overhead is the encapsulation's overhead over an IPv6 (ipv6) or IPv4
// underlay; 0 for EncapNone or an unknown kind.
func (e Encap) Overhead(ipv6 bool) int {
	switch e {
	case EncapMPLSoUDP:
		if ipv6 {
			return OverheadMPLSoUDP6
		}
		return OverheadMPLSoUDP4
	case EncapMPLSoGRE:
		if ipv6 {
			return OverheadMPLSoGRE6
		}
		return OverheadMPLSoGRE4
	case EncapVXLAN:
		if ipv6 {
			return OverheadVXLAN6
		}
		return OverheadVXLAN4
	}
	return 0
}
