package underlay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
)

// dhcpClient keeps a DHCPv4 lease on one link: discovery with backoff,
// renewal at T1 (unicast to the server), rebinding at T2 (broadcast), and
// on expiry or NAK the address is removed and discovery starts again.
type dhcpClient struct {
	m        *Manager
	id       string // declared link id
	name     string // kernel name
	mtuFixed bool   // the config sets the MTU: option 26 is not applied
	metric   int    // of the routes from the lease
	started  time.Time

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	lease  *Lease // applied to the link; nil when none
	routes []config.Route
}

// dhcpMetric keeps the routes of several DHCP links apart (two default
// routes with one metric would clash); the first link's routes win.
func dhcpMetric(p *layout, id string) int {
	n := 0
	for _, ll := range p.Links {
		if ll.ID == id {
			break
		}
		if ll.Link.DHCP4 {
			n++
		}
	}
	return 100 + n
}

func (m *Manager) startDHCP(ll *linkLayout, st *linkState) *dhcpClient {
	ctx, cancel := context.WithCancel(m.ctx)
	m.mu.Lock()
	metric := dhcpMetric(m.layout, ll.ID)
	m.mu.Unlock()
	c := &dhcpClient{
		m: m, id: ll.ID, name: ll.Name, mtuFixed: ll.Link.MTU > 0, metric: metric,
		started: time.Now(), cancel: cancel, done: make(chan struct{}),
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(c.done)
		c.run(ctx)
	}()
	return c
}

// stop ends the client and waits for it; with drop, its address (unless
// in keep) and routes are removed from the link.
func (c *dhcpClient) stop(drop bool, keep []netip.Prefix) {
	c.cancel()
	<-c.done
	if drop {
		c.unbind(steps.Skipped, "dhcp stopped on "+c.name+": no longer declared", keep)
	}
}

func (c *dhcpClient) currentLease() *Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease
}

func (c *dhcpClient) report(v steps.Verdict, detail string, attrs ...any) {
	c.m.report(StepDHCP, v, detail, append([]any{"link", c.name}, attrs...)...)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *dhcpClient) run(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; {
		nl, err := c.discover(ctx)
		if err == nil {
			var l *Lease
			if l, err = leaseFromACK(nl.ACK, time.Now()); err == nil {
				l.offer = nl.Offer
				if err = c.bind(l); err == nil {
					attempt = 0
					c.maintain(ctx)
					continue
				}
			}
			err = fmt.Errorf("lease from %s unusable: %w", nl.ACK.ServerIdentifier(), err)
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff(attempt, rand.Float64())
		attempt++
		c.report(steps.Waiting, fmt.Sprintf("no DHCP lease on %s yet (attempt %d: %v); retrying in %s",
			c.name, attempt, err, wait.Round(100*time.Millisecond)))
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// iface returns the link's current MAC (a bond's follows its members).
func (c *dhcpClient) iface() (netlink.Link, error) {
	link, err := c.m.nl.LinkByName(c.name)
	if err != nil {
		return nil, err
	}
	if len(link.Attrs().HardwareAddr) == 0 {
		return nil, fmt.Errorf("%s has no hardware address", c.name)
	}
	return link, nil
}

// rawClient is an nclient4 client on a packet socket of the link: it works
// before the link has an address and broadcasts every message.
func (c *dhcpClient) rawClient(timeout time.Duration, retries int) (*nclient4.Client, error) {
	link, err := c.iface()
	if err != nil {
		return nil, err
	}
	var conn net.PacketConn
	if err := c.m.inNS(func() (err error) {
		conn, err = nclient4.NewRawUDPConn(c.name, nclient4.ClientPort)
		return err
	}); err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", c.name, err)
	}
	cl, err := nclient4.NewWithConn(conn, link.Attrs().HardwareAddr,
		nclient4.WithTimeout(timeout), nclient4.WithRetry(retries), nclient4.WithLogger(dhcpLog{c}))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return cl, nil
}

// unicastClient is an nclient4 client on a UDP socket bound to the leased
// address on the link, sending to the server: RENEWING (RFC 2131 4.4.5).
func (c *dhcpClient) unicastClient(l *Lease, timeout time.Duration) (*nclient4.Client, error) {
	link, err := c.iface()
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.name)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var conn net.PacketConn
	laddr := netip.AddrPortFrom(l.Address.Addr(), nclient4.ClientPort).String()
	if err := c.m.inNS(func() (err error) {
		conn, err = lc.ListenPacket(context.Background(), "udp4", laddr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("udp socket %s on %s: %w", laddr, c.name, err)
	}
	cl, err := nclient4.NewWithConn(conn, link.Attrs().HardwareAddr,
		nclient4.WithServerAddr(&net.UDPAddr{IP: l.Server.AsSlice(), Port: nclient4.ServerPort}),
		nclient4.WithTimeout(timeout), nclient4.WithRetry(1), nclient4.WithLogger(dhcpLog{c}))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return cl, nil
}

// discover runs DISCOVER/OFFER/REQUEST/ACK, retransmitting after
// dhcpTimeout, then twice that.
func (c *dhcpClient) discover(ctx context.Context) (*nclient4.Lease, error) {
	cl, err := c.rawClient(c.m.dhcpTimeout, 2)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	nl, err := cl.Request(ctx, dhcpv4.WithRequestedOptions(requestedOptions...))
	if errors.Is(err, nclient4.ErrNoResponse) {
		return nil, errors.New("no offer")
	}
	return nl, err
}

// renew sends a REQUEST for the current lease: unicast to its server
// (RENEWING) or broadcast (REBINDING), one attempt of at most timeout.
func (c *dhcpClient) renew(ctx context.Context, l *Lease, unicast bool, timeout time.Duration) (*Lease, error) {
	var cl *nclient4.Client
	var err error
	if unicast && l.Server.IsValid() {
		cl, err = c.unicastClient(l, timeout)
	} else {
		cl, err = c.rawClient(timeout, 1)
	}
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	xid, err := dhcpv4.GenerateTransactionID()
	if err != nil {
		return nil, err
	}
	offer := l.offer
	if offer == nil {
		offer = l.ack
	}
	nl, err := cl.Renew(ctx, &nclient4.Lease{Offer: offer, ACK: l.ack},
		dhcpv4.WithRequestedOptions(requestedOptions...), dhcpv4.WithTransactionID(xid))
	if err != nil {
		return nil, err
	}
	nlease, err := leaseFromACK(nl.ACK, time.Now())
	if err != nil {
		return nil, err
	}
	nlease.offer = offer
	return nlease, nil
}

// maintain keeps the bound lease: renew from T1, rebind from T2, give it
// up at expiry or on a NAK. It returns when the lease is gone or ctx ends.
func (c *dhcpClient) maintain(ctx context.Context) {
	for {
		l := c.currentLease()
		if l == nil {
			return
		}
		if l.Duration == 0 { // infinite lease
			<-ctx.Done()
			return
		}
		t1, t2, exp := l.Obtained.Add(l.T1), l.Obtained.Add(l.T2), l.Expiry()
		if !sleepCtx(ctx, time.Until(t1)) {
			return
		}
		renewed := false
		for _, phase := range []struct {
			until   time.Time
			unicast bool
		}{{t2, true}, {exp, false}} {
			for !renewed {
				// An attempt never runs past its phase: renewing must leave
				// time to rebind, and rebinding ends at expiry.
				left := time.Until(phase.until)
				if left < 100*time.Millisecond {
					break
				}
				nl, err := c.renew(ctx, l, phase.unicast, min(max(left/2, 500*time.Millisecond), 4*time.Second, left))
				if ctx.Err() != nil {
					return
				}
				var nak *nclient4.ErrNak
				switch {
				case err == nil:
					if err = c.bind(nl); err == nil {
						renewed = true
						continue
					}
					c.unbind(steps.Waiting, fmt.Sprintf("renewed lease unusable: %v; rediscovering", err), nil)
					return
				case errors.As(err, &nak):
					c.unbind(steps.Waiting, fmt.Sprintf("server %s refused the renewal (NAK); rediscovering", l.Server), nil)
					return
				}
				what := "renewal"
				if !phase.unicast {
					what = "rebinding"
				}
				c.m.log.Warn("underlay: dhcp "+what+" failed", "link", c.name, "err", err)
				if !sleepCtx(ctx, min(retryIn(time.Until(phase.until)), time.Until(phase.until))) {
					return
				}
			}
		}
		if !renewed {
			c.unbind(steps.Waiting, fmt.Sprintf("lease %s expired without renewal; rediscovering", l.Address), nil)
			return
		}
	}
}

// bind applies a lease: MTU from option 26 first (before any address),
// then the address with the lease's lifetime (the kernel drops it at
// expiry even if this process cannot), then routes and DNS.
func (c *dhcpClient) bind(l *Lease) error {
	link, err := c.m.nl.LinkByName(c.name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	old, oldRoutes := c.lease, c.routes
	c.mu.Unlock()
	notes := slices.Clone(l.Notes)

	mtu := link.Attrs().MTU
	if l.MTU > 0 {
		switch {
		case c.mtuFixed:
			notes = append(notes, fmt.Sprintf("mtu %d from DHCP not applied: the config sets mtu %d", l.MTU, mtu))
		default:
			want, limit := l.MTU, 0
			if v, ok := link.(*netlink.Vlan); ok {
				if p, err := c.m.nl.LinkByIndex(v.ParentIndex); err == nil {
					limit = p.Attrs().MTU
				}
			}
			note, err := c.m.setMTU(link, want, 0, limit)
			if note != "" {
				notes = append(notes, note)
			}
			if err != nil {
				notes = append(notes, fmt.Sprintf("mtu %d from DHCP not applied: %v", want, err))
			} else {
				mtu = want
				if limit > 0 {
					mtu = min(want, limit)
				}
				notes = append(notes, fmt.Sprintf("mtu %d from DHCP", l.MTU))
			}
		}
	}
	if err := c.m.setUp(link); err != nil {
		return err
	}

	a := toNetlinkAddr(l.Address)
	if l.Broadcast.IsValid() {
		a.Broadcast = l.Broadcast.AsSlice()
	}
	if l.Duration > 0 {
		secs := int(l.Duration / time.Second)
		a.ValidLft, a.PreferedLft = secs, secs
	}
	if err := c.m.nl.AddrReplace(link, a); err != nil {
		return fmt.Errorf("adding %s to %s: %w", l.Address, c.name, err)
	}
	if old != nil && old.Address != l.Address {
		c.m.delRoutes(link, oldRoutes)
		c.m.delAddrs(link, []netip.Prefix{old.Address})
		oldRoutes = nil
	}

	// On-link routes first: a gateway may be reachable only through one.
	routes := slices.Clone(l.Routes)
	slices.SortStableFunc(routes, func(a, b config.Route) int {
		if a.Gateway.IsValid() == b.Gateway.IsValid() {
			return 0
		}
		if !a.Gateway.IsValid() {
			return -1
		}
		return 1
	})
	var installed []config.Route
	for _, r := range routes {
		r.Metric = c.metric
		nr := toNetlinkRoute(link, r, unix.RTPROT_DHCP)
		err := c.m.nl.RouteReplace(nr)
		if errors.Is(err, unix.ENETUNREACH) && r.Gateway.IsValid() {
			nr.Flags |= int(netlink.FLAG_ONLINK)
			err = c.m.nl.RouteReplace(nr)
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("route %s not added: %v", routeString(r), err))
			continue
		}
		installed = append(installed, r)
	}
	var stale []config.Route
	for _, r := range oldRoutes {
		if !slices.Contains(installed, r) {
			stale = append(stale, r)
		}
	}
	c.m.delRoutes(link, stale)

	c.mu.Lock()
	c.lease, c.routes = l, installed
	c.mu.Unlock()
	c.m.retryPendingRoutes(c.name)
	c.m.writeResolv()

	// The router is the default gateway installed (option 121's when
	// given), else option 3's first.
	router := ""
	for _, r := range installed {
		if r.Dst.Bits() == 0 && r.Gateway.IsValid() {
			router = r.Gateway.String()
			break
		}
	}
	if router == "" && len(l.Routers) > 0 {
		router = l.Routers[0].String()
	}
	dur := "infinite"
	if l.Duration > 0 {
		dur = l.Duration.String()
	}
	detail := fmt.Sprintf("%s on %s from %s for %s", l.Address, c.name, l.Server, dur)
	if router != "" {
		detail += ", router " + router
	}
	if len(installed) > 0 {
		detail += fmt.Sprintf(", %d route(s)", len(installed))
	}
	if len(l.DNS) > 0 {
		detail += ", dns " + joinAddrs(l.DNS)
	}
	c.report(steps.OK, joinDetail(detail, notes),
		"address", l.Address.String(), "router", router, "mtu", mtu, "lease", dur, "id", c.id)
	return nil
}

// unbind removes the lease's address and routes and reports why.
func (c *dhcpClient) unbind(v steps.Verdict, why string, keep []netip.Prefix) {
	c.mu.Lock()
	l, routes := c.lease, c.routes
	c.lease, c.routes = nil, nil
	c.mu.Unlock()
	if l == nil {
		return
	}
	if link, err := c.m.nl.LinkByName(c.name); err == nil {
		c.m.delRoutes(link, routes)
		if !slices.Contains(keep, l.Address) {
			c.m.delAddrs(link, []netip.Prefix{l.Address})
		}
	}
	c.m.writeResolv()
	c.report(v, why)
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// dhcpLog sends nclient4's messages to the debug log.
type dhcpLog struct{ c *dhcpClient }

func (d dhcpLog) Printf(format string, v ...any) {
	d.c.m.log.Debug("dhcp: "+fmt.Sprintf(format, v...), "link", d.c.name)
}

func (d dhcpLog) PrintMessage(prefix string, msg *dhcpv4.DHCPv4) {
	d.c.m.log.Debug("dhcp: "+prefix, "link", d.c.name, "msg", msg.String())
}
