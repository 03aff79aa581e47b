package underlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/weftnet/weft/config"
)

// Lease is a DHCPv4 lease as applied to a link.
type Lease struct {
	Address   netip.Prefix   `json:"address"`            // yiaddr with option 1's mask
	Broadcast netip.Addr     `json:"broadcast,omitzero"` // option 28, else computed
	Server    netip.Addr     `json:"server,omitzero"`    // option 54
	Routers   []netip.Addr   `json:"routers,omitempty"`  // option 3
	Routes    []config.Route `json:"routes,omitempty"`   // installed: option 121, else default via the first router
	DNS       []netip.Addr   `json:"dns,omitempty"`      // option 6
	Domain    string         `json:"domain,omitempty"`   // option 15
	Hostname  string         `json:"hostname,omitempty"` // option 12
	MTU       int            `json:"mtu,omitempty"`      // option 26, at least config.MinMTU; 0 when absent
	Duration  time.Duration  `json:"duration"`           // option 51; 0 means infinite
	T1        time.Duration  `json:"t1"`                 // renewal (option 58, default Duration/2)
	T2        time.Duration  `json:"t2"`                 // rebinding (option 59, default Duration*7/8)
	Obtained  time.Time      `json:"obtained"`           // when the ACK arrived
	Notes     []string       `json:"notes,omitempty"`    // what was odd about the lease and how it was read
	ack       *dhcpv4.DHCPv4 // for renewal
	offer     *dhcpv4.DHCPv4 // for renewal (nclient4 matches the server id of the offer)
}

// defaultLeaseTime is used when an ACK has no option 51 (RFC 2131 makes it
// mandatory; some servers forget it).
const defaultLeaseTime = time.Hour

// requestedOptions are asked for in every DISCOVER and REQUEST.
var requestedOptions = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask,           // 1
	dhcpv4.OptionRouter,               // 3
	dhcpv4.OptionDomainNameServer,     // 6
	dhcpv4.OptionHostName,             // 12
	dhcpv4.OptionDomainName,           // 15
	dhcpv4.OptionInterfaceMTU,         // 26
	dhcpv4.OptionBroadcastAddress,     // 28
	dhcpv4.OptionIPAddressLeaseTime,   // 51
	dhcpv4.OptionServerIdentifier,     // 54
	dhcpv4.OptionClasslessStaticRoute, // 121
	dhcpv4.OptionRenewTimeValue,       // 58
	dhcpv4.OptionRebindingTimeValue,   // 59
}

// Expiry is when the lease ends (zero for an infinite lease).
func (l *Lease) Expiry() time.Time {
	if l.Duration == 0 {
		return time.Time{}
	}
	return l.Obtained.Add(l.Duration)
}

// unicastV4 converts ip to a netip.Addr if it is a usable IPv4 unicast address.
func unicastV4(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a.IsLoopback() {
		return netip.Addr{}, false
	}
	return a, true
}

// leaseFromACK reads a lease from a DHCPACK received at now. It fails only
// when the ACK gives no usable address; odd but usable options become Notes.
func leaseFromACK(ack *dhcpv4.DHCPv4, now time.Time) (*Lease, error) {
	if ack == nil {
		return nil, errors.New("no ACK")
	}
	l := &Lease{Obtained: now, ack: ack}
	addr, ok := unicastV4(ack.YourIPAddr)
	if !ok {
		return nil, fmt.Errorf("ACK yiaddr %v is not a usable IPv4 address", ack.YourIPAddr)
	}

	// Option 1; without it the classful mask (RFC 2131 leaves it to the client).
	bits := -1
	if raw := ack.Options.Get(dhcpv4.OptionSubnetMask); raw != nil {
		if len(raw) == 4 {
			ones, size := net.IPMask(raw).Size()
			if size == 32 && ones > 0 {
				bits = ones
			} else {
				l.Notes = append(l.Notes, fmt.Sprintf("option 1 mask %v is not contiguous; classful mask used", net.IP(raw)))
			}
		} else {
			l.Notes = append(l.Notes, fmt.Sprintf("option 1 has %d bytes, want 4; classful mask used", len(raw)))
		}
	}
	if bits < 0 {
		ones, _ := net.IP(ack.YourIPAddr.To4()).DefaultMask().Size()
		bits = ones
		if ack.Options.Get(dhcpv4.OptionSubnetMask) == nil {
			l.Notes = append(l.Notes, fmt.Sprintf("no option 1; classful /%d used", bits))
		}
	}
	l.Address = netip.PrefixFrom(addr, bits)

	// Option 28, else the subnet's all-ones address (none for /31 and /32).
	if b, ok := unicastOrBcast(ack.BroadcastAddress()); ok {
		l.Broadcast = b
	} else if bits <= 30 {
		l.Broadcast = lastAddr(l.Address)
	}

	if s, ok := unicastV4(ack.ServerIdentifier()); ok {
		l.Server = s
	}
	for _, r := range ack.Router() {
		if a, ok := unicastV4(r); ok {
			l.Routers = append(l.Routers, a)
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := unicastV4(d); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	l.Domain = ack.DomainName()
	l.Hostname = ack.HostName()

	// Option 26: two bytes.
	if raw := ack.Options.Get(dhcpv4.OptionInterfaceMTU); raw != nil {
		if len(raw) != 2 {
			l.Notes = append(l.Notes, fmt.Sprintf("option 26 has %d bytes, want 2; ignored", len(raw)))
		} else {
			// 16 bits never exceed config.MaxMTU; below config.MinMTU the
			// server is broken. A value the NIC cannot carry is refused
			// when bind sets it, and the link keeps its MTU.
			mtu := int(binary.BigEndian.Uint16(raw))
			if mtu < config.MinMTU {
				l.Notes = append(l.Notes, fmt.Sprintf("mtu %d from DHCP raised to %d", mtu, config.MinMTU))
				mtu = config.MinMTU
			}
			l.MTU = mtu
		}
	}

	// Option 121 overrides option 3 when present (RFC 3442 section 2).
	if raw := ack.Options.Get(dhcpv4.OptionClasslessStaticRoute); raw != nil {
		routes, err := classlessRoutes(raw)
		if err != nil {
			l.Notes = append(l.Notes, fmt.Sprintf("option 121 ignored: %v", err))
		} else {
			l.Routes = routes
			if len(l.Routers) > 0 {
				l.Notes = append(l.Notes, "option 121 present: option 3 routers not used for routes (RFC 3442)")
			}
		}
	}
	if l.Routes == nil && len(l.Routers) > 0 {
		l.Routes = []config.Route{{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: l.Routers[0]}}
	}

	// Lease time and timers; T1 < T2 < lease (RFC 2131 4.4.5).
	const infinite = time.Duration(math.MaxUint32) * time.Second
	d := ack.IPAddressLeaseTime(0)
	switch {
	case d == infinite:
		d = 0
	case d <= 0:
		d = defaultLeaseTime
		l.Notes = append(l.Notes, fmt.Sprintf("no option 51; lease taken as %s", defaultLeaseTime))
	}
	l.Duration = d
	if d > 0 {
		t1 := ack.IPAddressRenewalTime(d / 2)
		t2 := ack.IPAddressRebindingTime(d * 7 / 8)
		if t1 <= 0 || t2 <= 0 || t1 >= t2 || t2 >= d {
			if ack.Options.Get(dhcpv4.OptionRenewTimeValue) != nil || ack.Options.Get(dhcpv4.OptionRebindingTimeValue) != nil {
				l.Notes = append(l.Notes, fmt.Sprintf("T1 %s / T2 %s inconsistent with lease %s; defaults used", t1, t2, d))
			}
			t1, t2 = d/2, d*7/8
		}
		l.T1, l.T2 = t1, t2
	}
	return l, nil
}

// classlessRoutes parses option 121 (RFC 3442). A router of 0.0.0.0 means
// the destination is on the link. Destinations with host bits set are
// rejected as the RFC asks of clients.
func classlessRoutes(raw []byte) ([]config.Route, error) {
	var routes []config.Route
	for i := 0; i < len(raw); {
		bits := int(raw[i])
		if bits > 32 {
			return nil, fmt.Errorf("byte %d: prefix length %d > 32", i, bits)
		}
		n := (bits + 7) / 8
		if i+1+n+4 > len(raw) {
			return nil, fmt.Errorf("byte %d: route truncated (need %d bytes, have %d)", i, 1+n+4, len(raw)-i)
		}
		var dst [4]byte
		copy(dst[:], raw[i+1:i+1+n])
		var gw [4]byte
		copy(gw[:], raw[i+1+n:i+1+n+4])
		p := netip.PrefixFrom(netip.AddrFrom4(dst), bits)
		if p.Masked() != p {
			return nil, fmt.Errorf("byte %d: destination %s has host bits set", i, p)
		}
		r := config.Route{Dst: p}
		if g := netip.AddrFrom4(gw); !g.IsUnspecified() {
			if _, ok := unicastV4(g.AsSlice()); !ok {
				return nil, fmt.Errorf("byte %d: router %s is not a unicast address", i, g)
			}
			r.Gateway = g
		}
		routes = append(routes, r)
		i += 1 + n + 4
	}
	if len(routes) == 0 {
		return nil, errors.New("no routes")
	}
	return routes, nil
}

func unicastOrBcast(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || !a.Is4() || a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}

// lastAddr is the all-ones host address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (uint32(math.MaxUint32) >> p.Bits())
	if p.Bits() == 0 {
		v = math.MaxUint32
	}
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// sameBinding reports whether two leases put the same address, routes and
// MTU on the link (a renewal usually does).
func sameBinding(a, b *Lease) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Address != b.Address || a.Broadcast != b.Broadcast || a.MTU != b.MTU || len(a.Routes) != len(b.Routes) {
		return false
	}
	for i := range a.Routes {
		if a.Routes[i] != b.Routes[i] {
			return false
		}
	}
	return true
}

// backoff returns the wait before discovery attempt n (0-based): 1 s
// doubling to 30 s, with ±20% jitter from j in [0,1) so that a rack of
// nodes powered on together does not retry in step.
func backoff(n int, j float64) time.Duration {
	d := time.Second << min(n, 5)
	d = min(d, 30*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*j))
}

// retryIn is how long to wait before the next renewal or rebinding
// attempt when until is left before the next deadline: half of it
// (RFC 2131 4.4.5), at least 1 s, at most 60 s.
func retryIn(until time.Duration) time.Duration {
	return min(max(until/2, time.Second), 60*time.Second)
}
