package services

import (
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/weftnet/weft/vrouter/packet"
)

// FuzzHandle feeds Handle arbitrary frames for two ports (dual-stack /24,
// and IPv4-only /32 with nothing optional): it must never panic, its
// results must keep the contract (an error consumes the frame, no reply
// without handled), and any reply must be a well-formed frame as
// checkReply defines it, also when out is barely large enough.
func FuzzHandle(f *testing.F) {
	sol := packet.SolicitedNodeMulticast
	ep := ep4.Addr()
	seeds := [][]byte{
		arpFrame(f, arpReq{ethSrc: epMAC, sha: epMAC, spa: ep, tpa: gw4}),
		arpFrame(f, arpReq{ethSrc: epMAC, sha: epMAC, spa: zero4, tpa: ep}),
		ndFrame(f, ndReq{ethSrc: epMAC, src: epLL, dst: sol(gwLL), body: nsBody(gwLL, &epMAC)}),
		ndFrame(f, ndReq{ethSrc: epMAC, src: netip.IPv6Unspecified(), dst: sol(ep6.Addr()), body: nsBody(ep6.Addr(), nil)}),
		ndFrame(f, ndReq{ethSrc: epMAC, src: epLL, dst: netip.MustParseAddr("ff02::2"), body: rsBody(&epMAC)}),
		ndFrame(f, ndReq{ethSrc: epMAC, src: netip.IPv6Unspecified(), dst: netip.MustParseAddr("ff02::2"), body: rsBody(nil)}),
		ndFrame(f, ndReq{ethSrc: epMAC, src: epLL, dst: sol(gwLL), ext: fragHeader(), body: nsBody(gwLL, nil)}),
		dhcpFrame(f, udpReq{}, dhcpMsg(dhcpv4.MessageTypeDiscover)),
		dhcpFrame(f, udpReq{}, dhcpMsg(dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true))),
		dhcpFrame(f, udpReq{}, dhcpMsg(dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ep.AsSlice())))),
		dhcpFrame(f, udpReq{src: ep, dst: gw4}, dhcpMsg(dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ep.AsSlice()))),
		dhcpFrame(f, udpReq{src: ep, dst: gw4}, dhcpMsg(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(ep.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1500)), dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3})))),
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	ports := []*PortInfo{testPort(), {
		MAC:        epMAC,
		GatewayMAC: gwMAC,
		Addresses:  []netip.Prefix{netip.MustParsePrefix("10.0.100.3/32")},
		Gateways:   []netip.Addr{gw4},
		DHCP:       true,
	}}
	for _, p := range ports {
		if err := p.Validate(); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := string(b)
		for _, p := range ports {
			out := make([]byte, MaxReplyLen)
			n, handled, err := Handle(b, p, out)
			switch {
			case err != nil && (!handled || n != 0):
				t.Fatalf("error %v with n=%d handled=%v", err, n, handled)
			case !handled && n != 0:
				t.Fatalf("reply of %d bytes to a frame not handled", n)
			case n > len(out):
				t.Fatalf("reply of %d bytes in %d", n, len(out))
			case n > 0:
				if err := checkReply(p, out[:n]); err != nil {
					t.Fatalf("reply: %v\nframe %x\nreply %x", err, b, out[:n])
				}
				// The same reply fits exactly; one byte less is an error.
				if m, _, err := Handle(b, p, make([]byte, n)); m != n || err != nil {
					t.Fatalf("exact out: n=%d err=%v, want %d", m, err, n)
				}
				if m, _, err := Handle(b, p, make([]byte, n-1)); m != 0 || err == nil {
					t.Fatalf("short out: n=%d err=%v", m, err)
				}
			}
			if string(b) != orig {
				t.Fatal("Handle modified the frame")
			}
		}
	})
}

// FuzzNeighborDiscovery gets past the checksum that keeps FuzzHandle's
// mutations out of the solicitation parsers: it fuzzes the ICMPv6 message
// and the addresses, and computes the checksum before calling Handle.
func FuzzNeighborDiscovery(f *testing.F) {
	ll, gw, un := epLL.As16(), gwLL.As16(), netip.IPv6Unspecified().As16()
	sol := packet.SolicitedNodeMulticast(ep6.Addr()).As16()
	rtrs := netip.MustParseAddr("ff02::2").As16()
	f.Add(nsBody(gwLL, &epMAC), ll[:], gw[:])
	f.Add(nsBody(ep6.Addr(), nil), un[:], sol[:])
	f.Add(rsBody(&epMAC), ll[:], rtrs[:])
	f.Add(rsBody(nil), un[:], rtrs[:])
	p := testPort()
	f.Fuzz(func(t *testing.T, body, src, dst []byte) {
		if len(src) != 16 || len(dst) != 16 {
			return
		}
		frame := ndFrame(t, ndReq{ethSrc: epMAC, src: netip.AddrFrom16([16]byte(src)), dst: netip.AddrFrom16([16]byte(dst)), body: body})
		out := make([]byte, MaxReplyLen)
		n, handled, err := Handle(frame, p, out)
		if (err != nil && (!handled || n != 0)) || (!handled && n != 0) {
			t.Fatalf("n=%d handled=%v err=%v", n, handled, err)
		}
		if n > 0 {
			if err := checkReply(p, out[:n]); err != nil {
				t.Fatalf("reply: %v\nframe %x\nreply %x", err, frame, out[:n])
			}
		}
	})
}
