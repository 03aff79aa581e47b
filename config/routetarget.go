package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/routetarget"
)

// RouteTarget is a parsed route target (internal/routetarget: the one type
// config and the BGP speaker share).
type RouteTarget = routetarget.RouteTarget

// ParseRouteTarget reads a route target (routetarget.Parse).
func ParseRouteTarget(s string) (RouteTarget, error) { return routetarget.Parse(s) }

// PortRange is an inclusive range of ports; a single port has From == To.
type PortRange struct {
	From, To uint16
}

// ParsePortRange reads "8000" or "8000-8080".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	from, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{from, from}, nil
	}
	to, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if to < from {
		return PortRange{}, fmt.Errorf("port range %q: %d is above %d", s, from, to)
	}
	return PortRange{from, to}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || s == "" || s[0] == '+' || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1..65535) or a range a-b", s)
	}
	return uint16(n), nil
}

func (p PortRange) String() string {
	if p.From == p.To {
		return strconv.Itoa(int(p.From))
	}
	return strconv.Itoa(int(p.From)) + "-" + strconv.Itoa(int(p.To))
}

// Contains reports whether port is in the range.
func (p PortRange) Contains(port uint16) bool { return p.From <= port && port <= p.To }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *PortRange) UnmarshalText(b []byte) error {
	v, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (p PortRange) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText accepts the known tunnel types only.
func (e *Encapsulation) UnmarshalText(b []byte) error {
	switch v := Encapsulation(strings.ToLower(string(b))); v {
	case EncapMPLSoUDP, EncapMPLSoGRE, EncapVXLAN:
		*e = v
		return nil
	}
	return fmt.Errorf("%q is not an encapsulation (mplsoudp, mplsogre, vxlan)", b)
}

// UnmarshalText accepts tcp, udp, icmp and any.
func (p *Protocol) UnmarshalText(b []byte) error {
	switch v := Protocol(strings.ToLower(string(b))); v {
	case ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP:
		*p = v
		return nil
	}
	return fmt.Errorf("%q is not a protocol (tcp, udp, icmp, any)", b)
}
