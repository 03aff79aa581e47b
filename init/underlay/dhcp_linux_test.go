package underlay

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// testDHCPServer hands out one lease: 10.99.0.10/24, MTU 1400, option 3
// router 10.99.0.254 (which option 121 must override), classless routes
// to 10.98.0.0/16 via 10.99.0.2 and default via 10.99.0.1.
type testDHCPServer struct {
	lease time.Duration
	srv   *server4.Server
	mute  atomic.Bool // records requests but answers none

	mu       sync.Mutex
	requests []seenRequest
}

type seenRequest struct {
	at     time.Time
	ciaddr net.IP
	src    net.IP // the IP source of the REQUEST: the leased address when unicast
}

const (
	srvAddr    = "10.99.0.1"
	clientAddr = "10.99.0.10"
)

func startDHCPServer(t *testing.T, ns netns.NsHandle, ifname string, lease time.Duration) *testDHCPServer {
	t.Helper()
	s := &testDHCPServer{lease: lease}
	// The socket is made in the server namespace; it is used from anywhere.
	if err := nsexec.DoHandle(ns, func() (err error) {
		s.srv, err = server4.NewServer(ifname, &net.UDPAddr{Port: dhcpv4.ServerPort}, s.handle)
		return err
	}); err != nil {
		t.Fatalf("dhcp server: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.srv.Serve() }()
	t.Cleanup(func() { s.srv.Close(); <-done })
	return s
}

func (s *testDHCPServer) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
		s.mu.Lock()
		s.requests = append(s.requests, seenRequest{at: time.Now(), ciaddr: m.ClientIPAddr, src: peer.(*net.UDPAddr).IP})
		s.mu.Unlock()
	default:
		return
	}
	if s.mute.Load() {
		return
	}
	resp, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(net.ParseIP(clientAddr)),
		dhcpv4.WithServerIP(net.ParseIP(srvAddr)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.ParseIP("10.99.0.254")),
		dhcpv4.WithDNS(net.ParseIP("10.99.0.53")),
		dhcpv4.WithOption(dhcpv4.OptDomainName("weft.test")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(srvAddr))),
		dhcpv4.WithLeaseTime(uint32(s.lease/time.Second)),
		mtuOpt(1400),
		dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(route("10.98.0.0/16", "10.99.0.2"), route("0.0.0.0/0", srvAddr))),
	)
	if err != nil {
		return
	}
	conn.WriteTo(resp.ToBytes(), peer)
}

// renewals counts REQUESTs for the leased address (ciaddr set) sent
// unicast from it (RENEWING) or broadcast from 0.0.0.0 (REBINDING).
func (s *testDHCPServer) renewals(unicast bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if !r.ciaddr.Equal(net.ParseIP(clientAddr)) {
			continue
		}
		if r.src.Equal(net.ParseIP(clientAddr)) == unicast {
			n++
		}
	}
	return n
}

// waitAddr polls until the link has (or, with present false, lacks) p.
func waitAddr(t *testing.T, m *Manager, link netlink.Link, p netip.Prefix, present bool, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		have, err := m.addrSet(link)
		if err != nil {
			t.Fatal(err)
		}
		if have[p] == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("address %s present=%v after %v, want %v", p, have[p], within, present)
		}
	}
}

func TestDHCPLease(t *testing.T) {
	testenv.RequireRoot(t)
	cliNS, hc := newNetns(t, "dc")
	srvNS, hs := newNetns(t, "ds")
	const cliMAC = "02:00:5e:99:00:10"
	veth(t, hc, "eth0", cliMAC, srvNS, hs, "srv0")
	srvLink, err := hs.LinkByName("srv0")
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.AddrAdd(srvLink, toNetlinkAddr(netip.MustParsePrefix(srvAddr+"/24"))); err != nil {
		t.Fatal(err)
	}
	srv := startDHCPServer(t, srvNS, "srv0", 6*time.Second)

	// The MTU must be on the link before the address: look at the MTU at
	// the moment the address appears.
	mtuAtAddr := make(chan int, 1)
	updates := make(chan netlink.AddrUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{Namespace: &cliNS}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for u := range updates {
			if u.NewAddr && u.LinkAddress.IP.Equal(net.ParseIP(clientAddr)) {
				if l, err := hc.LinkByIndex(u.LinkIndex); err == nil {
					select {
					case mtuAtAddr <- l.Attrs().MTU:
					default:
					}
				}
			}
		}
	}()

	m, rec, console := newTestManager(t, cliNS, withNICWait(5*time.Second), withDHCPWait(20*time.Second), withDHCPTimeout(500*time.Millisecond))
	u := config.Underlay{
		Source: "test",
		Links:  []config.Link{{ID: "uplink", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(cliMAC)}, DHCP4: true}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.Apply(ctx, u); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Logf("lease after %v", time.Since(start).Round(time.Millisecond))

	link, err := hc.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if got := link.Attrs().MTU; got != 1400 {
		t.Errorf("mtu %d, want 1400 (option 26)", got)
	}
	select {
	case got := <-mtuAtAddr:
		if got != 1400 {
			t.Errorf("mtu when the address appeared: %d, want 1400 (MTU before address)", got)
		}
	case <-time.After(2 * time.Second):
		t.Error("no address event seen")
	}
	wantAddr := netip.MustParsePrefix(clientAddr + "/24")
	have, err := m.addrSet(link)
	if err != nil || !have[wantAddr] {
		t.Errorf("addresses %v (%v), want %s", have, err, wantAddr)
	}
	routes, err := m.routeSet(link)
	if err != nil {
		t.Fatal(err)
	}
	metric := dhcpMetric(m.layout, "uplink")
	for _, r := range []config.Route{cr("10.98.0.0/16", "10.99.0.2"), cr("0.0.0.0/0", srvAddr)} {
		r.Metric = metric
		if !routes[routeKey(r)] {
			t.Errorf("route %s missing; have %v", routeString(r), routes)
		}
	}
	if r := (config.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.99.0.254"), Metric: metric}); routes[routeKey(r)] {
		t.Errorf("default route via option 3 router installed although option 121 was given")
	}
	resolv, err := os.ReadFile(m.resolvPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"nameserver 10.99.0.53\n", "search weft.test\n"} {
		if !strings.Contains(string(resolv), w) {
			t.Errorf("resolv.conf lacks %q:\n%s", w, resolv)
		}
	}

	// Verdicts: the link, and the lease with its attributes.
	if s := stepOf(rec, StepLink, "uplink"); s == nil || s.Verdict != steps.OK || s.Attrs["name"] != "eth0" {
		t.Errorf("link verdict: %+v", s)
	}
	s := stepOf(rec, StepDHCP, "eth0")
	if s == nil || s.Verdict != steps.OK {
		t.Fatalf("dhcp verdict: %+v", s)
	}
	for k, v := range map[string]string{"address": clientAddr + "/24", "router": srvAddr, "mtu": "1400", "lease": "6s"} {
		if s.Attrs[k] != v {
			t.Errorf("dhcp verdict %s=%q, want %q (%s)", k, s.Attrs[k], v, s.Line())
		}
	}
	if !strings.Contains(s.Detail, "mtu 1400 from DHCP") {
		t.Errorf("dhcp detail %q lacks the MTU origin", s.Detail)
	}
	st := m.Status()
	if len(st) != 1 || st[0].Lease == nil || st[0].MTU != 1400 || st[0].Name != "eth0" || st[0].MAC != cliMAC {
		t.Errorf("status %+v", st)
	}

	// Re-applying the same underlay keeps the client and the address.
	client := m.links["eth0"].dhcp
	if err := m.Apply(ctx, u); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if m.links["eth0"].dhcp != client {
		t.Error("re-apply restarted the DHCP client")
	}

	// Renewal: T1 is 3 s after the lease; the 6 s lease must outlive its
	// first expiry, renewed by unicast.
	first := client.currentLease()
	deadline := first.Obtained.Add(first.Duration + 2*time.Second)
	time.Sleep(time.Until(deadline))
	if n := srv.renewals(true); n == 0 {
		t.Errorf("no unicast renewal seen by the server (requests: %+v)", srv.requests)
	}
	cur := client.currentLease()
	if cur == nil || !cur.Obtained.After(first.Obtained) {
		t.Fatalf("lease not renewed: %+v", cur)
	}
	have, err = m.addrSet(link)
	if err != nil || !have[wantAddr] {
		t.Errorf("after renewal: addresses %v (%v), want %s", have, err, wantAddr)
	}
	as, _ := hc.AddrList(link, netlink.FAMILY_V4)
	for _, a := range as {
		if a.IP.Equal(net.ParseIP(clientAddr)) && (a.ValidLft <= 0 || a.ValidLft > 6) {
			t.Errorf("valid_lft %d, want the lease's remaining 1..6 s", a.ValidLft)
		}
	}

	// The server goes silent: renewal (unicast) and rebinding (broadcast)
	// fail, the lease expires, the address goes, discovery restarts and
	// reports it is waiting; when the server is back, so is the lease.
	srv.mute.Store(true)
	cur = client.currentLease()
	waitAddr(t, m, link, wantAddr, false, time.Until(cur.Expiry())+2*time.Second)
	if n := srv.renewals(false); n == 0 {
		t.Error("no rebinding (broadcast REQUEST) before expiry")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s := stepOf(rec, StepDHCP, "eth0")
		if s.Verdict == steps.Waiting && strings.Contains(s.Detail, "no DHCP lease on eth0 yet (attempt 1: no offer)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dhcp verdict after expiry: %s", s.Line())
		}
	}
	if !strings.Contains(console.String(), `detail="lease 10.99.0.10/24 expired without renewal; rediscovering"`) {
		t.Errorf("no expiry verdict on the console:\n%s", console.String())
	}
	if routes, _ := m.routeSet(link); routes[routeKey(config.Route{Dst: netip.MustParsePrefix("10.98.0.0/16"), Gateway: netip.MustParseAddr("10.99.0.2"), Metric: metric})] {
		t.Error("the lease's routes stayed after expiry")
	}
	srv.mute.Store(false)
	for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if s := stepOf(rec, StepDHCP, "eth0"); s.Verdict == steps.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease 8 s after the server came back: %s", stepOf(rec, StepDHCP, "eth0").Line())
		}
	}
	waitAddr(t, m, link, wantAddr, true, time.Second)

	// From DHCP to static with the address DHCP gave (OpenStack's
	// network_data.json often does this): the client stops, its routes go,
	// the address stays without a flap.
	w := watchEvents(t, cliNS)
	static := config.Underlay{Source: "test static", Links: []config.Link{{
		ID: "uplink", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(cliMAC)}, MTU: 1400,
		Addresses: []netip.Prefix{wantAddr}, Routes: []config.Route{cr("0.0.0.0/0", srvAddr)},
	}}}
	if err := m.Apply(ctx, static); err != nil {
		t.Fatalf("Apply static: %v", err)
	}
	if m.links["eth0"].dhcp != nil {
		t.Error("DHCP client still running")
	}
	if s := stepOf(rec, StepDHCP, "eth0"); s.Verdict != steps.Skipped || !strings.Contains(s.Detail, "dhcp stopped on eth0") {
		t.Errorf("dhcp verdict: %s", s.Line())
	}
	routes, _ = m.routeSet(link)
	if !routes[routeKey(cr("0.0.0.0/0", srvAddr))] || routes[routeKey(config.Route{Dst: netip.MustParsePrefix("10.98.0.0/16"), Gateway: netip.MustParseAddr("10.99.0.2"), Metric: metric})] {
		t.Errorf("routes after the switch to static: %v", routes)
	}
	for _, e := range w.take() {
		if strings.Contains(e, "addr new=false "+clientAddr) {
			t.Errorf("the address flapped: %s", e)
		}
	}
	waitAddr(t, m, link, wantAddr, true, 0)
	lfts, _ := m.addrLifetimes(link)
	if lfts[wantAddr] != infiniteLft {
		t.Errorf("static address kept the lease's lifetime %d s", lfts[wantAddr])
	}
}

// TestDHCPNoServer: without an offer the link reports waiting, Apply gives
// up after its DHCP wait with an error naming the link, and discovery goes
// on in the background until Close.
func TestDHCPNoServer(t *testing.T) {
	testenv.RequireRoot(t)
	cliNS, hc := newNetns(t, "nc")
	peerNS, hp := newNetns(t, "np")
	const cliMAC = "02:00:5e:99:01:10"
	veth(t, hc, "eth0", cliMAC, peerNS, hp, "peer0")
	m, rec, _ := newTestManager(t, cliNS, withDHCPWait(2*time.Second), withDHCPTimeout(300*time.Millisecond))
	u := config.Underlay{Source: "test", Links: []config.Link{{ID: "uplink", Kind: config.LinkPhy, Match: config.LinkMatch{Name: "eth0"}, DHCP4: true}}}
	start := time.Now()
	err := m.Apply(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "uplink: no DHCP lease on eth0 after 2s") {
		t.Fatalf("Apply: %v, want no lease on eth0", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Apply took %v, want about the 2 s DHCP wait", d)
	}
	s := stepOf(rec, StepDHCP, "eth0")
	if s == nil || s.Verdict != steps.Waiting || !strings.Contains(s.Detail, "no DHCP lease on eth0 yet (attempt 1: no offer); retrying in") {
		t.Errorf("dhcp verdict: %+v", s)
	}
	if st := m.Status(); len(st) != 1 || st[0].Lease != nil || st[0].Verdict != steps.OK || !st[0].Up {
		t.Errorf("status: %+v", st)
	}
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not stop the DHCP client")
	}
}
