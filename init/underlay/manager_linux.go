package underlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
)

// Manager applies Underlays to the host and keeps DHCP leases alive.
// Its methods are safe for concurrent use; Applies are serialised.
type Manager struct {
	rec *steps.Recorder
	log *slog.Logger

	// nl talks to the network namespace the Manager configures; inNS runs
	// a function on a thread in that namespace (sockets and /proc/sys are
	// per namespace). Production: the current namespace.
	nl   *netlink.Handle
	inNS func(func() error) error

	resolvPath  string
	nicWait     time.Duration // bounded wait for late NICs
	dhcpWait    time.Duration // how long Apply waits for a first lease
	poll        time.Duration // between passes while NICs are missing
	dhcpTimeout time.Duration // first retransmission timeout of a DHCP exchange

	ctx    context.Context // lives until Close: DHCP goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup

	applyMu sync.Mutex // one Apply at a time

	mu       sync.Mutex
	closed   bool
	links    map[string]*linkState // configured kernel links, by name
	layout   *layout               // of the last Apply, for Status
	verdicts map[string]verdict    // link ID -> last link verdict
	global   config.Underlay       // DNS/Search of the last Apply
	resolvOn bool                  // resolv.conf is ours (written once)

	repMu    sync.Mutex
	reported map[string]string // step key -> last reported line, to print changes only

	// nicGaveUp holds the phy links (by nicKey) whose NIC an Apply waited
	// for in vain, and how long: a later Apply fails them at once with
	// the same verdict, so a retry loop prints their waiting/failed pair
	// once, not on every retry. A link is forgotten once its NIC is found.
	// Used by Apply only (serialised by applyMu).
	nicGaveUp map[string]time.Duration
}

// nicKey identifies a phy link and the NIC it asks for.
func nicKey(l config.Link) string {
	return l.ID + "\x00" + l.Match.MAC.String() + "\x00" + l.Match.Name
}

type verdict struct {
	v      steps.Verdict
	detail string
}

// linkState is what the Manager did to one kernel link, so that it can
// undo exactly that and nothing else.
type linkState struct {
	id, name string
	kind     config.LinkKind
	created  bool           // we created the link (bond, vlan)
	addrs    []netip.Prefix // static addresses we added
	routes   []config.Route // static routes we added
	pending  []config.Route // static routes whose gateway was not reachable yet
	dns      []netip.Addr   // static per-link DNS
	dhcp     *dhcpClient
	seen     bool // part of the Apply in progress
	usable   bool
}

// New returns a Manager for the current network namespace. rec receives
// the verdicts (nil: a recorder without console); log the details.
func New(rec *steps.Recorder, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if rec == nil {
		rec = steps.New(nil, "", log)
	}
	m := &Manager{
		rec:         rec,
		log:         log,
		nl:          &netlink.Handle{}, // zero Handle: a socket per request in the caller's namespace
		inNS:        func(f func() error) error { return f() },
		resolvPath:  DefaultResolvConf,
		nicWait:     30 * time.Second,
		dhcpWait:    30 * time.Second,
		poll:        250 * time.Millisecond,
		dhcpTimeout: 2 * time.Second,
		links:       map[string]*linkState{},
		verdicts:    map[string]verdict{},
		reported:    map[string]string{},
		nicGaveUp:   map[string]time.Duration{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Close stops the DHCP clients and waits for them. Addresses stay: the
// node keeps its network until it powers off.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// report prints a step when its verdict or detail changed since the last
// report of the same step and link: passes repeat while waiting for NICs,
// and a re-apply of the same Underlay prints nothing new.
func (m *Manager) report(name string, v steps.Verdict, detail string, attrs ...any) {
	key := name // keyed like the Recorder: step name and link attr
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i] == "link" {
			key += "/" + fmt.Sprint(attrs[i+1])
		}
	}
	line := string(v) + "\x00" + detail + "\x00" + fmt.Sprint(attrs...)
	m.repMu.Lock()
	if m.reported[key] == line {
		m.repMu.Unlock()
		return
	}
	m.reported[key] = line
	m.repMu.Unlock()
	m.rec.Report(name, v, detail, attrs...)
}

func (m *Manager) reportLink(ll *linkLayout, v steps.Verdict, detail string, extra ...any) {
	attrs := []any{"link", ll.ID, "kind", string(ll.Link.Kind)}
	if ll.Name != "" {
		attrs = append(attrs, "name", ll.Name)
	}
	attrs = append(attrs, extra...)
	m.mu.Lock()
	m.verdicts[ll.ID] = verdict{v, detail}
	m.mu.Unlock()
	m.report(StepLink, v, detail, attrs...)
}

// Apply brings the host's underlay to u. It waits (bounded by the NIC
// wait and ctx) for NICs that are not there yet, configures every link it
// can, waits (bounded) for first DHCP leases, and reports a verdict per
// link. It returns an error only when no link ended up usable; then the
// previous configuration is left as it was.
func (m *Manager) Apply(ctx context.Context, u config.Underlay) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("underlay: manager is closed")
	}
	for _, st := range m.links {
		st.seen = false
	}
	m.mu.Unlock()
	if len(u.Links) == 0 {
		return fmt.Errorf("underlay %s: no links", u.Source)
	}

	start := time.Now()
	var p *layout
	var opts layoutOpts
	for _, l := range u.Links {
		if d, ok := m.nicGaveUp[nicKey(l)]; ok && l.Kind == config.LinkPhy {
			if opts.GaveUp == nil {
				opts.GaveUp = map[string]time.Duration{}
			}
			opts.GaveUp[l.ID] = d
		}
	}
	for {
		host, err := m.hostLinks()
		if err != nil {
			return fmt.Errorf("underlay: listing links: %w", err)
		}
		opts.GaveUpAfter = 0
		elapsed := time.Since(start)
		gaveUp := elapsed >= m.nicWait || ctx.Err() != nil
		if gaveUp {
			opts.GaveUpAfter = min(m.nicWait, elapsed.Round(time.Second))
			if opts.GaveUpAfter <= 0 {
				opts.GaveUpAfter = time.Second
			}
		}
		p = makeLayout(u, host, opts)
		m.mu.Lock()
		m.layout = p
		m.global = config.Underlay{DNS: u.DNS, Search: u.Search}
		m.mu.Unlock()
		for _, ll := range p.Links {
			m.applyLink(ll)
		}
		waiting := slices.ContainsFunc(p.Links, func(ll *linkLayout) bool { return ll.State == stateWaiting })
		if !waiting || gaveUp {
			m.rememberNICs(p, opts)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(m.poll):
		}
	}

	m.waitDHCP(ctx, p)
	m.writeResolv()

	var usable []string
	var problems []string
	m.mu.Lock()
	for _, ll := range p.Links {
		st := m.links[ll.Name]
		if ll.State == stateReady && st != nil && st.seen && ll.Bond == "" && m.usableLocked(st) {
			usable = append(usable, ll.ID)
			continue
		}
		switch v := m.verdicts[ll.ID]; {
		case v.v != steps.OK:
			problems = append(problems, fmt.Sprintf("%s: %s", ll.ID, v.detail))
		case st != nil && st.dhcp != nil:
			problems = append(problems, fmt.Sprintf("%s: no DHCP lease on %s after %s", ll.ID, ll.Name, m.dhcpWait))
		}
	}
	m.mu.Unlock()
	if len(usable) == 0 {
		return fmt.Errorf("underlay %s: no link usable (%s)", u.Source, strings.Join(problems, "; "))
	}
	m.retire()
	return nil
}

// rememberNICs notes, after the last pass of an Apply, which phy links
// found their NIC and which gave up waiting for it.
func (m *Manager) rememberNICs(p *layout, opts layoutOpts) {
	for _, ll := range p.Links {
		if ll.Link.Kind != config.LinkPhy {
			continue
		}
		k := nicKey(ll.Link)
		switch {
		case ll.NoNIC && ll.State == stateFailed:
			m.nicGaveUp[k] = max(opts.GaveUpAfter, opts.GaveUp[ll.ID])
		case !ll.NoNIC:
			delete(m.nicGaveUp, k)
		}
	}
}

// usableLocked: the link came up as declared and, if it is addressed by
// DHCP only, has a lease.
func (m *Manager) usableLocked(st *linkState) bool {
	if !st.usable {
		return false
	}
	if st.dhcp != nil && len(st.addrs) == 0 {
		return st.dhcp.currentLease() != nil
	}
	return true
}

// waitDHCP waits until every DHCP client of p has a lease, or its first
// dhcpWait is over, or ctx ends. Clients go on in the background.
func (m *Manager) waitDHCP(ctx context.Context, p *layout) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		pending := false
		m.mu.Lock()
		for _, ll := range p.Links {
			st := m.links[ll.Name]
			if ll.State != stateReady || st == nil || !st.seen || st.dhcp == nil {
				continue
			}
			if st.dhcp.currentLease() == nil && time.Since(st.dhcp.started) < m.dhcpWait {
				pending = true
			}
		}
		m.mu.Unlock()
		if !pending {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retire undoes what earlier Applies did on links the last one no longer
// declares: DHCP stopped, our addresses and routes removed, the links we
// created deleted (VLANs before bonds).
func (m *Manager) retire() {
	m.mu.Lock()
	var gone []*linkState
	for name, st := range m.links {
		if !st.seen {
			gone = append(gone, st)
			delete(m.links, name)
		}
	}
	inLayout := map[string]bool{}
	for _, ll := range m.layout.Links {
		inLayout[ll.ID] = true
	}
	m.mu.Unlock()
	slices.SortFunc(gone, func(a, b *linkState) int { return kindRank(b.kind) - kindRank(a.kind) })
	for _, st := range gone {
		if st.dhcp != nil {
			st.dhcp.stop(true, nil)
		}
		link, err := m.nl.LinkByName(st.name)
		if err != nil {
			continue
		}
		m.delRoutes(link, st.routes)
		m.delAddrs(link, st.addrs)
		if st.created {
			if err := m.nl.LinkDel(link); err != nil {
				m.log.Warn("underlay: removing link", "link", st.name, "err", err)
			}
		}
		if !inLayout[st.id] {
			m.report(StepLink, steps.Skipped, fmt.Sprintf("%s no longer in the underlay: its configuration was removed", st.name),
				"link", st.id, "kind", string(st.kind), "name", st.name)
		}
	}
	m.writeResolv()
}

func kindRank(k config.LinkKind) int {
	switch k {
	case config.LinkVLAN:
		return 2
	case config.LinkBond:
		return 1
	}
	return 0
}

// state returns the state of a ready link, creating it, and marks it seen.
func (m *Manager) state(ll *linkLayout) *linkState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.links[ll.Name]
	if st == nil || st.kind != ll.Link.Kind {
		if st != nil && st.dhcp != nil {
			go st.dhcp.stop(false, nil)
		}
		st = &linkState{name: ll.Name, kind: ll.Link.Kind}
		m.links[ll.Name] = st
	}
	st.id = ll.ID
	st.seen = true
	return st
}

// applyLink does one link of a layout and reports its verdict.
func (m *Manager) applyLink(ll *linkLayout) {
	switch ll.State {
	case stateWaiting:
		m.reportLink(ll, steps.Waiting, ll.Reason)
		return
	case stateFailed:
		m.reportLink(ll, steps.Failed, ll.Reason)
		return
	}
	st := m.state(ll)
	var notes []string
	var err error
	switch ll.Link.Kind {
	case config.LinkPhy:
		notes, err = m.applyPhy(ll)
		if err == nil && ll.Bond != "" {
			return // the bond reports its members
		}
	case config.LinkBond:
		notes, err = m.applyBond(ll)
	case config.LinkVLAN:
		notes, err = m.applyVLAN(ll)
	}
	if err != nil {
		m.mu.Lock()
		st.usable = false
		m.mu.Unlock()
		m.reportLink(ll, steps.Failed, err.Error())
		return
	}
	link, err := m.nl.LinkByName(ll.Name)
	if err != nil {
		m.reportLink(ll, steps.Failed, fmt.Sprintf("%s vanished: %v", ll.Name, err))
		return
	}
	addrNotes, err := m.applyAddressing(ll, st, link)
	notes = append(notes, addrNotes...)
	if err != nil {
		m.mu.Lock()
		st.usable = false
		m.mu.Unlock()
		m.reportLink(ll, steps.Failed, joinDetail(err.Error(), notes))
		return
	}
	m.mu.Lock()
	st.usable = true
	m.mu.Unlock()
	a := link.Attrs()
	summary := fmt.Sprintf("%s up, mtu %d", ll.Name, a.MTU)
	if len(ll.Link.Addresses) > 0 {
		summary += ", " + joinPrefixes(ll.Link.Addresses)
	}
	if n := len(ll.Link.Routes); n > 0 {
		summary += fmt.Sprintf(", %d route(s)", n)
	}
	if ll.Link.DHCP4 {
		summary += ", dhcp"
	}
	m.reportLink(ll, steps.OK, joinDetail(summary, notes), "mtu", a.MTU, "mac", a.HardwareAddr.String())
}

func joinDetail(head string, notes []string) string {
	if len(notes) == 0 {
		return head
	}
	return head + "; " + strings.Join(notes, "; ")
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// hostLinks lists the kernel's links for makeLayout.
func (m *Manager) hostLinks() ([]hostLink, error) {
	var links []netlink.Link
	var err error
	for range 3 { // a dump interrupted by a concurrent change is retried
		links, err = m.nl.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return toHostLinks(links), nil
}

func toHostLinks(links []netlink.Link) []hostLink {
	byIndex := make(map[int]string, len(links))
	for _, l := range links {
		byIndex[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]hostLink, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		h := hostLink{
			Name:     a.Name,
			Index:    a.Index,
			Kind:     l.Type(),
			MTU:      a.MTU,
			Master:   byIndex[a.MasterIndex],
			Loopback: a.Flags&net.FlagLoopback != 0,
			MAC:      a.HardwareAddr,
		}
		// The NIC's own MAC: a bond member's current MAC is the bond's.
		if bs, ok := a.Slave.(*netlink.BondSlave); ok && len(bs.PermHardwareAddr) > 0 && !isZeroMAC(bs.PermHardwareAddr) {
			h.MAC = bs.PermHardwareAddr
		} else if len(a.PermHWAddr) > 0 && !isZeroMAC(a.PermHWAddr) {
			h.MAC = a.PermHWAddr
		}
		if v, ok := l.(*netlink.Vlan); ok {
			h.Parent = byIndex[v.ParentIndex]
			h.VLANID = v.VlanId
		}
		out = append(out, h)
	}
	return out
}
