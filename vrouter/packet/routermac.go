package packet

import "net/netip"

// RouterMACFor is the EVPN router MAC (RFC 9135) of the vRouter whose
// underlay address is a: the inner destination MAC of the VXLAN frames
// other nodes send it, and the inner source of those it sends. EVPN wants
// one per node, not the fleet-wide gateway MAC; deriving it from the
// underlay address (the default router ID) makes it unique in a fleet
// without configuration: 02:00 and the IPv4 address, or 02:01 and the
// last four bytes of an IPv6 one; locally administered and unicast.
// The zero MAC for an invalid address.
func RouterMACFor(a netip.Addr) MAC {
	if !a.IsValid() || a.IsUnspecified() {
		return MAC{}
	}
	a = a.Unmap()
	m := MAC{0x02, 0x00}
	b := a.As16()
	if a.Is6() {
		m[1] = 0x01
	}
	copy(m[2:], b[12:])
	return m
}
