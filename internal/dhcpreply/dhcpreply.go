// Package dhcpreply builds DHCPv4 replies (RFC 2131 section 4.3) for a
// server that knows the one address each client gets: the controller's
// server for the inventory's nodes and the vRouter's for its ports. The
// servers keep what differs: which messages they take, relays, where the
// reply goes, and which options they fill in.
//
// An answer is built in three steps: Decide (OFFER, ACK or NAK, and the
// header addresses), Reply (the header, message type, server identifier
// and client identifier) and, unless it is a NAK, Config.Put (the
// client's configuration).
package dhcpreply

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/weftnet/weft/internal/mtu"
)

// Decision is the answer to a DISCOVER, REQUEST or INFORM.
type Decision struct {
	// Type is OFFER, ACK or NAK; MessageTypeNone when the client chose
	// another server's offer (Other) and gets no answer.
	Type dhcpv4.MessageType
	// CIAddr and YIAddr are the reply's header addresses (0.0.0.0 for none).
	CIAddr, YIAddr netip.Addr
	// Lease is false for an ACK to INFORM: configuration, no lease times
	// (RFC 2131 section 4.3.5).
	Lease bool
	// Asked is what a REQUEST asked for (the requested address, else
	// ciaddr): what a NAK refused.
	Asked netip.Addr
	// Other is the server a REQUEST named when it is not ours.
	Other netip.Addr
}

// Decide answers a client message of type DISCOVER, REQUEST or INFORM
// for a client whose address is addr: DISCOVER gets an OFFER, REQUEST an
// ACK of addr or a NAK of any other, INFORM an ACK carrying configuration
// only. ours tells whether a server identifier is this server's. Any
// other message type gets MessageTypeNone.
func Decide(req *dhcpv4.DHCPv4, addr netip.Addr, ours func(netip.Addr) bool) Decision {
	d := Decision{CIAddr: IPv4(req.ClientIPAddr), YIAddr: addr, Lease: true}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		d.Type, d.CIAddr = dhcpv4.MessageTypeOffer, netip.IPv4Unspecified()
	case dhcpv4.MessageTypeRequest:
		if sid := IPv4(req.ServerIdentifier()); sid.IsValid() && !ours(sid) {
			// SELECTING, and the client chose another server's offer.
			return Decision{Other: sid}
		}
		// The requested address when selecting or rebooting, ciaddr when
		// renewing or rebinding (RFC 2131 section 4.3.2). A request naming
		// neither is NAKed: the client starts over with a DISCOVER.
		d.Asked = IPv4(req.RequestedIPAddress())
		if !d.Asked.IsValid() || d.Asked.IsUnspecified() {
			d.Asked = d.CIAddr
		}
		d.Type = dhcpv4.MessageTypeAck
		if d.Asked != addr {
			d.Type = dhcpv4.MessageTypeNak
			d.YIAddr, d.CIAddr, d.Lease = netip.IPv4Unspecified(), netip.IPv4Unspecified(), false
		}
	case dhcpv4.MessageTypeInform:
		d.Type, d.YIAddr, d.Lease = dhcpv4.MessageTypeAck, netip.IPv4Unspecified(), false
	default:
		return Decision{}
	}
	if !d.CIAddr.IsValid() {
		d.CIAddr = netip.IPv4Unspecified()
	}
	return d
}

// Reply is the reply to req as decided: the BOOTP header (giaddr as given,
// 0.0.0.0 when invalid), the message type, the server identifier server,
// and the client identifier echoed (RFC 6842).
func Reply(req *dhcpv4.DHCPv4, d Decision, server, giaddr netip.Addr) *dhcpv4.DHCPv4 {
	if !giaddr.IsValid() {
		giaddr = netip.IPv4Unspecified()
	}
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        iana.HWTypeEthernet,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  d.CIAddr.AsSlice(),
		YourIPAddr:    d.YIAddr.AsSlice(),
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: giaddr.AsSlice(),
		ClientHWAddr:  slices.Clone(req.ClientHWAddr),
		Options:       dhcpv4.Options{},
	}
	resp.UpdateOption(dhcpv4.OptMessageType(d.Type))
	resp.UpdateOption(dhcpv4.OptServerIdentifier(server.AsSlice()))
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); id != nil {
		resp.UpdateOption(dhcpv4.OptClientIdentifier(id))
	}
	return resp
}

// Config is a client's configuration, as an OFFER or ACK carries it.
// Zero fields are left out.
type Config struct {
	// Address is the client's address and prefix length: option 1 (the
	// subnet mask), and what option 121 is decided by.
	Address netip.Prefix
	// Router is option 3.
	Router netip.Addr
	// RouteToRouter adds option 121 when the router is not on-link by
	// the mask (a /32, a /31 or a router outside the subnet).
	RouteToRouter bool
	// DNS is option 6; only its IPv4 addresses are sent.
	DNS []netip.Addr
	// Hostname and Domain are options 12 and 15.
	Hostname, Domain string
	// MTU is option 26, sent when within what the option may carry
	// (mtu.LinkMin..mtu.Max); each server checks its own bounds first.
	MTU int
	// NextServer is siaddr, the server of the boot files.
	NextServer netip.Addr
	// BootFile is option 67, and the header's file field too when it fits
	// (for ROMs that read only that).
	BootFile string
	// Lease is option 51 with T1 (half) and T2 (seven eighths), RFC 2131
	// section 4.4.5, sent when the decision has a lease.
	Lease time.Duration
}

// Put adds c to resp, an OFFER or ACK decided as d.
func (c *Config) Put(resp *dhcpv4.DHCPv4, d Decision) {
	if c.Address.IsValid() {
		resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(c.Address.Bits(), 32)))
	}
	if c.Router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(c.Router.AsSlice()))
	}
	var dns []net.IP
	for _, a := range c.DNS {
		if a.Is4() {
			dns = append(dns, a.AsSlice())
		}
	}
	if len(dns) > 0 {
		resp.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	if c.Hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(c.Hostname))
	}
	if c.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(c.Domain))
	}
	if c.MTU >= mtu.LinkMin && c.MTU <= mtu.Max {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(c.MTU >> 8), byte(c.MTU)}))
	}
	if c.RouteToRouter && c.Router.IsValid() && c.Address.IsValid() && offLink(c.Address, c.Router) {
		// A route to the router on the link (router 0.0.0.0, as dhclient's
		// rfc3442 hook, systemd-networkd and Windows read it), then the
		// default route via it. RFC 3442 has clients that understand
		// option 121 ignore option 3, which stays for those that do not.
		resp.UpdateOption(dhcpv4.OptClasslessStaticRoute(
			&dhcpv4.Route{Dest: &net.IPNet{IP: c.Router.AsSlice(), Mask: net.CIDRMask(32, 32)}, Router: net.IPv4zero},
			&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Router: c.Router.AsSlice()},
		))
	}
	if c.NextServer.IsValid() {
		resp.ServerIPAddr = c.NextServer.AsSlice()
	}
	if c.BootFile != "" {
		resp.UpdateOption(dhcpv4.OptBootFileName(c.BootFile))
		if len(c.BootFile) < 128 {
			resp.BootFileName = c.BootFile
		}
	}
	if d.Lease && c.Lease > 0 {
		resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(c.Lease))
		resp.UpdateOption(dhcpv4.OptRenewTimeValue(c.Lease / 2))
		resp.UpdateOption(dhcpv4.OptRebindingTimeValue(c.Lease * 7 / 8))
	}
}

// offLink reports whether the client at addr cannot reach router by its mask.
func offLink(addr netip.Prefix, router netip.Addr) bool {
	return addr.Bits() >= 31 || !addr.Contains(router)
}

// IPv4 reads a header or option address; the zero Addr when it is not 4
// bytes (or an IPv4 address in IPv6 form).
func IPv4(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil {
		return netip.AddrFrom4([4]byte(ip4))
	}
	return netip.Addr{}
}
