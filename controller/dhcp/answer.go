// Package dhcp is the controller's DHCPv4 server: it answers only the
// inventory's nodes, matched by chaddr against their macs, with their
// inventory address (see the controller's package documentation).
package dhcp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/controller/inventory"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/dhcpreply"
	"github.com/weftnet/weft/internal/mtu"
)

// Config runs a DHCPv4 server for the inventory's nodes on one
// interface: a node is recognised by its MAC (chaddr) among its inventory
// macs and offered its inventory address; any other client gets no answer.
type Config struct {
	// Interface is where the server listens. Its IPv4 addresses are the
	// server identifier, and their subnets give a node's subnet mask when
	// the node's entry has no prefix.
	Interface string
	// Router is offered as option 3; the zero Addr offers none.
	Router netip.Addr
	// LeaseTime; 0 = DefaultLeaseTime.
	LeaseTime time.Duration
	// MTU is offered as option 26: 0 = the node's underlay MTU (see
	// OfferMTU), -1 = never.
	MTU int
}

// DefaultLeaseTime is the lease time when Config gives none. The
// addresses are fixed by the inventory, so a long lease costs nothing.
const DefaultLeaseTime = time.Hour

// Validate checks what can be checked before the interface is opened.
func Validate(c Config) error {
	switch {
	case c.Interface == "":
		return errors.New("dhcp: the interface is required")
	case c.Router.IsValid() && (!c.Router.Is4() || c.Router.IsUnspecified() || c.Router.IsMulticast()):
		return fmt.Errorf("dhcp: router %s: want a unicast IPv4 address", c.Router)
	case c.LeaseTime < 0 || (c.LeaseTime > 0 && c.LeaseTime < time.Minute) || c.LeaseTime > 365*24*time.Hour:
		return fmt.Errorf("dhcp: lease time %v: want 1m..8760h", c.LeaseTime)
	case c.MTU != 0 && c.MTU != -1 && (c.MTU < mtu.Min || c.MTU > mtu.Max):
		return fmt.Errorf("dhcp: mtu %d: want %d..%d, 0 (the underlay's) or -1 (none)", c.MTU, mtu.Min, mtu.Max)
	}
	return nil
}

// OfferMTU is the MTU the DHCP server offers node on its NIC mac when
// configured to follow the inventory: the mtu of the node's
// network_data.json link with that MAC, else of the fleet weft.yaml's
// underlay link matching that MAC, else the one mtu all of weft.yaml's
// DHCP links share; 0 when none of those says.
func OfferMTU(inv *inventory.Inventory, node *inventory.Node, mac net.HardwareAddr) int {
	if node != nil && node.NetworkData != nil {
		if nd, err := config.ParseNetworkData(node.NetworkData); err == nil {
			for _, l := range nd.Links {
				if m, err := net.ParseMAC(l.MAC); err == nil && bytes.Equal(m, mac) && l.MTU != nil && *l.MTU > 0 {
					return *l.MTU
				}
			}
		}
	}
	if inv.Config == nil || inv.Config.UnderlaySpec == nil {
		return 0
	}
	links := inv.Config.UnderlaySpec.Links
	for _, l := range links {
		if l.Match.MAC != nil && bytes.Equal(l.Match.MAC, mac) && l.MTU > 0 {
			return l.MTU
		}
	}
	shared := 0
	for _, l := range links {
		if !l.DHCP || l.MTU <= 0 {
			continue
		}
		if shared != 0 && shared != l.MTU {
			return 0 // links disagree: which one is this NIC?
		}
		shared = l.MTU
	}
	return shared
}

// env is what an answer depends on besides the request.
type env struct {
	cfg Config
	inv *inventory.Inventory
	// ifc are the interface's IPv4 addresses with their prefix lengths.
	ifc []netip.Prefix
	// bootURL is option 67 for an iPXE client of the server at addr; nil
	// when no boot files are served.
	bootURL func(server netip.Addr) string
}

// event is what answer did, for the log and the fleet view.
type event struct {
	kind string // offer, ack, nak, inform, release, decline, ignored, unknown, unservable
	mac  net.HardwareAddr
	node *inventory.Node
	addr netip.Addr // the address offered, acknowledged, released or declined
	why  string     // for ignored, unservable and nak: what to do about it
	// client is "ipxe", "pxe" (a PXE ROM without iPXE) or "".
	client string
	boot   string // option 67 sent
	// fresh: an ACK of a lease for a boot (SELECTING or INIT-REBOOT: no
	// ciaddr), not of a renewal (RENEWING, REBINDING) or an INFORM.
	fresh bool
}

// reply is an answer and where it goes.
type reply struct {
	msg *dhcpv4.DHCPv4
	to  netip.AddrPort
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// isIPXE reports whether the client is iPXE: user class 77 says so, in
// iPXE's raw form or RFC 3004's.
func isIPXE(req *dhcpv4.DHCPv4) bool {
	return slices.Contains(req.UserClass(), "iPXE")
}

// answer decides the answer to one client message (RFC 2131 section
// 4.3): DISCOVER gets an OFFER, REQUEST an ACK of the node's address or a
// NAK of any other, INFORM an ACK with configuration only; RELEASE and
// DECLINE are only logged. A nil reply means no answer.
func answer(env *env, req *dhcpv4.DHCPv4) (*reply, event) {
	ev := event{kind: "ignored"}
	switch {
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		ev.why = "not a BOOTREQUEST"
		return nil, ev
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		ev.why = "not an Ethernet client (htype 1, hlen 6)"
		return nil, ev
	}
	ev.mac = slices.Clone(req.ClientHWAddr)
	mt := req.MessageType()
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
	case dhcpv4.MessageTypeNone:
		ev.why = "BOOTP (no option 53) is not served"
		return nil, ev
	default:
		ev.why = fmt.Sprintf("message type %s is not a client's", mt)
		return nil, ev
	}
	if isIPXE(req) {
		ev.client = "ipxe"
	} else if strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
		ev.client = "pxe"
	}
	node, err := env.inv.Match([]net.HardwareAddr{ev.mac}, netip.Addr{})
	if err != nil {
		ev.kind = "unknown"
		return nil, ev
	}
	ev.node = node
	server, mask, why := env.subnet(node)
	if why != "" {
		ev.kind, ev.why = "unservable", why
		return nil, ev
	}
	switch mt {
	case dhcpv4.MessageTypeRelease:
		ev.kind, ev.addr = "release", dhcpreply.IPv4(req.ClientIPAddr)
		return nil, ev
	case dhcpv4.MessageTypeDecline:
		ev.kind, ev.addr = "decline", dhcpreply.IPv4(req.RequestedIPAddress())
		return nil, ev
	}
	ours := func(a netip.Addr) bool {
		return slices.ContainsFunc(env.ifc, func(p netip.Prefix) bool { return p.Addr() == a })
	}
	d := dhcpreply.Decide(req, node.Address, ours)
	switch {
	case d.Type == dhcpv4.MessageTypeNone:
		ev.why = fmt.Sprintf("the client chose server %s's offer", d.Other)
		return nil, ev
	case d.Type == dhcpv4.MessageTypeOffer:
		ev.kind = "offer"
	case d.Type == dhcpv4.MessageTypeNak:
		ev.kind = "nak"
		ev.why = fmt.Sprintf("it asked for %v, but its inventory address is %s", d.Asked, node.Address)
	case mt == dhcpv4.MessageTypeInform:
		ev.kind = "inform"
	default:
		ev.kind = "ack"
		ev.fresh = mt == dhcpv4.MessageTypeRequest && d.CIAddr.IsUnspecified()
	}
	giaddr := dhcpreply.IPv4(req.GatewayIPAddr)
	relayed := giaddr.IsValid() && !giaddr.IsUnspecified()
	if !relayed {
		giaddr = netip.IPv4Unspecified()
	}
	resp := dhcpreply.Reply(req, d, server, giaddr)
	if rai := req.Options.Get(dhcpv4.OptionRelayAgentInformation); rai != nil && relayed {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, rai)) // RFC 3046 2.2
	}
	if d.Type == dhcpv4.MessageTypeNak {
		resp.UpdateOption(dhcpv4.OptMessage("weft controller: " + ev.why))
	} else {
		ev.addr = node.Address
		c := dhcpreply.Config{Address: netip.PrefixFrom(node.Address, mask), Router: env.cfg.Router,
			Hostname: node.Name, MTU: env.cfg.MTU, NextServer: server, Lease: env.cfg.LeaseTime}
		if c.MTU == 0 {
			c.MTU = OfferMTU(env.inv, node, ev.mac)
		}
		if c.Lease == 0 {
			c.Lease = DefaultLeaseTime
		}
		if ev.client == "ipxe" && env.bootURL != nil {
			ev.boot = env.bootURL(server)
			c.BootFile = ev.boot
		}
		c.Put(resp, d)
	}
	// Where it goes (RFC 2131 4.1): through the relay; to the client's
	// address when it has one and the answer is no NAK; else broadcast,
	// as a client without an address can receive only that (the server's
	// socket cannot fill an ARP entry for the unicast form).
	to := netip.AddrPortFrom(limitedBroadcast, dhcpv4.ClientPort)
	switch {
	case relayed:
		to = netip.AddrPortFrom(giaddr, dhcpv4.ServerPort)
	case d.Type != dhcpv4.MessageTypeNak && !d.CIAddr.IsUnspecified():
		to = netip.AddrPortFrom(d.CIAddr, dhcpv4.ClientPort)
	}
	return &reply{msg: resp, to: to}, ev
}

// subnet finds the server address and prefix length for node's lease;
// why says what to fix when there is none.
func (env *env) subnet(node *inventory.Node) (server netip.Addr, bits int, why string) {
	a := node.Address
	switch {
	case !a.IsValid():
		return netip.Addr{}, 0, fmt.Sprintf("node %s has no address in the inventory: give it one (address:) to have DHCP lease it", node.Name)
	case !a.Is4():
		return netip.Addr{}, 0, fmt.Sprintf("node %s's address %s is IPv6: the DHCP server leases IPv4 addresses", node.Name, a)
	case len(env.ifc) == 0:
		return netip.Addr{}, 0, fmt.Sprintf("interface %s has no IPv4 address: the DHCP server needs one", env.cfg.Interface)
	}
	server, bits = env.ifc[0].Addr(), node.Prefix
	for _, p := range env.ifc {
		if p.Masked().Contains(a) {
			server = p.Addr()
			if bits == 0 {
				bits = p.Bits()
			}
			break
		}
	}
	if bits == 0 {
		return netip.Addr{}, 0, fmt.Sprintf("node %s's address %s is in no subnet of interface %s (%s): give the node's entry a prefix (and the controller --dhcp-router), or fix its address",
			node.Name, a, env.cfg.Interface, prefixList(env.ifc))
	}
	return server, bits, ""
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
