package services

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/weftnet/weft/vrouter/packet"
)

// Router advertisement timing. The services answer solicitations only, and
// a host solicits only when its interface comes up: the port must also send
// RouterAdvert every RouterAdvertInterval, or the endpoint's default route
// expires RouterLifetime after its last solicitation. The forwarding engine
// does (package dataplane: on attach, then every interval).
const (
	// RouterLifetime is the advertised lifetime as default router, the
	// largest RFC 4861 allows (RFC 8319 allows more, not every host knows).
	RouterLifetime = 9000 * time.Second
	// RouterAdvertInterval is how often a port should send an unsolicited
	// advertisement: RFC 4861's largest MaxRtrAdvInterval, so that several
	// may be lost before the route expires.
	RouterAdvertInterval = 1800 * time.Second
)

// maxRDNSS bounds the DNS servers put in one advertisement, so that its
// length is bounded whatever PortInfo holds.
const maxRDNSS = 8

// ND option types the advertisement carries beyond packet's.
const ndOptRDNSS = 25 // recursive DNS server (RFC 8106)

var (
	allNodes    = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 1})
	allNodesMAC = packet.MAC{0x33, 0x33, 0, 0, 0, 1}

	errNSEthSrc  = &Error{Layer: "neighbor solicitation", Field: "ethernet source", Reason: "is not the port's MAC"}
	errNSLink    = &Error{Layer: "neighbor solicitation", Field: "source link-layer address", Reason: "is not the port's MAC"}
	errNSSrc     = &Error{Layer: "neighbor solicitation", Field: "ipv6 source", Reason: "is multicast"}
	errRSEthSrc  = &Error{Layer: "router solicitation", Field: "ethernet source", Reason: "is not the port's MAC"}
	errRSLink    = &Error{Layer: "router solicitation", Field: "source link-layer address", Reason: "is not the port's MAC"}
	errRSSrc     = &Error{Layer: "router solicitation", Field: "ipv6 source", Reason: "is multicast"}
	errRAAddress = &Error{Layer: "router advertisement", Field: "destination", Reason: "is not IPv6"}
)

// handleIPv6 picks the neighbor and router solicitations out of IPv6
// frames; everything else is the forwarder's.
func handleIPv6(eth packet.Ethernet, p *PortInfo, out []byte) (int, bool, error) {
	ip, err := packet.ParseIPv6(eth.Payload())
	if err != nil {
		return 0, false, nil
	}
	tr, err := ip.Transport()
	if err != nil || tr.Proto != packet.ProtoICMPv6 || tr.FragmentOffset != 0 {
		return 0, false, nil
	}
	m, err := packet.ParseICMPv6(ip.Bytes()[tr.Offset:])
	if err != nil {
		return 0, false, nil
	}
	switch m.Type() {
	case packet.ICMPv6NeighborSolicit:
		if tr.Fragment {
			return 0, true, errNDFragged
		}
		return handleNS(eth, ip, m, p, out)
	case packet.ICMPv6RouterSolicit:
		if tr.Fragment {
			return 0, true, errNDFragged
		}
		return handleRS(eth, ip, m, p, out)
	}
	return 0, false, nil
}

// handleNS answers a solicitation for any target but the endpoint's own
// addresses with the gateway MAC, as a router (R) answering (S). The
// Override flag is set although RFC 4861 section 7.2.4 wants proxies to
// clear it: no other node on the port owns any address, and a cached entry
// with another MAC (a workload moved from elsewhere) must be replaced.
// Duplicate address detection probes get no answer, so that DAD succeeds.
func handleNS(eth packet.Ethernet, ip packet.IPv6, m packet.ICMPv6, p *PortInfo, out []byte) (int, bool, error) {
	ns, err := packet.ParseNeighborSolicit(ip, m)
	if err != nil {
		return 0, true, err
	}
	if eth.Src() != p.MAC {
		return 0, true, errNSEthSrc
	}
	if mac, ok := ns.SourceLinkAddr(); ok && mac != p.MAC {
		return 0, true, errNSLink
	}
	if ns.IsDAD(ip) {
		return 0, true, nil
	}
	if ip.Src().IsMulticast() {
		return 0, true, errNSSrc
	}
	target := ns.Target()
	if !answerable(target) || p.isOwn(target) {
		return 0, true, nil
	}
	const n = packet.EthernetHeaderLen + packet.NeighborAdvertLen
	if len(out) < n {
		return 0, true, errOutShort
	}
	h, _ := packet.PutEthernet(out, eth.Src(), p.GatewayMAC, packet.EtherTypeIPv6)
	f := packet.NeighborAdvertFields{
		Src:       p.gatewayLL(), // a proxy answers from its own address
		Dst:       ip.Src(),
		Target:    target,
		TargetMAC: p.GatewayMAC,
		Router:    true,
		Solicited: true,
		Override:  true,
	}
	if _, err := packet.BuildNeighborAdvert(out[h:], &f); err != nil {
		return 0, true, err
	}
	return n, true, nil
}

// handleRS answers a router solicitation with an advertisement to the
// solicitor (to all nodes if it had no address yet), on ports with an IPv6
// address; elsewhere a default route would lead nowhere.
func handleRS(eth packet.Ethernet, ip packet.IPv6, m packet.ICMPv6, p *PortInfo, out []byte) (int, bool, error) {
	rs, err := packet.ParseRouterSolicit(ip, m)
	if err != nil {
		return 0, true, err
	}
	if eth.Src() != p.MAC {
		return 0, true, errRSEthSrc
	}
	if mac, ok := rs.SourceLinkAddr(); ok && mac != p.MAC {
		return 0, true, errRSLink
	}
	if ip.Src().IsMulticast() {
		return 0, true, errRSSrc
	}
	if _, ok := p.address(true); !ok {
		return 0, true, nil
	}
	dst, ethDst := ip.Src(), eth.Src()
	if dst.IsUnspecified() {
		dst, ethDst = allNodes, allNodesMAC
	}
	n, err := putRouterAdvert(out, p, ethDst, dst)
	if err != nil {
		return 0, true, err
	}
	return n, true, nil
}

// RouterAdvert writes into out an unsolicited router advertisement for the
// port, to all nodes (ff02::1), and returns its length: what the port sends
// when it comes up and every RouterAdvertInterval. It writes nothing and
// returns 0 for a port without an IPv6 address. No allocation.
func RouterAdvert(p *PortInfo, out []byte) (int, error) {
	if p == nil {
		return 0, errNilPort
	}
	if _, ok := p.address(true); !ok {
		return 0, nil
	}
	return putRouterAdvert(out, p, allNodesMAC, allNodes)
}

// putRouterAdvert writes a whole frame holding a router advertisement from
// the gateway's link-local address (packet has no builder for one): router
// lifetime, the gateway MAC as source link-layer address, the MTU when it
// is one IPv6 allows, the port's IPv6 DNS servers. No prefix information:
// the addresses are static, the advertisement is for the default route.
// Hop limit, reachable time and retransmission timer are left to the host
// (0), and the M and O flags are clear: there is no DHCPv6.
func putRouterAdvert(out []byte, p *PortInfo, ethDst packet.MAC, dst netip.Addr) (int, error) {
	if !dst.Is6() {
		return 0, errRAAddress
	}
	const raFixed = 16
	var dns [maxRDNSS]netip.Addr
	nDNS := 0
	for _, a := range p.DNS {
		if a.Is6() && nDNS < maxRDNSS {
			dns[nDNS] = a
			nDNS++
		}
	}
	mlen := raFixed + 8 // source link-layer address
	withMTU := p.MTU >= packet.IPv6MinMTU
	if withMTU {
		mlen += 8
	}
	if nDNS > 0 {
		mlen += 8 + 16*nDNS
	}
	n := packet.EthernetHeaderLen + packet.IPv6HeaderLen + mlen
	if len(out) < n {
		return 0, errOutShort
	}
	src := p.gatewayLL()
	h, _ := packet.PutEthernet(out, ethDst, p.GatewayMAC, packet.EtherTypeIPv6)
	ih := packet.IPv6Header{NextHeader: packet.ProtoICMPv6, HopLimit: 255, Src: src, Dst: dst}
	il, err := packet.PutIPv6Header(out[h:], &ih, mlen)
	if err != nil {
		return 0, err
	}
	m := out[h+il : n]
	clear(m[:raFixed])
	m[0] = packet.ICMPv6RouterAdvert
	binary.BigEndian.PutUint16(m[6:8], uint16(RouterLifetime/time.Second))
	o := m[raFixed:]
	o[0], o[1] = packet.NDOptSourceLinkAddr, 1
	copy(o[2:8], p.GatewayMAC[:])
	o = o[8:]
	if withMTU {
		o[0], o[1], o[2], o[3] = packet.NDOptMTU, 1, 0, 0
		binary.BigEndian.PutUint32(o[4:8], uint32(min(p.MTU, maxMTU)))
		o = o[8:]
	}
	if nDNS > 0 {
		o[0], o[1], o[2], o[3] = ndOptRDNSS, uint8(1+2*nDNS), 0, 0
		binary.BigEndian.PutUint32(o[4:8], uint32(RouterLifetime/time.Second))
		for i, a := range dns[:nDNS] {
			b := a.As16()
			copy(o[8+16*i:], b[:])
		}
	}
	icmp, err := packet.ParseICMPv6(m)
	if err != nil {
		return 0, err
	}
	icmp.SetChecksum(src, dst)
	return n, nil
}
