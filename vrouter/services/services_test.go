package services

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/weftnet/weft/internal/dhcpreply"
	"github.com/weftnet/weft/vrouter/packet"
)

// outcome is what Handle must return for a frame: not handled, consumed
// without answer, answered (then check looks at the reply), or refused
// with an error containing err.
type outcome int

const (
	forward outcome = iota
	silent
	answer
	refuse
)

type handleCase struct {
	name  string
	port  func(p *PortInfo) // changes to testPort(), if any
	frame func(t testing.TB) []byte
	want  outcome
	err   string                       // for refuse: the error text must contain it
	check func(t *testing.T, r []byte) // for answer, after checkReply
}

func runHandleCases(t *testing.T, cases []handleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPort()
			if tc.port != nil {
				tc.port(p)
			}
			frame := tc.frame(t)
			orig := append([]byte(nil), frame...)
			out := make([]byte, MaxReplyLen)
			n, handled, err := Handle(frame, p, out)
			if string(frame) != string(orig) {
				t.Fatal("Handle modified the frame")
			}
			switch tc.want {
			case forward:
				if handled || n != 0 || err != nil {
					t.Fatalf("got n=%d handled=%v err=%v, want it left to the forwarder", n, handled, err)
				}
			case silent:
				if !handled || n != 0 || err != nil {
					t.Fatalf("got n=%d handled=%v err=%v, want it consumed without answer", n, handled, err)
				}
			case refuse:
				if !handled || n != 0 || err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got n=%d handled=%v err=%v, want an error with %q", n, handled, err, tc.err)
				}
				var pe *packet.ParseError
				var se *Error
				if !errors.As(err, &pe) && !errors.As(err, &se) {
					t.Fatalf("error %T does not name a layer and field", err)
				}
			case answer:
				if !handled || n == 0 || err != nil {
					t.Fatalf("got n=%d handled=%v err=%v, want a reply", n, handled, err)
				}
				if err := checkReply(p, out[:n]); err != nil {
					t.Fatalf("reply: %v\n%x", err, out[:n])
				}
				if tc.check != nil {
					tc.check(t, out[:n])
				}
			}
		})
	}
}

func arpReply(t *testing.T, r []byte) packet.ARP {
	t.Helper()
	eth, _ := packet.ParseEthernet(r)
	a, err := packet.ParseARP(eth.Payload())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestARP(t *testing.T) {
	req := func(r arpReq) func(testing.TB) []byte {
		if r.ethSrc.IsZero() {
			r.ethSrc = epMAC
		}
		if r.sha.IsZero() {
			r.sha = epMAC
		}
		if !r.spa.IsValid() {
			r.spa = ep4.Addr()
		}
		return func(t testing.TB) []byte { return arpFrame(t, r) }
	}
	answers := func(target string) func(*testing.T, []byte) {
		return func(t *testing.T, r []byte) {
			a := arpReply(t, r)
			if a.SenderIP() != netip.MustParseAddr(target) || a.TargetIP() != ep4.Addr() {
				t.Fatalf("reply %v is-at, to %v", a.SenderIP(), a.TargetIP())
			}
		}
	}
	runHandleCases(t, []handleCase{
		{name: "gateway", frame: req(arpReq{tpa: gw4}), want: answer, check: answers("10.0.100.1")},
		{name: "neighbor in the subnet", frame: req(arpReq{tpa: netip.MustParseAddr("10.0.100.7")}), want: answer, check: answers("10.0.100.7")},
		{name: "off-subnet address", frame: req(arpReq{tpa: netip.MustParseAddr("198.51.100.1")}), want: answer, check: answers("198.51.100.1")},
		{name: "metadata service", frame: req(arpReq{tpa: netip.MustParseAddr("169.254.169.254")}), want: answer, check: answers("169.254.169.254")},
		{name: "unicast refresh", frame: func(t testing.TB) []byte {
			b := req(arpReq{tpa: gw4})(t)
			eth, _ := packet.ParseEthernet(b)
			eth.SetDst(gwMAC)
			return b
		}, want: answer, check: answers("10.0.100.1")},
		{name: "no IPv4 configured", port: func(p *PortInfo) { p.Addresses, p.Gateways, p.DHCP = []netip.Prefix{ep6}, []netip.Addr{gwLL}, false },
			frame: req(arpReq{tpa: gw4}), want: answer},
		{name: "DAD probe for own address", frame: req(arpReq{spa: zero4, tpa: ep4.Addr()}), want: silent},
		{name: "DAD probe for another address", frame: req(arpReq{spa: zero4, tpa: netip.MustParseAddr("10.0.100.8")}), want: silent},
		{name: "gratuitous request", frame: req(arpReq{tpa: ep4.Addr()}), want: silent},
		{name: "gratuitous reply", frame: req(arpReq{op: packet.ARPReply, tpa: ep4.Addr()}), want: silent},
		{name: "reply", frame: req(arpReq{op: packet.ARPReply, tpa: gw4}), want: silent},
		{name: "target is the endpoint's own", frame: req(arpReq{spa: netip.MustParseAddr("10.0.100.9"), tpa: ep4.Addr()}), want: silent},
		{name: "target broadcast", frame: req(arpReq{tpa: bcast}), want: silent},
		{name: "target unspecified", frame: req(arpReq{tpa: zero4}), want: silent},
		{name: "target multicast", frame: req(arpReq{tpa: netip.MustParseAddr("224.0.0.1")}), want: silent},
		{name: "ethernet source not the port's", frame: req(arpReq{ethSrc: otherMAC, tpa: gw4}), want: refuse, err: "arp: ethernet source is not the port's MAC"},
		{name: "sender MAC not the port's", frame: req(arpReq{sha: otherMAC, tpa: gw4}), want: refuse, err: "arp: sender hardware address is not the port's MAC"},
		{name: "reply from another MAC", frame: req(arpReq{op: packet.ARPReply, sha: otherMAC, tpa: gw4}), want: refuse, err: "sender hardware address"},
		{name: "truncated", frame: func(t testing.TB) []byte {
			return req(arpReq{tpa: gw4})(t)[:packet.EthernetHeaderLen+20]
		}, want: refuse, err: "arp: message needs 28 bytes, have 20"},
		{name: "hardware type", frame: func(t testing.TB) []byte {
			b := req(arpReq{tpa: gw4})(t)
			b[packet.EthernetHeaderLen+1] = 6
			return b
		}, want: refuse, err: "arp: hardware type 6, want 1"},
		{name: "operation", frame: func(t testing.TB) []byte {
			b := req(arpReq{tpa: gw4})(t)
			b[packet.EthernetHeaderLen+7] = 3
			return b
		}, want: refuse, err: "arp: operation 3"},
		{name: "vlan tagged", frame: func(t testing.TB) []byte {
			a := req(arpReq{tpa: gw4})(t)
			b := make([]byte, len(a)+4)
			if _, err := packet.PutEthernetVLAN(b, packet.BroadcastMAC, epMAC, 10, 0, packet.EtherTypeARP); err != nil {
				t.Fatal(err)
			}
			copy(b[18:], a[14:])
			return b
		}, want: forward},
		{name: "runt frame", frame: func(testing.TB) []byte { return []byte{1, 2, 3} }, want: forward},
	})
}

func TestARPReplyFields(t *testing.T) {
	p := testPort()
	out := make([]byte, MaxReplyLen)
	n, _, err := Handle(arpFrame(t, arpReq{ethSrc: epMAC, sha: epMAC, spa: ep4.Addr(), tpa: gw4}), p, out)
	if err != nil || n != 60 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	a := arpReply(t, out[:n])
	if a.SenderMAC() != gwMAC || a.SenderIP() != gw4 || a.TargetMAC() != epMAC || a.TargetIP() != ep4.Addr() {
		t.Fatalf("reply %v %v -> %v %v", a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	}
	for i, c := range out[packet.EthernetHeaderLen+packet.ARPLen : n] {
		if c != 0 {
			t.Fatalf("padding byte %d is %#x", i, c)
		}
	}
	if _, _, err := Handle(arpFrame(t, arpReq{ethSrc: epMAC, sha: epMAC, spa: ep4.Addr(), tpa: gw4}), p, out[:59]); err == nil || !strings.Contains(err.Error(), "out buffer") {
		t.Fatalf("short out: %v", err)
	}
}

func TestNeighborDiscovery(t *testing.T) {
	sol := func(a netip.Addr) netip.Addr { return packet.SolicitedNodeMulticast(a) }
	mac := func(m packet.MAC) *packet.MAC { return &m }
	ns := func(r ndReq, target netip.Addr, slla *packet.MAC) func(testing.TB) []byte {
		if r.ethSrc.IsZero() {
			r.ethSrc = epMAC
		}
		if !r.src.IsValid() {
			r.src = epLL
		}
		if !r.dst.IsValid() {
			r.dst = sol(target)
		}
		r.body = nsBody(target, slla)
		return func(t testing.TB) []byte { return ndFrame(t, r) }
	}
	rs := func(r ndReq, slla *packet.MAC) func(testing.TB) []byte {
		if r.ethSrc.IsZero() {
			r.ethSrc = epMAC
		}
		if !r.src.IsValid() {
			r.src = epLL
		}
		if !r.dst.IsValid() {
			r.dst = netip.MustParseAddr("ff02::2")
		}
		r.body = rsBody(slla)
		return func(t testing.TB) []byte { return ndFrame(t, r) }
	}
	advertises := func(target, to netip.Addr) func(*testing.T, []byte) {
		return func(t *testing.T, r []byte) {
			eth, _ := packet.ParseEthernet(r)
			ip, _ := packet.ParseIPv6(eth.Payload())
			m, _ := packet.ParseICMPv6(ip.Payload())
			na, err := packet.ParseNeighborAdvert(ip, m)
			if err != nil {
				t.Fatal(err)
			}
			if na.Target() != target || ip.Dst() != to {
				t.Fatalf("advertisement for %v to %v, want %v to %v", na.Target(), ip.Dst(), target, to)
			}
		}
	}
	routerAdvert := func(to netip.Addr, from netip.Addr, mtu uint32, dns []netip.Addr) func(*testing.T, []byte) {
		return func(t *testing.T, r []byte) {
			eth, _ := packet.ParseEthernet(r)
			ip, _ := packet.ParseIPv6(eth.Payload())
			m, _ := packet.ParseICMPv6(ip.Payload())
			ra, err := packet.ParseRouterAdvert(ip, m)
			if err != nil {
				t.Fatal(err)
			}
			if ip.Dst() != to || ip.Src() != from {
				t.Fatalf("advertisement from %v to %v, want %v to %v", ip.Src(), ip.Dst(), from, to)
			}
			if ra.Managed() || ra.Other() || ra.CurHopLimit() != 0 || ra.RouterLifetime() != 9000 {
				t.Fatalf("M %v O %v hop limit %d lifetime %d", ra.Managed(), ra.Other(), ra.CurHopLimit(), ra.RouterLifetime())
			}
			got, ok := ra.MTU()
			if (mtu != 0) != ok || got != mtu {
				t.Fatalf("mtu option %d %v, want %d", got, ok, mtu)
			}
			o, ok := ra.Option(ndOptRDNSS)
			if (len(dns) > 0) != ok {
				t.Fatalf("rdnss option present %v, want %d servers", ok, len(dns))
			}
			if ok {
				if len(o) != 6+16*len(dns) {
					t.Fatalf("rdnss of %d bytes for %d servers", len(o), len(dns))
				}
				for i, d := range dns {
					if a := netip.AddrFrom16([16]byte(o[6+16*i:])); a != d {
						t.Fatalf("rdnss[%d] %v, want %v", i, a, d)
					}
				}
			}
		}
	}
	other := netip.MustParseAddr("2001:db8:100::7")
	runHandleCases(t, []handleCase{
		{name: "gateway", frame: ns(ndReq{}, gwLL, mac(epMAC)), want: answer, check: advertises(gwLL, epLL)},
		{name: "neighbor in the prefix", frame: ns(ndReq{src: ep6.Addr()}, other, mac(epMAC)), want: answer, check: advertises(other, ep6.Addr())},
		{name: "off-prefix address", frame: ns(ndReq{}, netip.MustParseAddr("2001:db8:200::1"), nil), want: answer},
		{name: "unicast reachability probe", frame: ns(ndReq{ethDst: gwMAC, dst: gwLL}, gwLL, nil), want: answer, check: advertises(gwLL, epLL)},
		{name: "answered from the configured link-local gateway", port: func(p *PortInfo) { p.Gateways = []netip.Addr{gw4, netip.MustParseAddr("fe80::abcd")} },
			frame: ns(ndReq{}, netip.MustParseAddr("fe80::abcd"), nil), want: answer},
		{name: "DAD for own address", frame: ns(ndReq{src: netip.IPv6Unspecified()}, ep6.Addr(), nil), want: silent},
		{name: "DAD for link-local", frame: ns(ndReq{src: netip.IPv6Unspecified()}, epLL, nil), want: silent},
		{name: "DAD for another address", frame: ns(ndReq{src: netip.IPv6Unspecified()}, other, nil), want: silent},
		{name: "target is the endpoint's own", frame: ns(ndReq{}, ep6.Addr(), nil), want: silent},
		{name: "target loopback", frame: ns(ndReq{}, netip.IPv6Loopback(), nil), want: silent},
		{name: "hop limit not 255", frame: ns(ndReq{hopLimit: 64}, gwLL, nil), want: refuse, err: "neighbor solicitation: hop limit 64, want 255"},
		{name: "bad checksum", frame: ns(ndReq{badChecksum: true}, gwLL, nil), want: refuse, err: "neighbor solicitation: checksum"},
		{name: "truncated", frame: func(t testing.TB) []byte {
			return ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: sol(gwLL), body: nsBody(gwLL, nil)[:8]})
		}, want: refuse, err: "neighbor solicitation: message needs 24 bytes, have 8"},
		{name: "option of length zero", frame: func(t testing.TB) []byte {
			return ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: sol(gwLL), body: append(nsBody(gwLL, nil), 1, 0, 0, 0, 0, 0, 0, 0)})
		}, want: refuse, err: "neighbor solicitation: option length 0"},
		{name: "DAD to the wrong group", frame: ns(ndReq{src: netip.IPv6Unspecified(), dst: netip.MustParseAddr("ff02::1")}, ep6.Addr(), nil), want: refuse, err: "DAD probe"},
		{name: "ethernet source not the port's", frame: ns(ndReq{ethSrc: otherMAC}, gwLL, nil), want: refuse, err: "neighbor solicitation: ethernet source is not the port's MAC"},
		{name: "link-layer address not the port's", frame: ns(ndReq{}, gwLL, mac(otherMAC)), want: refuse, err: "neighbor solicitation: source link-layer address is not the port's MAC"},
		{name: "multicast source", frame: ns(ndReq{src: netip.MustParseAddr("ff02::1")}, gwLL, nil), want: refuse, err: "ipv6 source is multicast"},
		{name: "fragmented", frame: func(t testing.TB) []byte {
			return ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: sol(gwLL), ext: fragHeader(), body: nsBody(gwLL, nil)})
		}, want: refuse, err: "icmpv6: fragment header"},

		{name: "router solicitation", frame: rs(ndReq{}, mac(epMAC)), want: answer, check: routerAdvert(epLL, gwLL, 1400, []netip.Addr{dns6})},
		{name: "router solicitation before an address", frame: rs(ndReq{src: netip.IPv6Unspecified()}, nil), want: answer, check: routerAdvert(allNodes, gwLL, 1400, []netip.Addr{dns6})},
		{name: "router advertisement without MTU and DNS", port: func(p *PortInfo) { p.MTU, p.DNS = 0, []netip.Addr{dns4} },
			frame: rs(ndReq{}, nil), want: answer, check: routerAdvert(epLL, gwLL, 0, nil)},
		{name: "IPv4 MTU below IPv6's minimum is not advertised", port: func(p *PortInfo) { p.MTU = 1200 },
			frame: rs(ndReq{}, nil), want: answer, check: routerAdvert(epLL, gwLL, 0, []netip.Addr{dns6})},
		{name: "global IPv6 gateway: advertised from fe80::1", port: func(p *PortInfo) { p.Gateways = []netip.Addr{gw4, netip.MustParseAddr("2001:db8:100::1")} },
			frame: rs(ndReq{}, nil), want: answer, check: routerAdvert(epLL, gwLL, 1400, []netip.Addr{dns6})},
		{name: "configured link-local gateway", port: func(p *PortInfo) { p.Gateways = []netip.Addr{netip.MustParseAddr("fe80::abcd")} },
			frame: rs(ndReq{}, nil), want: answer, check: routerAdvert(epLL, netip.MustParseAddr("fe80::abcd"), 1400, []netip.Addr{dns6})},
		{name: "many DNS servers are capped", port: func(p *PortInfo) {
			p.DNS = nil
			for i := range 12 {
				p.DNS = append(p.DNS, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}))
			}
		}, frame: rs(ndReq{}, nil), want: answer},
		{name: "router solicitation on an IPv4-only port", port: func(p *PortInfo) { p.Addresses = []netip.Prefix{ep4} },
			frame: rs(ndReq{}, nil), want: silent},
		{name: "router solicitation hop limit", frame: rs(ndReq{hopLimit: 254}, nil), want: refuse, err: "router solicitation: hop limit 254, want 255"},
		{name: "router solicitation link-layer address from ::", frame: rs(ndReq{src: netip.IPv6Unspecified()}, mac(epMAC)), want: refuse, err: "router solicitation: source link-layer address"},
		{name: "router solicitation not from the port", frame: rs(ndReq{ethSrc: otherMAC}, nil), want: refuse, err: "router solicitation: ethernet source is not the port's MAC"},
		{name: "router solicitation link-layer address not the port's", frame: rs(ndReq{}, mac(otherMAC)), want: refuse, err: "router solicitation: source link-layer address is not the port's MAC"},
		{name: "router solicitation code", frame: func(t testing.TB) []byte {
			b := rsBody(nil)
			b[1] = 1
			return ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: netip.MustParseAddr("ff02::2"), body: b})
		}, want: refuse, err: "router solicitation: code 1, want 0"},

		{name: "echo request to the gateway", frame: func(t testing.TB) []byte {
			return ndFrame(t, ndReq{ethSrc: epMAC, ethDst: gwMAC, src: ep6.Addr(), dst: gwLL, hopLimit: 64, body: []byte{packet.ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1}})
		}, want: forward},
		{name: "neighbor advertisement", frame: func(t testing.TB) []byte {
			b := nsBody(ep6.Addr(), nil)
			b[0], b[4] = packet.ICMPv6NeighborAdvert, 0x20
			return ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: allNodes, body: b})
		}, want: forward},
		{name: "truncated IPv6", frame: func(t testing.TB) []byte {
			return ns(ndReq{}, gwLL, nil)(t)[:packet.EthernetHeaderLen+packet.IPv6HeaderLen+4]
		}, want: forward},
		{name: "ICMPv6 shorter than its header", frame: func(t testing.TB) []byte {
			return ndFrame(t, ndReq{ethSrc: epMAC, src: ep6.Addr(), dst: other, body: nil})
		}, want: forward},
	})
}

func TestRouterAdvertUnsolicited(t *testing.T) {
	p := testPort()
	out := make([]byte, MaxReplyLen)
	n, err := RouterAdvert(p, out)
	if err != nil || n == 0 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if err := checkReply(p, out[:n]); err != nil {
		t.Fatal(err)
	}
	eth, _ := packet.ParseEthernet(out[:n])
	if eth.Dst() != allNodesMAC {
		t.Fatalf("to %v", eth.Dst())
	}
	if _, err := RouterAdvert(p, out[:n-1]); err == nil {
		t.Fatal("short out accepted")
	}
	p.Addresses = []netip.Prefix{ep4}
	if n, err := RouterAdvert(p, out); n != 0 || err != nil {
		t.Fatalf("IPv4-only port: n=%d err=%v", n, err)
	}
	if _, err := RouterAdvert(nil, out); err == nil {
		t.Fatal("nil port accepted")
	}
}

// dhcpReply decodes the DHCP message of a reply frame and where it went.
func dhcpReply(t *testing.T, r []byte) (*dhcpv4.DHCPv4, netip.Addr, packet.MAC) {
	t.Helper()
	eth, _ := packet.ParseEthernet(r)
	ip, _ := packet.ParseIPv4(eth.Payload())
	u, _ := packet.ParseUDP(ip.Payload())
	d, err := dhcpv4.FromBytes(u.Payload())
	if err != nil {
		t.Fatal(err)
	}
	return d, ip.Dst(), eth.Dst()
}

func TestDHCP(t *testing.T) {
	msg := func(typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return dhcpFrame(t, udpReq{}, dhcpMsg(typ, mods...)) }
	}
	renew := func(typ dhcpv4.MessageType, ciaddr netip.Addr, mods ...dhcpv4.Modifier) func(testing.TB) []byte {
		return func(t testing.TB) []byte {
			return dhcpFrame(t, udpReq{src: ciaddr, dst: gw4}, dhcpMsg(typ, append(mods, dhcpv4.WithClientIP(ciaddr.AsSlice()))...))
		}
	}
	raw := func(mutate func(b []byte) []byte) func(testing.TB) []byte {
		return func(t testing.TB) []byte {
			return udpFrame(t, udpReq{ethSrc: epMAC}, mutate(dhcpMsg(dhcpv4.MessageTypeDiscover).ToBytes()))
		}
	}
	requested := func(a netip.Addr) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a.AsSlice()))
	}
	serverID := func(a netip.Addr) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(a.AsSlice()))
	}
	other := netip.MustParseAddr("10.0.100.9")

	// reply checks the message type, addressing and the fields RFC 2131
	// table 3 sets.
	reply := func(typ dhcpv4.MessageType, dst netip.Addr, ciaddr, yiaddr netip.Addr) func(*testing.T, []byte) {
		return func(t *testing.T, r []byte) {
			d, ipDst, ethDst := dhcpReply(t, r)
			if d.MessageType() != typ {
				t.Fatalf("message type %v, want %v", d.MessageType(), typ)
			}
			if ipDst != dst {
				t.Fatalf("sent to %v, want %v", ipDst, dst)
			}
			if (dst == bcast) != (ethDst == packet.BroadcastMAC) {
				t.Fatalf("sent to %v at %v", ipDst, ethDst)
			}
			if dhcpreply.IPv4(d.ClientIPAddr) != ciaddr || dhcpreply.IPv4(d.YourIPAddr) != yiaddr || !d.ServerIPAddr.Equal(net.IPv4zero) {
				t.Fatalf("ciaddr %v yiaddr %v siaddr %v, want %v %v 0.0.0.0", d.ClientIPAddr, d.YourIPAddr, d.ServerIPAddr, ciaddr, yiaddr)
			}
			if d.TransactionID != (dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}) {
				t.Fatalf("xid %v", d.TransactionID)
			}
			lease := d.Options.Has(dhcpv4.OptionIPAddressLeaseTime)
			switch {
			case typ == dhcpv4.MessageTypeNak:
				if d.Options.Has(dhcpv4.OptionSubnetMask) || lease || d.Message() == "" {
					t.Fatalf("nak carries configuration or no message: %v", d.Options)
				}
			case yiaddr.IsUnspecified(): // inform
				if lease || d.Options.Has(dhcpv4.OptionRenewTimeValue) || d.Options.Has(dhcpv4.OptionRebindingTimeValue) {
					t.Fatalf("ack to inform carries lease times: %v", d.Options)
				}
				checkConfig(t, d)
			default:
				if got := d.IPAddressLeaseTime(0); got != time.Hour || d.IPAddressRenewalTime(0) != 30*time.Minute || d.IPAddressRebindingTime(0) != 52*time.Minute+30*time.Second {
					t.Fatalf("lease %v T1 %v T2 %v", got, d.IPAddressRenewalTime(0), d.IPAddressRebindingTime(0))
				}
				checkConfig(t, d)
			}
		}
	}
	ep := ep4.Addr()
	runHandleCases(t, []handleCase{
		{name: "discover", frame: msg(dhcpv4.MessageTypeDiscover), want: answer, check: reply(dhcpv4.MessageTypeOffer, ep, zero4, ep)},
		{name: "discover with broadcast flag", frame: msg(dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true)), want: answer, check: reply(dhcpv4.MessageTypeOffer, bcast, zero4, ep)},
		{name: "discover asking for another address", frame: msg(dhcpv4.MessageTypeDiscover, requested(other)), want: answer, check: reply(dhcpv4.MessageTypeOffer, ep, zero4, ep)},
		{name: "discover through a relay: giaddr ignored", frame: msg(dhcpv4.MessageTypeDiscover, dhcpv4.WithRelay(net.IPv4(192, 0, 2, 1))), want: answer, check: reply(dhcpv4.MessageTypeOffer, ep, zero4, ep)},
		{name: "request selecting", frame: msg(dhcpv4.MessageTypeRequest, requested(ep), serverID(gw4)), want: answer, check: reply(dhcpv4.MessageTypeAck, ep, zero4, ep)},
		{name: "request init-reboot", frame: msg(dhcpv4.MessageTypeRequest, requested(ep)), want: answer, check: reply(dhcpv4.MessageTypeAck, ep, zero4, ep)},
		{name: "request renewing", frame: renew(dhcpv4.MessageTypeRequest, ep), want: answer, check: reply(dhcpv4.MessageTypeAck, ep, ep, ep)},
		{name: "request rebinding", frame: func(t testing.TB) []byte {
			return dhcpFrame(t, udpReq{src: ep, dst: bcast}, dhcpMsg(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(ep.AsSlice()), dhcpv4.WithBroadcast(true)))
		}, want: answer, check: reply(dhcpv4.MessageTypeAck, ep, ep, ep)},
		{name: "request for a foreign address", frame: msg(dhcpv4.MessageTypeRequest, requested(other), serverID(gw4)), want: answer, check: reply(dhcpv4.MessageTypeNak, bcast, zero4, zero4)},
		{name: "init-reboot with a foreign address", frame: msg(dhcpv4.MessageTypeRequest, requested(other)), want: answer, check: reply(dhcpv4.MessageTypeNak, bcast, zero4, zero4)},
		{name: "renewing a foreign address", frame: renew(dhcpv4.MessageTypeRequest, other), want: answer, check: reply(dhcpv4.MessageTypeNak, bcast, zero4, zero4)},
		{name: "request naming no address", frame: msg(dhcpv4.MessageTypeRequest), want: answer, check: reply(dhcpv4.MessageTypeNak, bcast, zero4, zero4)},
		{name: "request for another server", frame: msg(dhcpv4.MessageTypeRequest, requested(ep), serverID(netip.MustParseAddr("10.0.100.2"))), want: silent},
		{name: "inform", frame: renew(dhcpv4.MessageTypeInform, ep), want: answer, check: reply(dhcpv4.MessageTypeAck, ep, ep, zero4)},
		{name: "release", frame: renew(dhcpv4.MessageTypeRelease, ep, serverID(gw4)), want: silent},
		{name: "decline", frame: msg(dhcpv4.MessageTypeDecline, requested(ep), serverID(gw4)), want: silent},

		{name: "chaddr not the port's", frame: msg(dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(net.HardwareAddr(otherMAC[:]))), want: refuse,
			err: "dhcpv4: chaddr 02:00:0a:00:64:99 is not the port's MAC 02:00:0a:00:64:03"},
		{name: "ethernet source not the port's", frame: func(t testing.TB) []byte {
			return dhcpFrame(t, udpReq{ethSrc: otherMAC}, dhcpMsg(dhcpv4.MessageTypeDiscover))
		}, want: refuse, err: "dhcpv4: ethernet source"},
		{name: "truncated", frame: raw(func(b []byte) []byte { return b[:100] }), want: refuse, err: "dhcpv4: message needs 240 bytes, have 100"},
		{name: "magic cookie", frame: raw(func(b []byte) []byte { b[236] = 0; return b }), want: refuse, err: "dhcpv4: magic cookie 00825363, want 63825363"},
		{name: "option past the end", frame: raw(func(b []byte) []byte { return append(b[:dhcpFixedLen], 53, 1, 1, 12, 9, 'x') }), want: refuse, err: "dhcpv4: option 12 length 9 exceeds the 1 bytes left"},
		{name: "no end option", frame: raw(func(b []byte) []byte { return append(b[:dhcpFixedLen], 53, 1, 1) }), want: refuse, err: "dhcpv4: options have no end option (255)"},
		{name: "requested address of 3 bytes", frame: raw(func(b []byte) []byte { return append(b[:dhcpFixedLen], 53, 1, 3, 50, 3, 10, 0, 100, 255) }), want: refuse, err: "dhcpv4: option 50 length 3, want 4"},
		{name: "no message type", frame: raw(func(b []byte) []byte { return append(b[:dhcpFixedLen], 255) }), want: refuse, err: "dhcpv4: option 53 (message type) is missing"},
		{name: "server message from a client", frame: msg(dhcpv4.MessageTypeOffer), want: refuse, err: "dhcpv4: option 53 (message type) OFFER"},
		{name: "bootreply op", frame: msg(dhcpv4.MessageTypeDiscover, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }), want: refuse, err: "dhcpv4: op 2, want 1"},
		{name: "hardware address length", frame: msg(dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0})), want: refuse, err: "dhcpv4: hlen 4, want 6"},
		{name: "port without IPv4", port: func(p *PortInfo) { p.Addresses = []netip.Prefix{ep6} }, frame: msg(dhcpv4.MessageTypeDiscover), want: refuse, err: "dhcpv4: port info"},
		{name: "reply too large for 576 bytes", port: func(p *PortInfo) {
			p.Hostname, p.Domain = strings.Repeat("h", 255), strings.Repeat("d", 255)
		}, frame: msg(dhcpv4.MessageTypeDiscover), want: refuse, err: "exceeds the client's maximum message size 576"},
		{name: "large reply within the client's maximum size", port: func(p *PortInfo) {
			p.Hostname, p.Domain = strings.Repeat("h", 255), strings.Repeat("d", 255)
		}, frame: msg(dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1400))), want: answer},

		{name: "port without DHCP", port: func(p *PortInfo) { p.DHCP = false }, frame: msg(dhcpv4.MessageTypeDiscover), want: forward},
		{name: "to another DHCP server", frame: func(t testing.TB) []byte {
			return dhcpFrame(t, udpReq{src: ep, dst: netip.MustParseAddr("192.0.2.53")}, dhcpMsg(dhcpv4.MessageTypeInform))
		}, want: forward},
		{name: "from a relay port", frame: func(t testing.TB) []byte {
			return dhcpFrame(t, udpReq{src: ep, dst: gw4, srcPort: 67, dstPort: 67}, dhcpMsg(dhcpv4.MessageTypeDiscover))
		}, want: forward},
		{name: "other UDP to the gateway", frame: func(t testing.TB) []byte {
			return udpFrame(t, udpReq{ethSrc: epMAC, src: ep, dst: gw4, srcPort: 5353, dstPort: 53}, []byte("query"))
		}, want: forward},
		{name: "UDP length past the datagram", frame: func(t testing.TB) []byte {
			b := dhcpFrame(t, udpReq{}, dhcpMsg(dhcpv4.MessageTypeDiscover))
			b[packet.EthernetHeaderLen+packet.IPv4MinHeaderLen+4] = 0xff
			return b
		}, want: forward},
	})
}

// checkConfig checks the configuration options of an OFFER or ACK for the
// fixture's /24.
func checkConfig(t *testing.T, d *dhcpv4.DHCPv4) {
	t.Helper()
	if m := d.SubnetMask(); m.String() != net.CIDRMask(24, 32).String() {
		t.Fatalf("mask %v", m)
	}
	if r := d.Router(); len(r) != 1 || !r[0].Equal(gw4.AsSlice()) {
		t.Fatalf("router %v", r)
	}
	if s := d.DNS(); len(s) != 1 || !s[0].Equal(dns4.AsSlice()) {
		t.Fatalf("dns %v (IPv6 servers must not be in option 6)", s)
	}
	if d.HostName() != "pg1" || d.DomainName() != "db.weft.internal" {
		t.Fatalf("hostname %q domain %q", d.HostName(), d.DomainName())
	}
	if mtu := d.Options.Get(dhcpv4.OptionInterfaceMTU); len(mtu) != 2 || int(mtu[0])<<8|int(mtu[1]) != 1400 {
		t.Fatalf("mtu option %v", mtu)
	}
	if d.Options.Has(dhcpv4.OptionClasslessStaticRoute) {
		t.Fatalf("classless routes for a /24 with the gateway inside: %v", d.ClasslessStaticRoute())
	}
}

func TestDHCPOptions(t *testing.T) {
	discover := func(t *testing.T, p *PortInfo, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		t.Helper()
		out := make([]byte, MaxReplyLen)
		n, _, err := Handle(dhcpFrame(t, udpReq{}, dhcpMsg(dhcpv4.MessageTypeDiscover, mods...)), p, out)
		if err != nil || n == 0 {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if err := checkReply(p, out[:n]); err != nil {
			t.Fatal(err)
		}
		d, _, _ := dhcpReply(t, out[:n])
		return d
	}
	routes := func(d *dhcpv4.DHCPv4) string { return dhcpv4.Routes(d.ClasslessStaticRoute()).String() }
	const onLink = "route to 10.0.100.1/32 via 0.0.0.0; route to 0.0.0.0/0 via 10.0.100.1"
	for _, tc := range []struct {
		name   string
		addr   string
		gw     string
		mask   string
		routes string
	}{
		{"/24 with the gateway inside", "10.0.100.3/24", "10.0.100.1", "255.255.255.0", ""},
		{"/32", "10.0.100.3/32", "10.0.100.1", "255.255.255.255", onLink},
		{"/31 with the gateway outside", "10.0.100.2/31", "10.0.100.1", "255.255.255.254", onLink},
		{"/31 with the gateway its peer", "10.0.100.0/31", "10.0.100.1", "255.255.255.254", onLink},
		{"gateway outside the subnet", "10.0.200.3/24", "10.0.100.1", "255.255.255.0", onLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPort()
			p.Addresses = []netip.Prefix{netip.MustParsePrefix(tc.addr)}
			p.Gateways = []netip.Addr{netip.MustParseAddr(tc.gw)}
			d := discover(t, p)
			if net.IP(d.SubnetMask()).String() != tc.mask {
				t.Fatalf("mask %v, want %s", net.IP(d.SubnetMask()), tc.mask)
			}
			if got := routes(d); got != tc.routes {
				t.Fatalf("routes %q, want %q", got, tc.routes)
			}
			// Option 3 stays for clients without option 121 (RFC 3442 has
			// the others ignore it).
			if r := d.Router(); len(r) != 1 || r[0].String() != tc.gw {
				t.Fatalf("router %v", r)
			}
		})
	}
	t.Run("defaults and omissions", func(t *testing.T) {
		p := testPort()
		p.LeaseTime, p.MTU, p.DNS, p.Hostname, p.Domain = 0, 0, []netip.Addr{dns6}, "", ""
		d := discover(t, p)
		if d.IPAddressLeaseTime(0) != 24*time.Hour || d.IPAddressRenewalTime(0) != 12*time.Hour || d.IPAddressRebindingTime(0) != 21*time.Hour {
			t.Fatalf("lease %v T1 %v T2 %v", d.IPAddressLeaseTime(0), d.IPAddressRenewalTime(0), d.IPAddressRebindingTime(0))
		}
		for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionInterfaceMTU, dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName} {
			if d.Options.Has(o) {
				t.Errorf("%v sent: %v", o, d.Options.Get(o))
			}
		}
	})
	t.Run("client identifier copied", func(t *testing.T) {
		id := append([]byte{1}, epMAC[:]...)
		d := discover(t, testPort(), dhcpv4.WithOption(dhcpv4.OptClientIdentifier(id)))
		if got := d.Options.Get(dhcpv4.OptionClientIdentifier); string(got) != string(id) {
			t.Fatalf("client identifier %x, want %x", got, id)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(p *PortInfo)
		err  string
	}{
		{"valid", func(*PortInfo) {}, ""},
		{"IPv6 only without DHCP", func(p *PortInfo) { p.Addresses, p.Gateways, p.DHCP = []netip.Prefix{ep6}, nil, false }, ""},
		{"zero MAC", func(p *PortInfo) { p.MAC = packet.MAC{} }, "port info: mac 00:00:00:00:00:00"},
		{"multicast gateway MAC", func(p *PortInfo) { p.GatewayMAC = allNodesMAC }, "port info: gatewayMAC 33:33:00:00:00:01"},
		{"gateway MAC is the endpoint's", func(p *PortInfo) { p.GatewayMAC = epMAC }, "is the endpoint's MAC"},
		{"invalid address", func(p *PortInfo) { p.Addresses = append(p.Addresses, netip.Prefix{}) }, "port info: addresses[2]: invalid prefix"},
		{"multicast address", func(p *PortInfo) { p.Addresses[1] = netip.MustParsePrefix("ff02::1/128") }, "port info: addresses[1]: ff02::1/128: want a unicast address"},
		{"mapped address", func(p *PortInfo) { p.Addresses[0] = netip.MustParsePrefix("::ffff:10.0.100.3/120") }, "addresses[0]"},
		{"two IPv4 gateways", func(p *PortInfo) { p.Gateways = append(p.Gateways, netip.MustParseAddr("10.0.100.254")) }, "want at most one of each"},
		{"gateway is the endpoint", func(p *PortInfo) { p.Gateways[0] = ep4.Addr() }, "gateways[0]: 10.0.100.3: is one of the endpoint's addresses"},
		{"mtu", func(p *PortInfo) { p.MTU = 67 }, "port info: mtu 67"},
		{"dns", func(p *PortInfo) { p.DNS = []netip.Addr{{}} }, "port info: dns[0]"},
		{"hostname", func(p *PortInfo) { p.Hostname = strings.Repeat("x", 256) }, "port info: hostname"},
		{"lease", func(p *PortInfo) { p.LeaseTime = -time.Second }, "port info: leaseTime -1s"},
		{"DHCP without IPv4 gateway", func(p *PortInfo) { p.Gateways = []netip.Addr{gwLL} }, "port info: dhcp: needs an IPv4 address and an IPv4 gateway (have 1 and 0)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPort()
			tc.mod(p)
			err := p.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate: %v, want %q", err, tc.err)
			}
		})
	}
	var p *PortInfo
	if p.Validate() == nil {
		t.Fatal("nil PortInfo valid")
	}
	if _, handled, err := Handle(nil, nil, nil); !handled || err == nil {
		t.Fatalf("nil port: handled=%v err=%v", handled, err)
	}
}

// TestNoAllocation holds ARP and ND to allocating nothing, answered,
// refused or passed on.
func TestNoAllocation(t *testing.T) {
	p := testPort()
	out := make([]byte, MaxReplyLen)
	frames := map[string][]byte{
		"arp reply":        arpFrame(t, arpReq{ethSrc: epMAC, sha: epMAC, spa: ep4.Addr(), tpa: gw4}),
		"arp probe":        arpFrame(t, arpReq{ethSrc: epMAC, sha: epMAC, spa: zero4, tpa: ep4.Addr()}),
		"arp refused":      arpFrame(t, arpReq{ethSrc: otherMAC, sha: otherMAC, spa: ep4.Addr(), tpa: gw4}),
		"neighbor advert":  ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: packet.SolicitedNodeMulticast(gwLL), body: nsBody(gwLL, &epMAC)}),
		"DAD probe":        ndFrame(t, ndReq{ethSrc: epMAC, src: netip.IPv6Unspecified(), dst: packet.SolicitedNodeMulticast(ep6.Addr()), body: nsBody(ep6.Addr(), nil)}),
		"ns refused":       ndFrame(t, ndReq{ethSrc: otherMAC, src: epLL, dst: packet.SolicitedNodeMulticast(gwLL), body: nsBody(gwLL, nil)}),
		"router advert":    ndFrame(t, ndReq{ethSrc: epMAC, src: epLL, dst: netip.MustParseAddr("ff02::2"), body: rsBody(&epMAC)}),
		"forwarded udp v4": udpFrame(t, udpReq{ethSrc: epMAC, src: ep4.Addr(), dst: netip.MustParseAddr("192.0.2.1"), srcPort: 4000, dstPort: 53}, make([]byte, 64)),
		"forwarded icmpv6": ndFrame(t, ndReq{ethSrc: epMAC, src: ep6.Addr(), dst: netip.MustParseAddr("2001:db8:200::1"), hopLimit: 64, body: []byte{128, 0, 0, 0, 0, 1, 0, 1}}),
	}
	for name, f := range frames {
		if a := testing.AllocsPerRun(100, func() { _, _, _ = Handle(f, p, out) }); a != 0 {
			t.Errorf("%s: %v allocations per frame", name, a)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = RouterAdvert(p, out) }); a != 0 {
		t.Errorf("RouterAdvert: %v allocations", a)
	}
}
