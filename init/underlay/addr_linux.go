package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
)

// applyAddressing reconciles the static addresses and routes of a link,
// its SLAAC setting and its DHCP client. Addresses already right are left
// alone (no flap). What this Manager added earlier and is no longer
// declared is removed only once the new addressing is in place: a link
// whose new configuration fails keeps its old one.
func (m *Manager) applyAddressing(ll *linkLayout, st *linkState, link netlink.Link) ([]string, error) {
	l := ll.Link
	var notes []string
	remember := func() { // on failure: whatever we may have added is ours
		m.mu.Lock()
		for _, p := range l.Addresses {
			if !slices.Contains(st.addrs, p) {
				st.addrs = append(st.addrs, p)
			}
		}
		m.mu.Unlock()
	}

	have, err := m.addrLifetimes(link)
	if err != nil {
		return nil, err
	}
	for _, p := range l.Addresses {
		lft, ok := have[p]
		if ok && lft == infiniteLft {
			continue
		}
		// Missing, or there with a DHCP lease's lifetime (the kernel would
		// drop it at expiry): a static address lives forever.
		if err := m.nl.AddrReplace(link, toNetlinkAddr(p)); err != nil {
			remember()
			return notes, fmt.Errorf("adding address %s to %s: %w", p, ll.Name, err)
		}
	}
	routeNotes, err := m.applyStaticRoutes(st, link, l.Routes)
	notes = append(notes, routeNotes...)
	if err != nil {
		remember()
		return notes, err
	}
	if l.SLAAC {
		if err := m.enableSLAAC(ll.Name); err != nil {
			remember()
			return notes, err
		}
	}

	// The new addressing is in place: drop what is no longer declared.
	m.mu.Lock()
	stale := slices.DeleteFunc(slices.Clone(st.addrs), func(p netip.Prefix) bool { return slices.Contains(l.Addresses, p) })
	st.addrs = slices.Clone(l.Addresses)
	st.dns = slices.Clone(l.DNS)
	c := st.dhcp
	m.mu.Unlock()
	m.delAddrs(link, stale)

	switch {
	case l.DHCP4 && c != nil && c.mtuFixed == (l.MTU > 0):
		// Running with the same settings: keep the lease.
	case l.DHCP4:
		if c != nil {
			c.stop(false, nil) // the new client re-requests the same address: no flap
		}
		nc := m.startDHCP(ll, st)
		m.mu.Lock()
		st.dhcp = nc
		m.mu.Unlock()
	case c != nil:
		// Static now: the lease goes, except an address declared statically
		// too (OpenStack often declares the address DHCP gave).
		c.stop(true, l.Addresses)
		m.mu.Lock()
		st.dhcp = nil
		m.mu.Unlock()
		notes = append(notes, "dhcp stopped: no longer declared")
	}
	return notes, nil
}

// applyStaticRoutes adds the declared routes that are missing and removes
// the ones added earlier and no longer declared. A route whose gateway is
// not reachable yet on a DHCP link waits for the lease.
func (m *Manager) applyStaticRoutes(st *linkState, link netlink.Link, want []config.Route) ([]string, error) {
	var notes []string
	have, err := m.routeSet(link)
	if err != nil {
		return nil, err
	}
	var added, pending []config.Route
	for _, r := range want {
		if have[routeKey(r)] {
			added = append(added, r)
			continue
		}
		note, err := m.addRoute(link, r, unix.RTPROT_STATIC)
		if note != "" {
			notes = append(notes, note)
		}
		if err != nil {
			m.mu.Lock()
			dhcp := st.dhcp != nil || pendingDHCP(m, st)
			m.mu.Unlock()
			if dhcp && errors.Is(err, unix.ENETUNREACH) {
				pending = append(pending, r)
				notes = append(notes, fmt.Sprintf("route %s waits for the DHCP lease", routeString(r)))
				continue
			}
			return notes, fmt.Errorf("adding route %s on %s: %w", routeString(r), link.Attrs().Name, err)
		}
		added = append(added, r)
	}
	m.mu.Lock()
	stale := slices.DeleteFunc(slices.Clone(st.routes), func(r config.Route) bool { return slices.Contains(want, r) })
	st.routes = added
	st.pending = pending
	m.mu.Unlock()
	m.delRoutes(link, stale)
	return notes, nil
}

// pendingDHCP: the layout for st's link asks for DHCP (the client may not
// have been started yet in this pass). Called with m.mu held.
func pendingDHCP(m *Manager, st *linkState) bool {
	if m.layout == nil {
		return false
	}
	ll := m.layout.byID(st.id)
	return ll != nil && ll.Link.DHCP4
}

// retryPendingRoutes adds static routes that waited for a DHCP lease.
func (m *Manager) retryPendingRoutes(name string) {
	m.mu.Lock()
	st := m.links[name]
	var pend []config.Route
	if st != nil {
		pend = slices.Clone(st.pending)
	}
	m.mu.Unlock()
	if len(pend) == 0 {
		return
	}
	link, err := m.nl.LinkByName(name)
	if err != nil {
		return
	}
	var still, done []config.Route
	for _, r := range pend {
		if _, err := m.addRoute(link, r, unix.RTPROT_STATIC); err != nil && !errors.Is(err, unix.EEXIST) {
			m.log.Warn("underlay: static route after lease", "link", name, "route", routeString(r), "err", err)
			still = append(still, r)
			continue
		}
		done = append(done, r)
	}
	m.mu.Lock()
	st.pending = still
	st.routes = append(st.routes, done...)
	m.mu.Unlock()
}

// addRoute adds r via link. A gateway outside every connected subnet is
// retried as on-link (cloud /32 leases); that is reported as a note.
func (m *Manager) addRoute(link netlink.Link, r config.Route, proto netlink.RouteProtocol) (string, error) {
	nr := toNetlinkRoute(link, r, proto)
	err := m.nl.RouteAdd(nr)
	if errors.Is(err, unix.EEXIST) {
		return "", nil
	}
	if errors.Is(err, unix.ENETUNREACH) && r.Gateway.IsValid() && m.onLinkOK(link, r) {
		nr.Flags |= int(netlink.FLAG_ONLINK)
		if err2 := m.nl.RouteAdd(nr); err2 == nil || errors.Is(err2, unix.EEXIST) {
			return fmt.Sprintf("gateway %s is on no connected subnet: route added on-link", r.Gateway), nil
		}
	}
	return "", err
}

// onLinkOK: only a link that has an address of the gateway's family can
// reach a gateway outside its subnets on-link.
func (m *Manager) onLinkOK(link netlink.Link, r config.Route) bool {
	have, err := m.addrSet(link)
	if err != nil {
		return false
	}
	for p := range have {
		if p.Addr().Is4() == r.Gateway.Is4() && !p.Addr().IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

func (m *Manager) delRoutes(link netlink.Link, rs []config.Route) {
	for _, r := range rs {
		if err := m.nl.RouteDel(toNetlinkRoute(link, r, 0)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			m.log.Warn("underlay: removing route", "link", link.Attrs().Name, "route", routeString(r), "err", err)
		}
	}
}

func (m *Manager) delAddrs(link netlink.Link, ps []netip.Prefix) {
	for _, p := range ps {
		if err := m.nl.AddrDel(link, toNetlinkAddr(p)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			m.log.Warn("underlay: removing address", "link", link.Attrs().Name, "prefix", p, "err", err)
		}
	}
}

// addrSet is the set of addresses on link now.
func (m *Manager) addrSet(link netlink.Link) (map[netip.Prefix]bool, error) {
	as, err := m.nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	set := make(map[netip.Prefix]bool, len(as))
	for _, a := range as {
		if p, ok := prefixOf(a.IPNet); ok {
			set[p] = true
		}
	}
	return set, nil
}

// infiniteLft is the valid lifetime the kernel reports for an address
// that never expires.
const infiniteLft = 0xFFFFFFFF

// addrLifetimes maps the addresses on link to their valid lifetime.
func (m *Manager) addrLifetimes(link netlink.Link) (map[netip.Prefix]int, error) {
	as, err := m.nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	set := make(map[netip.Prefix]int, len(as))
	for _, a := range as {
		if p, ok := prefixOf(a.IPNet); ok {
			set[p] = a.ValidLft
		}
	}
	return set, nil
}

// routeSet is the set of main-table routes through link now.
func (m *Manager) routeSet(link netlink.Link) (map[string]bool, error) {
	rs, err := m.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing routes of %s: %w", link.Attrs().Name, err)
	}
	set := make(map[string]bool, len(rs))
	for _, r := range rs {
		if r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		dst, ok := prefixOf(r.Dst)
		if !ok {
			continue
		}
		cr := config.Route{Dst: dst, Metric: r.Priority}
		if gw, ok := netip.AddrFromSlice(r.Gw); ok {
			cr.Gateway = gw.Unmap()
		}
		set[routeKey(cr)] = true
	}
	return set, nil
}

// routeKey identifies a route the way the kernel does (an IPv6 route
// added with metric 0 gets metric 1024).
func routeKey(r config.Route) string {
	metric := r.Metric
	if r.Dst.Addr().Is6() && metric == 0 {
		metric = 1024
	}
	return fmt.Sprintf("%s|%s|%d", r.Dst.Masked(), r.Gateway, metric)
}

func routeString(r config.Route) string {
	s := r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 || (a.Is4() && bits != 32) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// toNetlinkAddr: an IPv4 address with its subnet's broadcast (as
// `ip addr add ... brd +`), an IPv6 address as is.
func toNetlinkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: toIPNet(p)}
	if p.Addr().Is4() && p.Bits() <= 30 {
		a.Broadcast = lastAddr(p).AsSlice()
	}
	return a
}

func toNetlinkRoute(link netlink.Link, r config.Route, proto netlink.RouteProtocol) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       toIPNet(r.Dst.Masked()),
		Priority:  r.Metric,
		Protocol:  proto,
		Table:     unix.RT_TABLE_MAIN,
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr
}

// enableSLAAC lets the kernel configure IPv6 addresses from router
// advertisements on the link, also when forwarding is on (accept_ra=2).
func (m *Manager) enableSLAAC(name string) error {
	return m.inNS(func() error {
		for k, v := range map[string]string{"accept_ra": "2", "autoconf": "1"} {
			p := "/proc/sys/net/ipv6/conf/" + name + "/" + k
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				return fmt.Errorf("enabling SLAAC on %s: %w", name, err)
			}
		}
		return nil
	})
}

// writeResolv writes resolv.conf from the declared DNS and the leases:
// the underlay's own servers first, then per-link, then DHCP's. It is not
// touched until some source names a server or a domain.
func (m *Manager) writeResolv() {
	m.mu.Lock()
	servers := slices.Clone(m.global.DNS)
	search := slices.Clone(m.global.Search)
	var order []*linkState
	if m.layout != nil {
		for _, ll := range m.layout.Links {
			if st := m.links[ll.Name]; st != nil && ll.Name != "" && !slices.Contains(order, st) {
				order = append(order, st)
			}
		}
	}
	for _, st := range m.links {
		if !slices.Contains(order, st) {
			order = append(order, st)
		}
	}
	for _, st := range order {
		servers = append(servers, st.dns...)
	}
	for _, st := range order {
		if st.dhcp == nil {
			continue
		}
		if l := st.dhcp.currentLease(); l != nil {
			servers = append(servers, l.DNS...)
			if l.Domain != "" {
				search = append(search, l.Domain)
			}
		}
	}
	if len(servers) == 0 && len(search) == 0 && !m.resolvOn {
		m.mu.Unlock()
		return
	}
	m.resolvOn = true
	path := m.resolvPath
	m.mu.Unlock()
	if _, err := writeIfChanged(path, resolvConf(servers, search)); err != nil {
		m.log.Warn("underlay: writing resolv.conf", "path", path, "err", err)
	}
}

// Status returns every declared link of the last Apply (and links kept
// from an earlier one) with its live MTU and addresses.
func (m *Manager) Status() []LinkStatus {
	m.mu.Lock()
	type row struct {
		id, name string
		kind     config.LinkKind
		st       *linkState
		v        verdict
	}
	var rows []row
	used := map[*linkState]bool{}
	if m.layout != nil {
		for _, ll := range m.layout.Links {
			r := row{id: ll.ID, name: ll.Name, kind: ll.Link.Kind, v: m.verdicts[ll.ID]}
			if st := m.links[ll.Name]; st != nil && ll.Name != "" {
				r.st = st
				used[st] = true
			}
			rows = append(rows, r)
		}
	}
	for _, st := range m.links {
		if !used[st] {
			rows = append(rows, row{id: st.id, name: st.name, kind: st.kind, st: st, v: m.verdicts[st.id]})
		}
	}
	m.mu.Unlock()

	out := make([]LinkStatus, 0, len(rows))
	for _, r := range rows {
		s := LinkStatus{ID: r.id, Name: r.name, Kind: r.kind, Verdict: r.v.v, Detail: r.v.detail}
		if r.st != nil && r.st.dhcp != nil {
			s.Lease = r.st.dhcp.currentLease()
		}
		if r.name != "" {
			if link, err := m.nl.LinkByName(r.name); err == nil {
				a := link.Attrs()
				s.MAC = a.HardwareAddr.String()
				s.MTU = a.MTU
				s.Up = a.Flags&net.FlagUp != 0
				if set, err := m.addrSet(link); err == nil {
					for p := range set {
						s.Addresses = append(s.Addresses, p)
					}
					slices.SortFunc(s.Addresses, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// DefaultUnderlay is the underlay of a node without network
// configuration: DHCP on the NIC named by BOOTIF (PXE), else on every
// physical NIC (not loopback, not virtual links).
func DefaultUnderlay(bootif net.HardwareAddr) (config.Underlay, error) {
	var links []netlink.Link
	var err error
	for range 3 {
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return config.Underlay{}, fmt.Errorf("listing links: %w", err)
	}
	host := toHostLinks(links)
	for i := range host {
		_, err := os.Stat("/sys/class/net/" + host[i].Name + "/device")
		host[i].Phys = err == nil
	}
	return defaultUnderlay(bootif, host)
}
