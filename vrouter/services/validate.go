package services

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/mtu"
)

// MTU bounds of a workload's link (internal/mtu).
const (
	minMTU = mtu.LinkMin
	maxMTU = mtu.Max
)

// Validate checks p once, when the port is configured, so that Handle can
// trust it. Handle does not call it; it never panics on a PortInfo that
// fails it, but its answers would be wrong.
func (p *PortInfo) Validate() error {
	if p == nil {
		return fmt.Errorf("port info: nil")
	}
	if p.MAC.IsZero() || p.MAC.IsMulticast() {
		return fmt.Errorf("port info: mac %v: want a unicast MAC", p.MAC)
	}
	if p.GatewayMAC.IsZero() || p.GatewayMAC.IsMulticast() {
		return fmt.Errorf("port info: gatewayMAC %v: want a unicast MAC", p.GatewayMAC)
	}
	if p.GatewayMAC == p.MAC {
		return fmt.Errorf("port info: gatewayMAC %v: is the endpoint's MAC", p.GatewayMAC)
	}
	v4 := 0
	for i, a := range p.Addresses {
		ip := a.Addr()
		switch {
		case !a.IsValid():
			return fmt.Errorf("port info: addresses[%d]: invalid prefix", i)
		case ip.Zone() != "" || ip.Is4In6():
			return fmt.Errorf("port info: addresses[%d]: %v: want a plain IPv4 or IPv6 address", i, a)
		case !answerable(ip):
			return fmt.Errorf("port info: addresses[%d]: %v: want a unicast address", i, a)
		}
		if ip.Is4() {
			v4++
		}
	}
	var gw4, gw6 int
	for i, g := range p.Gateways {
		switch {
		case !g.IsValid() || g.Zone() != "" || g.Is4In6():
			return fmt.Errorf("port info: gateways[%d]: %v: want a plain IPv4 or IPv6 address", i, g)
		case !answerable(g):
			return fmt.Errorf("port info: gateways[%d]: %v: want a unicast address", i, g)
		case p.isOwn(g):
			return fmt.Errorf("port info: gateways[%d]: %v: is one of the endpoint's addresses", i, g)
		}
		if g.Is4() {
			gw4++
		} else {
			gw6++
		}
	}
	if gw4 > 1 || gw6 > 1 {
		return fmt.Errorf("port info: gateways: %d IPv4 and %d IPv6, want at most one of each", gw4, gw6)
	}
	if p.MTU != 0 && (p.MTU < minMTU || p.MTU > maxMTU) {
		return fmt.Errorf("port info: mtu %d: want 0 or %d to %d", p.MTU, minMTU, maxMTU)
	}
	for i, d := range p.DNS {
		if !d.IsValid() || d.Zone() != "" || d.Is4In6() || d.IsUnspecified() || d.IsMulticast() {
			return fmt.Errorf("port info: dns[%d]: %v: want a unicast IPv4 or IPv6 address", i, d)
		}
	}
	// One DHCP option holds 255 bytes; a longer name would need RFC 3396
	// splitting, which not every client reassembles.
	for _, s := range []struct{ name, v string }{{"hostname", p.Hostname}, {"domain", p.Domain}} {
		if len(s.v) > 255 || strings.ContainsRune(s.v, 0) {
			return fmt.Errorf("port info: %s %q: want at most 255 bytes and no NUL", s.name, s.v)
		}
	}
	if p.LeaseTime < 0 || p.LeaseTime > math.MaxUint32*time.Second {
		return fmt.Errorf("port info: leaseTime %v: want 0 (24h) up to %v", p.LeaseTime, time.Duration(math.MaxUint32)*time.Second)
	}
	if p.DHCP && (v4 == 0 || gw4 == 0) {
		return fmt.Errorf("port info: dhcp: needs an IPv4 address and an IPv4 gateway (have %d and %d)", v4, gw4)
	}
	return nil
}
