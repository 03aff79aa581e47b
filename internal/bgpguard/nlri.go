package bgpguard

import (
	"fmt"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// The guard's NLRI validators: each family's prefixes decoded the way
// GoBGP's decoders will, so that one that would overrun is refused first.

// prefixKind decodes one NLRI of a family, the way GoBGP does; it
// returns the NLRI's length or why it is malformed.
type prefixKind func(b []byte, prefixSID bool) (int, error)

func plainPrefix(addrBits int) prefixKind {
	return func(b []byte, _ bool) (int, error) {
		bits := int(b[0])
		if bits > addrBits {
			return 0, fmt.Errorf("prefix length %d beyond %d bits", bits, addrBits)
		}
		n := 1 + (bits+7)/8
		if n > len(b) {
			return 0, fmt.Errorf("prefix length %d needs %d bytes, %d left", bits, n-1, len(b)-1)
		}
		return n, nil
	}
}

// labelled decodes labelled unicast (rdLen 0) and VPN (rdLen 8) prefixes.
func labelled(addrBits, rdLen int) prefixKind {
	return func(b []byte, prefixSID bool) (int, error) {
		bits := int(b[0])
		n := 1 + (bits+7)/8
		if n > len(b) {
			if rdLen > 0 {
				return 0, fmt.Errorf("prefix length %d bits needs %d bytes (labels, %d-byte route distinguisher, prefix), %d left", bits, n-1, rdLen, len(b)-1)
			}
			return 0, fmt.Errorf("prefix length %d bits needs %d bytes (labels, prefix), %d left", bits, n-1, len(b)-1)
		}
		own := b[1:n]
		labels := 0
		for done := false; !done; {
			if 3*labels+3 > len(own) {
				return 0, fmt.Errorf("prefix length %d bits: label stack without bottom-of-stack within the prefix", bits)
			}
			l := own[3*labels:]
			raw := uint32(l[0])<<16 | uint32(l[1])<<8 | uint32(l[2])
			labels++
			switch {
			case raw == 0x800000 || raw == 0:
				// GoBGP stops at these withdrawal values, keeping
				// only that label: only as the first one does its
				// reading agree with the bytes.
				if labels > 1 {
					return 0, fmt.Errorf("label %d of the stack is the reserved value %#06x", labels, raw)
				}
				done = true
			case prefixSID, raw&1 == 1:
				// With PREFIX_SID, GoBGP takes one label, whatever
				// its bottom-of-stack bit says.
				done = true
			}
		}
		rest := bits - 24*labels - 8*rdLen
		if rest < 0 {
			if rdLen > 0 {
				return 0, fmt.Errorf("prefix length %d bits leaves %d bytes after %d label(s) for an %d-byte route distinguisher", bits, max(0, len(own)-3*labels), labels, rdLen)
			}
			return 0, fmt.Errorf("prefix length %d bits shorter than its %d label(s)", bits, labels)
		}
		if rest > addrBits {
			return 0, fmt.Errorf("prefix length %d bits: %d address bits beyond %d", bits, rest, addrBits)
		}
		return n, nil
	}
}

// evpnLen is the exact length of each EVPN route type (RFC 7432 7, RFC
// 9136 3.1), by the IP address length it carries.
func evpnPrefix(b []byte, _ bool) (int, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("EVPN route: %d bytes, shorter than type and length", len(b))
	}
	typ, l := b[0], int(b[1])
	if 2+l > len(b) {
		return 0, fmt.Errorf("EVPN route type %d of length %d: %d bytes left", typ, l, len(b)-2)
	}
	v := b[2 : 2+l]
	ipLenOK := func(ipLen byte, want int) bool {
		switch ipLen {
		case 32:
			return want == 4
		case 128:
			return want == 16
		}
		return false
	}
	switch typ {
	case 1: // RD, ESI, Ethernet tag, label
		if l != 25 {
			return 0, fmt.Errorf("EVPN Ethernet A-D route of length %d, want 25", l)
		}
	case 2: // RD, ESI, tag, MAC length, MAC, IP length, IP, 1 or 2 labels
		if l < 33 {
			return 0, fmt.Errorf("EVPN MAC/IP route of length %d, want 33 or more", l)
		}
		if v[22] != 48 {
			return 0, fmt.Errorf("EVPN MAC/IP route: MAC length %d bits, want 48", v[22])
		}
		ip := 0
		switch v[29] {
		case 0:
		case 32:
			ip = 4
		case 128:
			ip = 16
		default:
			return 0, fmt.Errorf("EVPN MAC/IP route: IP length %d bits, want 0, 32 or 128", v[29])
		}
		if l != 33+ip && l != 36+ip {
			return 0, fmt.Errorf("EVPN MAC/IP route of length %d with a %d-byte IP, want %d or %d", l, ip, 33+ip, 36+ip)
		}
	case 3: // RD, tag, IP length, IP
		if (l != 17 && l != 29) || !ipLenOK(v[12], l-13) {
			return 0, fmt.Errorf("EVPN inclusive multicast route of length %d (IP length field %d), want 17 (IPv4) or 29 (IPv6)", l, byteAt(v, 12))
		}
	case 4: // RD, ESI, IP length, IP
		if (l != 23 && l != 35) || !ipLenOK(v[18], l-19) {
			return 0, fmt.Errorf("EVPN Ethernet segment route of length %d (IP length field %d), want 23 (IPv4) or 35 (IPv6)", l, byteAt(v, 18))
		}
	case 5: // RD, ESI, tag, prefix length, prefix, gateway, label
		switch l {
		case 34:
			if v[22] > 32 {
				return 0, fmt.Errorf("EVPN IP prefix route: IPv4 prefix length %d", v[22])
			}
		case 58:
			if v[22] > 128 {
				return 0, fmt.Errorf("EVPN IP prefix route: IPv6 prefix length %d", v[22])
			}
		default:
			return 0, fmt.Errorf("EVPN IP prefix route of length %d, want 34 (IPv4) or 58 (IPv6)", l)
		}
	default:
		// GoBGP refuses other route types cleanly.
	}
	return 2 + l, nil
}

// rtcPrefix is a route target membership NLRI (RFC 4684 4): a prefix
// length of 0 (the default membership) or 32..96 bits (origin AS, then
// the route target or a prefix of it).
func rtcPrefix(b []byte, _ bool) (int, error) {
	bits := int(b[0])
	if bits != 0 && (bits < 32 || bits > 96) {
		return 0, fmt.Errorf("route target membership of %d bits, want 0 or 32..96", bits)
	}
	n := 1 + (bits+7)/8
	if n > len(b) {
		return 0, fmt.Errorf("route target membership of %d bits needs %d bytes, %d left", bits, n-1, len(b)-1)
	}
	return n, nil
}

func byteAt(b []byte, i int) int {
	if i < len(b) {
		return int(b[i])
	}
	return -1
}

// nlriKinds are the families whose NLRI the guard checks; a negotiated
// family outside this list is refused rather than passed unchecked.
var nlriKinds = map[bgp.RouteFamily]struct {
	prefix prefixKind
	nhVPN  bool // next hops carry an 8-byte RD
}{
	bgp.RF_IPv4_UC:   {plainPrefix(32), false},
	bgp.RF_IPv6_UC:   {plainPrefix(128), false},
	bgp.RF_IPv4_MC:   {plainPrefix(32), false},
	bgp.RF_IPv6_MC:   {plainPrefix(128), false},
	bgp.RF_IPv4_MPLS: {labelled(32, 0), false},
	bgp.RF_IPv6_MPLS: {labelled(128, 0), false},
	bgp.RF_IPv4_VPN:  {labelled(32, 8), true},
	bgp.RF_IPv6_VPN:  {labelled(128, 8), true},
	bgp.RF_EVPN:      {evpnPrefix, false},
	bgp.RF_RTC_UC:    {rtcPrefix, false},
}

// checkPrefixes walks a run of NLRI that must fill b exactly.
func checkPrefixes(b []byte, kind prefixKind, addPath, prefixSID bool) error {
	for i := 0; len(b) > 0; i++ {
		start := b
		if addPath {
			if len(b) < 4 {
				return fmt.Errorf("NLRI %d: %d bytes, shorter than its ADD-PATH identifier", i, len(b))
			}
			b = b[4:]
			if len(b) == 0 {
				return fmt.Errorf("NLRI %d: nothing after its ADD-PATH identifier", i)
			}
		}
		n, err := kind(b, prefixSID)
		if err != nil {
			return fmt.Errorf("NLRI %d (%s): %w", i, excerpt(start), err)
		}
		b = b[n:]
	}
	return nil
}

// knownToGoBGP reports whether GoBGP's parser decodes NLRI of the family
// (bgp.NewPrefixFromRouteFamily is the switch it uses).
func knownToGoBGP(afi uint16, safi uint8) bool {
	_, err := bgp.NewPrefixFromRouteFamily(afi, safi)
	return err == nil
}
