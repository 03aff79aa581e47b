package port

import "net/netip"

// LinkLocalGateway4 is the IPv4 gateway of an endpoint whose address is a
// /31 or /32: no host of its subnet is free, so the vRouter answers ARP
// for a link-local address reached on-link (as Calico does).
var LinkLocalGateway4 = netip.AddrFrom4([4]byte{169, 254, 1, 1})

// Gateway6 is the IPv6 gateway of every endpoint, on-link.
var Gateway6 = netip.MustParseAddr("fe80::1")

// DefaultGateways returns one gateway per family present in addrs, IPv4
// first: for IPv4 the first host of the first IPv4 address's subnet, and
// LinkLocalGateway4 for a /31 or /32 or when that first host is the
// address itself; for IPv6 Gateway6. Invalid prefixes are skipped.
func DefaultGateways(addrs []netip.Prefix) []netip.Addr {
	var gw4, gw6 netip.Addr
	for _, p := range addrs {
		if !p.IsValid() {
			continue
		}
		a := p.Addr()
		switch {
		case a.Is4() && !gw4.IsValid():
			gw4 = gateway4(p)
		case a.Is6() && !a.Is4In6() && !gw6.IsValid():
			gw6 = Gateway6
		}
	}
	var gws []netip.Addr
	if gw4.IsValid() {
		gws = append(gws, gw4)
	}
	if gw6.IsValid() {
		gws = append(gws, gw6)
	}
	return gws
}

func gateway4(p netip.Prefix) netip.Addr {
	if p.Bits() >= 31 {
		return LinkLocalGateway4
	}
	gw := p.Masked().Addr().Next()
	if gw == p.Addr() {
		// The next host may well be another endpoint's: fall back to the
		// link-local gateway rather than answer for a neighbour.
		return LinkLocalGateway4
	}
	return gw
}
