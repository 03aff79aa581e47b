package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Neighbor Discovery option types (RFC 4861 section 4.6).
const (
	NDOptSourceLinkAddr = 1
	NDOptTargetLinkAddr = 2
	NDOptPrefixInfo     = 3
	NDOptRedirected     = 4
	NDOptMTU            = 5
)

// NeighborAdvertLen is the length of the packet BuildNeighborAdvert writes:
// IPv6 header, advertisement and a target link-layer address option.
const NeighborAdvertLen = IPv6HeaderLen + 24 + 8

// The fixed part of each ND message, options follow it.
const (
	nsFixedLen = 24
	naFixedLen = 24
	rsFixedLen = 8
	raFixedLen = 16
)

// checkND applies the validity checks RFC 4861 sections 6.1 and 7.1 share:
// hop limit 255 (the packet was not forwarded), a valid checksum, code 0,
// the fixed part present and options of non-zero length within the message.
func checkND(layer string, ip IPv6, m ICMPv6, fixed int) error {
	if ip.HopLimit() != 255 {
		return errField(layer, "hop limit", 7, int(ip.HopLimit()), 255, fmtWant)
	}
	if len(m.b) < fixed {
		return errShort(layer, "message", 0, len(m.b), fixed)
	}
	if m.Code() != 0 {
		return errField(layer, "code", 1, int(m.Code()), 0, fmtWant)
	}
	if !m.ChecksumValid(ip.Src(), ip.Dst()) {
		return errField(layer, "checksum", 2, int(m.Checksum()), int(m.ComputeChecksum(ip.Src(), ip.Dst())), "%#04x, want %#04x")
	}
	for off := fixed; off < len(m.b); {
		if len(m.b)-off < 2 {
			return errShort(layer, "option", off, len(m.b)-off, 2)
		}
		l := int(m.b[off+1]) * 8
		if l == 0 {
			return errField(layer, "option length", off+1, 0, 1, fmtBelow)
		}
		if l > len(m.b)-off {
			return errField(layer, "option length", off+1, l, len(m.b)-off, fmtExceeds)
		}
		off += l
	}
	return nil
}

// ndOption returns the body (after type and length) of the first option of
// type typ in opts, which checkND validated.
func ndOption(opts []byte, typ uint8) ([]byte, bool) {
	for len(opts) >= 2 {
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			return nil, false
		}
		if opts[0] == typ {
			return opts[2:l], true
		}
		opts = opts[l:]
	}
	return nil, false
}

// ndLinkAddr reads a link-layer address option for Ethernet.
func ndLinkAddr(opts []byte, typ uint8) (MAC, bool) {
	o, ok := ndOption(opts, typ)
	if !ok || len(o) < 6 {
		return MAC{}, false
	}
	return MAC(o[0:6]), true
}

// SolicitedNodeMulticast is ff02::1:ffXX:XXXX for a, where a neighbor
// solicitation for a is sent.
func SolicitedNodeMulticast(a netip.Addr) netip.Addr {
	s := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: s[13], 14: s[14], 15: s[15]})
}

// NeighborSolicit is a view of a neighbor solicitation.
type NeighborSolicit struct{ b []byte }

// ParseNeighborSolicit validates m, carried in ip, as a neighbor
// solicitation (RFC 4861 section 7.1.1).
func ParseNeighborSolicit(ip IPv6, m ICMPv6) (NeighborSolicit, error) {
	const layer = "neighbor solicitation"
	if m.Type() != ICMPv6NeighborSolicit {
		return NeighborSolicit{}, errField(layer, "type", 0, int(m.Type()), ICMPv6NeighborSolicit, fmtWant)
	}
	if err := checkND(layer, ip, m, nsFixedLen); err != nil {
		return NeighborSolicit{}, err
	}
	ns := NeighborSolicit{b: m.b}
	if ns.Target().IsMulticast() {
		return NeighborSolicit{}, errMsg(layer, "target", 8, "is multicast")
	}
	if ip.Src().IsUnspecified() {
		// Duplicate address detection: only to the solicited-node group,
		// and no source link-layer address to learn.
		if ip.Dst() != SolicitedNodeMulticast(ns.Target()) {
			return NeighborSolicit{}, errMsg(layer, "ipv6 destination", 24, "of a DAD probe is not the target's solicited-node group")
		}
		if _, ok := ns.SourceLinkAddr(); ok {
			return NeighborSolicit{}, errMsg(layer, "source link-layer address", nsFixedLen, "option in a DAD probe")
		}
	}
	return ns, nil
}

// Target is the address being resolved.
func (n NeighborSolicit) Target() netip.Addr { return netip.AddrFrom16([16]byte(n.b[8:24])) }

// SourceLinkAddr is the solicitor's MAC, if the option is present.
func (n NeighborSolicit) SourceLinkAddr() (MAC, bool) {
	return ndLinkAddr(n.b[nsFixedLen:], NDOptSourceLinkAddr)
}

// IsDAD reports a duplicate address detection probe (unspecified source);
// the caller learns that from the IPv6 header, passed here.
func (n NeighborSolicit) IsDAD(ip IPv6) bool { return ip.Src().IsUnspecified() }

// NeighborAdvert is a view of a neighbor advertisement.
type NeighborAdvert struct{ b []byte }

// ParseNeighborAdvert validates m, carried in ip, as a neighbor
// advertisement (RFC 4861 section 7.1.2).
func ParseNeighborAdvert(ip IPv6, m ICMPv6) (NeighborAdvert, error) {
	const layer = "neighbor advertisement"
	if m.Type() != ICMPv6NeighborAdvert {
		return NeighborAdvert{}, errField(layer, "type", 0, int(m.Type()), ICMPv6NeighborAdvert, fmtWant)
	}
	if err := checkND(layer, ip, m, naFixedLen); err != nil {
		return NeighborAdvert{}, err
	}
	na := NeighborAdvert{b: m.b}
	if na.Target().IsMulticast() {
		return NeighborAdvert{}, errMsg(layer, "target", 8, "is multicast")
	}
	if ip.Dst().IsMulticast() && na.Solicited() {
		return NeighborAdvert{}, errMsg(layer, "flags", 4, "has the solicited flag on a multicast advertisement")
	}
	return na, nil
}

// Router reports the R flag: the sender is a router.
func (n NeighborAdvert) Router() bool { return n.b[4]&0x80 != 0 }

// Solicited reports the S flag: the advertisement answers a solicitation.
func (n NeighborAdvert) Solicited() bool { return n.b[4]&0x40 != 0 }

// Override reports the O flag: the advertisement replaces cached entries.
func (n NeighborAdvert) Override() bool { return n.b[4]&0x20 != 0 }

// Target is the address advertised.
func (n NeighborAdvert) Target() netip.Addr { return netip.AddrFrom16([16]byte(n.b[8:24])) }

// TargetLinkAddr is the target's MAC, if the option is present.
func (n NeighborAdvert) TargetLinkAddr() (MAC, bool) {
	return ndLinkAddr(n.b[naFixedLen:], NDOptTargetLinkAddr)
}

// RouterSolicit is a view of a router solicitation.
type RouterSolicit struct{ b []byte }

// ParseRouterSolicit validates m, carried in ip, as a router solicitation
// (RFC 4861 section 6.1.1).
func ParseRouterSolicit(ip IPv6, m ICMPv6) (RouterSolicit, error) {
	const layer = "router solicitation"
	if m.Type() != ICMPv6RouterSolicit {
		return RouterSolicit{}, errField(layer, "type", 0, int(m.Type()), ICMPv6RouterSolicit, fmtWant)
	}
	if err := checkND(layer, ip, m, rsFixedLen); err != nil {
		return RouterSolicit{}, err
	}
	rs := RouterSolicit{b: m.b}
	if _, ok := rs.SourceLinkAddr(); ok && ip.Src().IsUnspecified() {
		return RouterSolicit{}, errMsg(layer, "source link-layer address", rsFixedLen, "option with an unspecified source")
	}
	return rs, nil
}

// SourceLinkAddr is the solicitor's MAC, if the option is present.
func (r RouterSolicit) SourceLinkAddr() (MAC, bool) {
	return ndLinkAddr(r.b[rsFixedLen:], NDOptSourceLinkAddr)
}

// RouterAdvert is a view of a router advertisement.
type RouterAdvert struct{ b []byte }

// ParseRouterAdvert validates m, carried in ip, as a router advertisement
// (RFC 4861 section 6.1.2): also its source must be link-local.
func ParseRouterAdvert(ip IPv6, m ICMPv6) (RouterAdvert, error) {
	const layer = "router advertisement"
	if m.Type() != ICMPv6RouterAdvert {
		return RouterAdvert{}, errField(layer, "type", 0, int(m.Type()), ICMPv6RouterAdvert, fmtWant)
	}
	if !ip.Src().IsLinkLocalUnicast() {
		return RouterAdvert{}, errMsg(layer, "ipv6 source", 8, "is not link-local")
	}
	if err := checkND(layer, ip, m, raFixedLen); err != nil {
		return RouterAdvert{}, err
	}
	return RouterAdvert{b: m.b}, nil
}

// CurHopLimit is the hop limit hosts should use, 0 if unspecified.
func (r RouterAdvert) CurHopLimit() uint8 { return r.b[4] }

// Managed reports the M flag (addresses from DHCPv6).
func (r RouterAdvert) Managed() bool { return r.b[5]&0x80 != 0 }

// Other reports the O flag (other configuration from DHCPv6).
func (r RouterAdvert) Other() bool { return r.b[5]&0x40 != 0 }

// RouterLifetime is the lifetime as default router, in seconds.
func (r RouterAdvert) RouterLifetime() uint16 { return binary.BigEndian.Uint16(r.b[6:8]) }

// ReachableTime is in milliseconds, 0 if unspecified.
func (r RouterAdvert) ReachableTime() uint32 { return binary.BigEndian.Uint32(r.b[8:12]) }

// RetransTimer is in milliseconds, 0 if unspecified.
func (r RouterAdvert) RetransTimer() uint32 { return binary.BigEndian.Uint32(r.b[12:16]) }

// SourceLinkAddr is the router's MAC, if the option is present.
func (r RouterAdvert) SourceLinkAddr() (MAC, bool) {
	return ndLinkAddr(r.b[raFixedLen:], NDOptSourceLinkAddr)
}

// MTU is the link MTU option's value, if present.
func (r RouterAdvert) MTU() (uint32, bool) {
	o, ok := ndOption(r.b[raFixedLen:], NDOptMTU)
	if !ok || len(o) < 6 {
		return 0, false
	}
	return binary.BigEndian.Uint32(o[2:6]), true
}

// Option is the body (after type and length bytes) of the first option of
// type typ, e.g. NDOptPrefixInfo.
func (r RouterAdvert) Option(typ uint8) ([]byte, bool) { return ndOption(r.b[raFixedLen:], typ) }

// NeighborAdvertFields are what BuildNeighborAdvert writes.
type NeighborAdvertFields struct {
	Src, Dst  netip.Addr // IPv6 header; Dst is the solicitor, or ff02::1
	Target    netip.Addr // the address answered for
	TargetMAC MAC        // sent in the target link-layer address option
	Router    bool       // R: the vRouter answers as the workload's router
	Solicited bool       // S: in answer to a solicitation (not to ff02::1)
	Override  bool       // O: replace what the neighbor has cached
}

// BuildNeighborAdvert writes at the start of b a whole IPv6 packet (hop
// limit 255) holding a neighbor advertisement with a target link-layer
// address option: what the ND proxy answers a solicitation with. b needs
// NeighborAdvertLen bytes.
func BuildNeighborAdvert(b []byte, f *NeighborAdvertFields) (IPv6, error) {
	if !f.Src.Is6() || !f.Dst.Is6() || !f.Target.Is6() {
		return IPv6{}, fmt.Errorf("neighbor advertisement: addresses %v, %v, target %v must be IPv6", f.Src, f.Dst, f.Target)
	}
	if len(b) < NeighborAdvertLen {
		return IPv6{}, errBuf("neighbor advertisement", len(b), NeighborAdvertLen)
	}
	m := b[IPv6HeaderLen:NeighborAdvertLen]
	m[0], m[1], m[2], m[3] = ICMPv6NeighborAdvert, 0, 0, 0
	var flags uint8
	if f.Router {
		flags |= 0x80
	}
	if f.Solicited {
		flags |= 0x40
	}
	if f.Override {
		flags |= 0x20
	}
	m[4], m[5], m[6], m[7] = flags, 0, 0, 0
	t := f.Target.As16()
	copy(m[8:24], t[:])
	m[24], m[25] = NDOptTargetLinkAddr, 1
	copy(m[26:32], f.TargetMAC[:])
	s, d := f.Src.As16(), f.Dst.As16()
	binary.BigEndian.PutUint16(m[2:4], checksum(m, pseudoSum16(&s, &d, ProtoICMPv6, len(m))))
	putIPv6(b, 0, 0, len(m), ProtoICMPv6, 255, &s, &d)
	return IPv6{b: b[:NeighborAdvertLen]}, nil
}
