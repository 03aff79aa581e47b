package underlay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// eventWatch records address and route changes in a namespace, to prove
// that a re-apply changes nothing.
type eventWatch struct {
	mu     sync.Mutex
	events []string
}

func watchEvents(t *testing.T, ns netns.NsHandle) *eventWatch {
	t.Helper()
	w := &eventWatch{}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatal(err)
	}
	add := func(s string) {
		w.mu.Lock()
		w.events = append(w.events, s)
		w.mu.Unlock()
	}
	go func() {
		for {
			select {
			case u, ok := <-addrs:
				if !ok {
					return
				}
				add(fmt.Sprintf("addr new=%v %s", u.NewAddr, u.LinkAddress.String()))
			case u, ok := <-routes:
				if !ok {
					return
				}
				add(fmt.Sprintf("route type=%d %s", u.Type, u.Route.String()))
			case u, ok := <-links:
				if !ok {
					return
				}
				if u.Header.Type == unix.RTM_DELLINK {
					add("link deleted " + u.Attrs().Name)
				}
			}
		}
	}()
	return w
}

func (w *eventWatch) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.events
	w.events = nil
	return e
}

// waitDAD waits until no address of link is tentative (IPv6 duplicate
// address detection done), at most 5 s.
func waitDAD(t *testing.T, m *Manager, name string) {
	t.Helper()
	link, err := m.nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		as, err := m.nl.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		tentative := false
		for _, a := range as {
			tentative = tentative || a.Flags&unix.IFA_F_TENTATIVE != 0
		}
		if !tentative {
			return
		}
	}
	t.Fatalf("%s: IPv6 addresses still tentative after 5 s", name)
}

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func addrs(ss ...string) []netip.Addr {
	var as []netip.Addr
	for _, s := range ss {
		as = append(as, netip.MustParseAddr(s))
	}
	return as
}

// checkLink asserts the MTU, addresses and routes of a kernel link.
func checkLink(t *testing.T, m *Manager, name string, mtu int, want []netip.Prefix, routes []config.Route) netlink.Link {
	t.Helper()
	link, err := m.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if mtu != 0 && link.Attrs().MTU != mtu {
		t.Errorf("%s: mtu %d, want %d", name, link.Attrs().MTU, mtu)
	}
	if link.Attrs().Flags&unix.IFF_UP == 0 {
		t.Errorf("%s is down", name)
	}
	have, err := m.addrSet(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if !have[p] {
			t.Errorf("%s: address %s missing (have %v)", name, p, have)
		}
	}
	rs, err := m.routeSet(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if !rs[routeKey(r)] {
			t.Errorf("%s: route %s missing (have %v)", name, routeString(r), rs)
		}
	}
	return link
}

func checkVerdict(t *testing.T, rec *steps.Recorder, id string, v steps.Verdict, detail string) {
	t.Helper()
	s := stepOf(rec, StepLink, id)
	if s == nil {
		t.Errorf("no verdict for link %q", id)
		return
	}
	if s.Verdict != v || !strings.Contains(s.Detail, detail) {
		t.Errorf("link %q: %s, want verdict=%s detail containing %q", id, s.Line(), v, detail)
	}
}

// TestStaticUnderlay: static addresses, routes, MTU and DNS on two NICs;
// a re-apply changes nothing; a bad underlay gets precise verdicts while
// the good link stays as it was; an underlay where nothing works leaves
// the previous configuration alone.
func TestStaticUnderlay(t *testing.T) {
	testenv.RequireRoot(t)
	cliNS, hc := newNetns(t, "sc")
	peerNS, hp := newNetns(t, "sp")
	const macLAN, macMgmt, macGhost = "02:00:5e:97:00:02", "02:00:5e:95:00:02", "02:00:5e:00:00:99"
	veth(t, hc, "a0", macLAN, peerNS, hp, "p0")
	veth(t, hc, "a1", macMgmt, peerNS, hp, "p1")

	m, rec, console := newTestManager(t, cliNS, withNICWait(2*time.Second))
	lanRoutes := []config.Route{cr("0.0.0.0/0", "10.97.0.1"), {Dst: netip.MustParsePrefix("10.96.0.0/16"), Gateway: netip.MustParseAddr("10.97.0.254"), Metric: 50}}
	lan := config.Link{
		ID: "lan", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(macLAN)}, MTU: 9000,
		Addresses: prefixes("10.97.0.2/24", "2001:db8:97::2/64"), Routes: lanRoutes, DNS: addrs("10.97.0.53"),
	}
	mgmt := config.Link{ID: "mgmt", Kind: config.LinkPhy, Match: config.LinkMatch{Name: "a1"}, Addresses: prefixes("10.95.0.2/24")}
	u1 := config.Underlay{Source: "test u1", Links: []config.Link{lan, mgmt}, DNS: addrs("10.95.0.53"), Search: []string{"weft.test"}}

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := m.Apply(ctx, u1); err != nil {
		t.Fatalf("Apply u1: %v", err)
	}
	checkLink(t, m, "a0", 9000, lan.Addresses, lanRoutes)
	checkLink(t, m, "a1", 1500, mgmt.Addresses, nil)
	checkVerdict(t, rec, "lan", steps.OK, "a0 up, mtu 9000, 10.97.0.2/24 2001:db8:97::2/64, 2 route(s)")
	checkVerdict(t, rec, "mgmt", steps.OK, "a1 up, mtu 1500, 10.95.0.2/24")
	resolv, _ := os.ReadFile(m.resolvPath)
	if want := "search weft.test\nnameserver 10.95.0.53\nnameserver 10.97.0.53\n"; !strings.Contains(string(resolv), want) {
		t.Errorf("resolv.conf:\n%s\nwant it to contain:\n%s", resolv, want)
	}

	// Re-apply: nothing changes, nothing is printed. (The kernel's own
	// notice when IPv6 DAD completes is not ours: wait for it first.)
	waitDAD(t, m, "a0")
	waitDAD(t, m, "a1")
	w := watchEvents(t, cliNS)
	lines := strings.Count(console.String(), "\n")
	if err := m.Apply(ctx, u1); err != nil {
		t.Fatalf("re-apply u1: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if ev := w.take(); len(ev) > 0 {
		t.Errorf("re-apply changed the kernel state: %q", ev)
	}
	if n := strings.Count(console.String(), "\n"); n != lines {
		t.Errorf("re-apply printed %d new console lines", n-lines)
	}

	// A bad underlay: a NIC that never comes, a VLAN without its parent.
	// The good link is untouched; mgmt, no longer declared, is cleaned up.
	u2 := config.Underlay{Source: "test u2", Links: []config.Link{
		lan,
		{ID: "ghost", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(macGhost)}, DHCP4: true},
		{ID: "v100", Kind: config.LinkVLAN, VLANParent: "nope", VLANID: 100, Addresses: prefixes("10.94.100.2/24")},
		{ID: "v200", Kind: config.LinkVLAN, VLANParent: "ghost", VLANID: 200},
	}}
	start := time.Now()
	if err := m.Apply(ctx, u2); err != nil {
		t.Fatalf("Apply u2: %v (lan is usable: want no error)", err)
	}
	if d := time.Since(start); d < 2*time.Second || d > 5*time.Second {
		t.Errorf("Apply u2 took %v; want the 2 s NIC wait", d)
	}
	checkVerdict(t, rec, "ghost", steps.Failed, "no NIC with MAC "+macGhost+" after 2s; check cabling/driver")
	checkVerdict(t, rec, "v100", steps.Failed, `vlan parent "nope" is not a link in this underlay`)
	checkVerdict(t, rec, "v200", steps.Failed, `parent "ghost": no NIC with MAC `+macGhost+" after 2s")
	checkVerdict(t, rec, "lan", steps.OK, "a0 up, mtu 9000")
	checkVerdict(t, rec, "mgmt", steps.Skipped, "a1 no longer in the underlay")
	if !strings.Contains(console.String(), `weft: step=link verdict=waiting detail="no NIC with MAC `+macGhost+` yet"`) {
		t.Errorf("no waiting verdict before the failure:\n%s", console.String())
	}
	checkLink(t, m, "a0", 9000, lan.Addresses, lanRoutes)
	a1, _ := m.nl.LinkByName("a1")
	if have, _ := m.addrSet(a1); have[netip.MustParsePrefix("10.95.0.2/24")] {
		t.Error("mgmt's address stayed after mgmt left the underlay")
	}
	for _, e := range w.take() {
		if strings.Contains(e, "10.97.0.") || strings.Contains(e, "2001:db8:97::2/64") || strings.Contains(e, "10.96.0.0") {
			t.Errorf("lan's addressing flapped: %s", e)
		}
	}
	resolv, _ = os.ReadFile(m.resolvPath)
	if strings.Contains(string(resolv), "10.95.0.53") || !strings.Contains(string(resolv), "nameserver 10.97.0.53") {
		t.Errorf("resolv.conf after u2:\n%s", resolv)
	}

	// Nothing usable: an error, and lan keeps what worked.
	u3 := config.Underlay{Source: "test u3", Links: []config.Link{
		{ID: "ghost", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(macGhost)}, Addresses: prefixes("10.93.0.2/24")},
	}}
	err := m.Apply(ctx, u3)
	if err == nil || !strings.Contains(err.Error(), "no link usable") || !strings.Contains(err.Error(), "ghost: no NIC with MAC") {
		t.Fatalf("Apply u3: %v, want no link usable naming ghost", err)
	}
	checkLink(t, m, "a0", 9000, lan.Addresses, lanRoutes)
	st := m.Status()
	var names []string
	for _, s := range st {
		names = append(names, s.ID+"="+string(s.Verdict))
	}
	if got := strings.Join(names, " "); got != "ghost=failed lan=ok" {
		t.Errorf("status after u3: %s", got)
	}
}

// bondingSupported probes the kernel in ns for bonding and 8021q.
func bondingSupported(t *testing.T, h *netlink.Handle) error {
	t.Helper()
	b := netlink.NewLinkBond(netlink.LinkAttrs{Name: "ulprobe0"})
	if err := h.LinkAdd(b); err != nil {
		return fmt.Errorf("bonding: %w", err)
	}
	defer h.LinkDel(b)
	bl, err := h.LinkByName("ulprobe0")
	if err != nil {
		return err
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "ulprobe0.9", ParentIndex: bl.Attrs().Index}, VlanId: 9}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("8021q: %w", err)
	}
	return nil
}

// TestBondVLAN: an 802.3ad bond of two NICs with a VLAN on it, addresses
// and routes as declared, the VLAN's MTU raising the bond's; a re-apply
// is a no-op; a bad underlay leaves the bond and VLAN as they were.
func TestBondVLAN(t *testing.T) {
	testenv.RequireRoot(t)
	if inGuest() {
		guestSetup(t)
	}
	cliNS, hc := newNetns(t, "bc")
	peerNS, hp := newNetns(t, "bp")
	if err := bondingSupported(t, hc); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) && !inGuest() {
			t.Logf("this kernel cannot (%v): running the test in a VM", err)
			runInVM(t, "TestBondVLAN")
			return
		}
		t.Fatal(err)
	}
	runBondVLAN(t, cliNS, hc, peerNS, hp)
}

func runBondVLAN(t *testing.T, cliNS netns.NsHandle, hc *netlink.Handle, peerNS netns.NsHandle, hp *netlink.Handle) {
	const mac0, mac1, macVLAN, macGhost = "02:00:5e:94:00:01", "02:00:5e:94:00:02", "02:00:5e:94:01:00", "02:00:5e:00:00:98"
	veth(t, hc, "m0", mac0, peerNS, hp, "q0")
	veth(t, hc, "m1", mac1, peerNS, hp, "q1")

	m, rec, console := newTestManager(t, cliNS, withNICWait(2*time.Second))
	bondRoutes := []config.Route{cr("0.0.0.0/0", "10.94.0.1")}
	vlanRoutes := []config.Route{cr("10.93.0.0/16", "10.94.100.1")}
	links := []config.Link{
		{ID: "nic0", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(mac0)}},
		{ID: "nic1", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(mac1)}},
		{ID: "bond", Kind: config.LinkBond, BondMembers: []string{"nic0", "nic1"}, BondMode: "802.3ad", BondMiimon: 100,
			BondHashPolicy: "layer3+4", Addresses: prefixes("10.94.0.2/24"), Routes: bondRoutes},
		{ID: "vlan100", Kind: config.LinkVLAN, VLANParent: "bond", VLANID: 100, MTU: 9000, MAC: mac(macVLAN),
			Addresses: prefixes("10.94.100.2/24"), Routes: vlanRoutes},
	}
	u := config.Underlay{Source: "test bond", Links: links}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := m.Apply(ctx, u); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	bl := checkLink(t, m, "bond0", 9000, prefixes("10.94.0.2/24"), bondRoutes)
	b, ok := bl.(*netlink.Bond)
	if !ok {
		t.Fatalf("bond0 is a %s", bl.Type())
	}
	if b.Mode != netlink.BOND_MODE_802_3AD || b.Miimon != 100 || b.XmitHashPolicy != netlink.BOND_XMIT_HASH_POLICY_LAYER3_4 {
		t.Errorf("bond0: mode %s miimon %d hash %s", b.Mode, b.Miimon, b.XmitHashPolicy)
	}
	for _, n := range []string{"m0", "m1"} {
		l, err := hc.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().MasterIndex != b.Index || l.Attrs().MTU != 9000 {
			t.Errorf("%s: master %d mtu %d, want bond0 (%d) and 9000", n, l.Attrs().MasterIndex, l.Attrs().MTU, b.Index)
		}
	}
	vl := checkLink(t, m, "bond0.100", 9000, prefixes("10.94.100.2/24"), vlanRoutes)
	if v, ok := vl.(*netlink.Vlan); !ok || v.VlanId != 100 || v.ParentIndex != b.Index || v.HardwareAddr.String() != macVLAN {
		t.Errorf("bond0.100: %+v", vl.Attrs())
	}
	checkVerdict(t, rec, "nic0", steps.OK, "m0 enslaved to bond bond0")
	checkVerdict(t, rec, "nic1", steps.OK, "m1 enslaved to bond bond0")
	checkVerdict(t, rec, "bond", steps.OK, "bond0 up, mtu 9000, 10.94.0.2/24, 1 route(s)")
	checkVerdict(t, rec, "vlan100", steps.OK, "bond0.100 up, mtu 9000, 10.94.100.2/24, 1 route(s)")

	// Re-apply: no change, nothing printed.
	for _, n := range []string{"m0", "m1", "bond0", "bond0.100"} {
		waitDAD(t, m, n)
	}
	w := watchEvents(t, cliNS)
	lines := strings.Count(console.String(), "\n")
	if err := m.Apply(ctx, u); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if ev := w.take(); len(ev) > 0 {
		t.Errorf("re-apply changed the kernel state: %q", ev)
	}
	if n := strings.Count(console.String(), "\n"); n != lines {
		t.Errorf("re-apply printed %d new console lines", n-lines)
	}

	// Bad additions: precise verdicts, the bond and VLAN stay.
	bad := config.Underlay{Source: "test bad", Links: append(links[:len(links):len(links)],
		config.Link{ID: "orphan", Kind: config.LinkVLAN, VLANParent: "bond9", VLANID: 7},
		config.Link{ID: "ghost", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(macGhost)}},
	)}
	if err := m.Apply(ctx, bad); err != nil {
		t.Fatalf("Apply bad: %v", err)
	}
	checkVerdict(t, rec, "orphan", steps.Failed, `vlan parent "bond9" is not a link in this underlay`)
	checkVerdict(t, rec, "ghost", steps.Failed, "no NIC with MAC "+macGhost+" after 2s; check cabling/driver")
	checkLink(t, m, "bond0", 9000, prefixes("10.94.0.2/24"), bondRoutes)
	checkLink(t, m, "bond0.100", 9000, prefixes("10.94.100.2/24"), vlanRoutes)
	if ev := w.take(); len(ev) > 0 {
		t.Errorf("bad underlay changed the good links: %q", ev)
	}
}
