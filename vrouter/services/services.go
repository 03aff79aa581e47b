// Package services answers what a workload asks its first-hop router on
// its own port, so that the workload needs nothing but an interface: ARP
// and IPv6 neighbor solicitations (proxied: every address but the
// workload's own is at the vRouter's gateway MAC, because routing is L3 in
// the VRF and the vRouter is every workload's gateway), router
// solicitations (an advertisement that gives the default route) and, for
// ports that ask for it, DHCPv4.
//
// A port's receive loop calls Handle on each frame before the forwarder.
// The answers go back out of the same port; nothing here is forwarded and
// nothing is learnt: a port's addresses are configured, never discovered.
//
// Which frames are the services' is decided from headers that parse
// cleanly: an untagged ARP frame; an IPv6 packet whose upper-layer header
// is an ICMPv6 neighbor or router solicitation; an IPv4 UDP datagram from
// port 68 to port 67 of the limited broadcast or the gateway address. A
// frame whose lower headers are broken is left to the forwarder, which
// drops it for its own reason. Once a frame is known to be the services',
// everything wrong with it is an error naming the header and field.
//
// Checksums: neighbor and router solicitations are checked, as RFC 4861
// requires. The IPv4 and UDP checksums of DHCP messages are not: the port
// is a software link that corrupts nothing, and with virtio-net offloads
// the kernel may hand over a datagram whose UDP checksum is only partial
// (a unicast renewal sent from an ordinary UDP socket).
package services

import (
	"net/netip"
	"time"

	"github.com/weftnet/weft/vrouter/packet"
)

// PortInfo is what the services know about one port. Handle only reads it;
// the caller may share one value between goroutines as long as nobody
// writes it meanwhile (swap a new value in to change it).
type PortInfo struct {
	MAC        packet.MAC     // the endpoint's MAC
	GatewayMAC packet.MAC     // the vRouter's virtual gateway MAC (same on every port and node)
	Addresses  []netip.Prefix // the endpoint's addresses (v4/v6) with prefix length; DHCP offers the first IPv4 one
	Gateways   []netip.Addr   // virtual gateway addresses (one per family)
	MTU        int            // DHCP option 26 and the RA MTU option; 0 = none sent
	DNS        []netip.Addr   // IPv4 ones in DHCP option 6, IPv6 ones in the RA (RDNSS)
	Hostname   string         // DHCP option 12, if set
	Domain     string         // DHCP option 15, if set
	DHCP       bool           // answer DHCPv4
	LeaseTime  time.Duration  // 0 = DefaultLeaseTime
}

// DefaultLeaseTime is the DHCP lease when PortInfo.LeaseTime is 0. The
// address never changes, so a long lease only saves renewals.
const DefaultLeaseTime = 24 * time.Hour

// MaxReplyLen is the longest reply Handle or RouterAdvert writes: an
// Ethernet frame of 1500 bytes of payload (DHCP replies are held to the
// client's maximum message size, at most the port's MTU). An out buffer of
// this length is always enough.
const MaxReplyLen = packet.EthernetHeaderLen + 1500

// Error is why a service refused a frame it recognised as its own: the
// header and the field at fault, and what is wrong with it. Layer and
// Field are stable, like those of packet.ParseError, so that a drop
// counter can key on them; Reason may carry values.
type Error struct {
	Layer  string // the header: "arp", "neighbor solicitation", "dhcpv4", ...
	Field  string // the field: "sender hardware address", "chaddr", ...
	Reason string // what is wrong: "is not the port's MAC", ...
}

func (e *Error) Error() string { return e.Layer + ": " + e.Field + " " + e.Reason }

// Refusals of ARP and ND frames are preallocated, so that a flood of them
// costs nothing but the counter the caller bumps.
var (
	errNilPort   = &Error{Layer: "services", Field: "port info", Reason: "is nil"}
	errOutShort  = &Error{Layer: "services", Field: "out buffer", Reason: "is too short for the reply (see MaxReplyLen)"}
	errNDFragged = &Error{Layer: "icmpv6", Field: "fragment header", Reason: "on a neighbor discovery message (RFC 6980)"}
)

// Handle looks at one Ethernet frame received from a port. If it is ARP, an
// IPv6 neighbor or router solicitation, or (when p.DHCP) a DHCPv4 client
// message, it writes the reply frame into out and returns its length with
// handled=true. Frames that are not for these services return
// handled=false, err=nil (the forwarder routes them). A malformed frame of
// one of these kinds returns an error naming the header and field (the
// caller drops and counts it by reason). No allocation for ARP/ND; DHCP may
// allocate.
//
// In full, the results are:
//   - handled=false, n=0, err=nil: not for the services; forward it.
//   - handled=true, err=nil: the services consumed the frame. If n>0,
//     out[:n] is the reply to send back on the same port; n=0 means no
//     answer is due (a duplicate-address probe, a question about the
//     endpoint's own address, gratuitous ARP, an ARP reply, DHCPRELEASE or
//     DHCPDECLINE, a DHCPREQUEST for another server, a router solicitation
//     on a port without an IPv6 address).
//   - err!=nil: handled=true and n=0. The frame was for the services but is
//     malformed (*packet.ParseError) or refused (*Error): drop it and count
//     it by the error's Layer and Field. Frames whose Ethernet source or
//     sender link-layer address (or DHCP chaddr) is not p.MAC are
//     refused, so that a workload spoofing or bridging for others shows in
//     the counters rather than being answered. A nil p is an error too.
//
// ARP and neighbor solicitations are answered whatever addresses the port
// has: the proxy needs none, and the forwarder's anti-spoofing judges what
// the endpoint then sends.
//
// frame and out must not overlap. frame is not modified.
func Handle(frame []byte, p *PortInfo, out []byte) (n int, handled bool, err error) {
	if p == nil {
		return 0, true, errNilPort
	}
	eth, err := packet.ParseEthernet(frame)
	if err != nil || eth.HasVLAN() {
		// A workload port carries untagged frames; anything else is the
		// forwarder's to judge.
		return 0, false, nil
	}
	switch eth.EtherType() {
	case packet.EtherTypeARP:
		return handleARP(eth, p, out)
	case packet.EtherTypeIPv6:
		return handleIPv6(eth, p, out)
	case packet.EtherTypeIPv4:
		if p.DHCP {
			return handleIPv4(eth, p, out)
		}
	}
	return 0, false, nil
}

// isOwn reports whether a is one of the endpoint's addresses.
func (p *PortInfo) isOwn(a netip.Addr) bool {
	for _, pfx := range p.Addresses {
		if pfx.Addr() == a {
			return true
		}
	}
	return false
}

// address is the endpoint's first address of the family (Is4 or Is6).
func (p *PortInfo) address(v6 bool) (netip.Prefix, bool) {
	for _, pfx := range p.Addresses {
		if pfx.Addr().Is6() == v6 && pfx.IsValid() {
			return pfx, true
		}
	}
	return netip.Prefix{}, false
}

// gateway4 is the IPv4 gateway address.
func (p *PortInfo) gateway4() (netip.Addr, bool) {
	for _, g := range p.Gateways {
		if g.Is4() {
			return g, true
		}
	}
	return netip.Addr{}, false
}

// defaultGatewayLL is the gateway's link-local address when Gateways has
// none: router advertisements must come from a link-local address.
var defaultGatewayLL = netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: 1})

// gatewayLL is the link-local address the vRouter speaks ND from: the IPv6
// gateway if it is link-local, else fe80::1.
func (p *PortInfo) gatewayLL() netip.Addr {
	for _, g := range p.Gateways {
		if g.Is6() && g.IsLinkLocalUnicast() {
			return g.WithZone("")
		}
	}
	return defaultGatewayLL
}

// answerable reports whether a is an address a neighbor could be asked
// for: unicast, global or link-local (169.254.169.254, the metadata
// service, is link-local and must be answered).
func answerable(a netip.Addr) bool { return a.IsGlobalUnicast() || a.IsLinkLocalUnicast() }
