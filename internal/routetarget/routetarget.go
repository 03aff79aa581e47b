// Package routetarget is the route target extended community (RFC 4360,
// RFC 5668) as one type: weft.yaml's schema (config) parses it and the BGP
// speaker (agent/bgp) encodes it, so neither converts and neither imports
// the other.
package routetarget

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Type is the kind of a route target extended community
// (RFC 4360 two-octet AS, IPv4 address; RFC 5668 four-octet AS).
type Type uint8

const (
	AS2  Type = iota // 2-byte ASN : 4-byte number
	IPv4             // IPv4 address : 2-byte number
	AS4              // 4-byte ASN : 2-byte number
)

// RouteTarget is a route target, as weft.yaml writes it and as it travels
// in BGP. It is comparable and usable as a map key.
type RouteTarget struct {
	Type  Type
	ASN   uint32     // AS2, AS4
	Addr  netip.Addr // IPv4
	Local uint32     // the assigned number
}

// Parse reads a route target in one of the usual notations, with
// or without a "target:" prefix or FRR's display prefix "RT:":
//
//	64512:100          2-byte ASN, number up to 4294967295
//	4200000000:100     4-byte ASN (above 65535), number up to 65535
//	64512L:100         4-byte form of a small ASN (Junos notation)
//	1.10:100           4-byte ASN in asdot notation (RFC 5396)
//	192.0.2.1:100      IPv4 address, number up to 65535
func Parse(s string) (RouteTarget, error) {
	orig := s
	for _, prefix := range []string{"target:", "rt:"} {
		if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
			s = s[len(prefix):]
			break
		}
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return RouteTarget{}, fmt.Errorf("route target %q: want ASN:number or IPv4:number", orig)
	}
	admin, local := s[:i], s[i+1:]
	n, err := strconv.ParseUint(local, 10, 32)
	if err != nil || local == "" || local[0] == '+' {
		return RouteTarget{}, fmt.Errorf("route target %q: %q is not a number in 0..4294967295", orig, local)
	}
	rt := RouteTarget{Local: uint32(n)}
	switch {
	case strings.Count(admin, ".") == 3:
		a, err := netip.ParseAddr(admin)
		if err != nil || !a.Is4() {
			return RouteTarget{}, fmt.Errorf("route target %q: %q is not an IPv4 address", orig, admin)
		}
		if a.IsUnspecified() {
			return RouteTarget{}, fmt.Errorf("route target %q: 0.0.0.0 is not a usable administrator", orig)
		}
		rt.Type, rt.Addr = IPv4, a
	case strings.HasSuffix(admin, "L") || strings.HasSuffix(admin, "l"):
		asn, err := parseASN(admin[:len(admin)-1])
		if err != nil {
			return RouteTarget{}, fmt.Errorf("route target %q: %w", orig, err)
		}
		rt.Type, rt.ASN = AS4, asn
	case strings.Count(admin, ".") == 1:
		hi, lo, _ := strings.Cut(admin, ".")
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil || hi == "" || lo == "" || hi[0] == '+' || lo[0] == '+' {
			return RouteTarget{}, fmt.Errorf("route target %q: %q is not an asdot ASN (0..65535.0..65535)", orig, admin)
		}
		rt.Type, rt.ASN = AS4, uint32(h)<<16|uint32(l)
		if rt.ASN == 0 {
			return RouteTarget{}, fmt.Errorf("route target %q: AS 0 is reserved (RFC 7607)", orig)
		}
	default:
		asn, err := parseASN(admin)
		if err != nil {
			return RouteTarget{}, fmt.Errorf("route target %q: %w", orig, err)
		}
		rt.ASN = asn
		if asn <= 0xffff {
			rt.Type = AS2
		} else {
			rt.Type = AS4
		}
	}
	if rt.Type != AS2 && rt.Local > 0xffff {
		return RouteTarget{}, fmt.Errorf("route target %q: with a 4-byte ASN or an IPv4 address the number must be in 0..65535, not %d", orig, rt.Local)
	}
	return rt, nil
}

func parseASN(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || s == "" || s[0] == '+' {
		return 0, fmt.Errorf("%q is not an ASN (1..4294967295)", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("AS 0 is reserved (RFC 7607)")
	}
	return uint32(n), nil
}

// String writes the route target so that Parse reads it back
// unchanged (without the "target:" prefix).
func (rt RouteTarget) String() string {
	switch rt.Type {
	case IPv4:
		return rt.Addr.String() + ":" + strconv.FormatUint(uint64(rt.Local), 10)
	case AS4:
		if rt.ASN <= 0xffff {
			return strconv.FormatUint(uint64(rt.ASN), 10) + "L:" + strconv.FormatUint(uint64(rt.Local), 10)
		}
	}
	return strconv.FormatUint(uint64(rt.ASN), 10) + ":" + strconv.FormatUint(uint64(rt.Local), 10)
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (rt *RouteTarget) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*rt = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (rt RouteTarget) MarshalText() ([]byte, error) { return []byte(rt.String()), nil }
