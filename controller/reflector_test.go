package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/internal/routetarget"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"

	"github.com/weftnet/weft/controller/rr"
)

// underlay gives the test process (in its own namespace, see TestMain) a
// veth into namespace wtc-u with the controller's and the nodes' addresses
// on it. 198.18.0.0/15 is the benchmarking range: nobody's real address.
func underlay(t *testing.T, addrs ...netip.Addr) {
	t.Helper()
	testenv.RequireRoot(t)
	self, nl := selfNS(t)
	sw := nettest.New(t, "wtc-u")
	nettest.Veth(t, self, "wtc0", "", sw, "up0", "")
	link, err := nl.LinkByName("wtc0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.LinkDel(link) })
	for _, a := range addrs {
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatalf("address %v: %v", a, err)
		}
	}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testLog shows warnings and worse in the test log; WEFT_CONTROLLER_DEBUG
// shows everything.
func testLog(t testing.TB, who string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WEFT_CONTROLLER_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("who", who)
}

// TestReflector: two nodes' speakers (agent/bgp) dial in to the
// controller's reflector, each with its own TCP MD5 password; a VPNv4 route
// from one reaches the other through it, attributes intact; the fleet view
// shows both sessions established; and when a node's agent dies, the
// reflector keeps its routes as a graceful-restart helper.
func TestReflector(t *testing.T) {
	rrAddr := netip.MustParseAddr("198.18.0.1")
	a, b := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")
	d := netip.MustParseAddr("198.18.0.13") // a node that lacks the password
	underlay(t, rrAddr, a, b, d)

	dir := t.TempDir()
	inventory := filepath.Join(dir, "fleet.yaml")
	doc := fmt.Sprintf(`config:
  bgp:
    asn: 64512
    controllers: [{address: %v, password: s3cret}]
nodes:
  - {name: node-a, address: %v}
  - {name: node-b, address: %v}
  - {name: node-c, macs: ["52:54:00:00:00:0c"]}
  - {name: node-d, address: %v}
`, rrAddr, a, b, d)
	if err := os.WriteFile(inventory, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	// Listen, ASN, router ID and password all come from the flags' and the
	// fleet's defaults: only the listen address is given.
	s, err := New(Options{State: t.TempDir(), Inventory: inventory, Log: testLog(t, "controller"), WatchInterval: -1,
		Reflector: &rr.Config{Listen: netip.AddrPortFrom(rrAddr, 179)}})
	if err != nil {
		t.Fatal(err)
	}
	client := operatorClient(t, s, "https://"+serve(t, s)+"/")
	ctx := context.Background()
	// GoBGP's StartBgp sets package-level variables: the reflector must be
	// up before the speakers start, or -race sees the two writes collide.
	waitReflector(t, s)

	// The nodes' speakers, configured from the fleet's weft.yaml as the
	// agent would.
	fleetCfg := s.Inventory().Config.BGP
	start := func(addr netip.Addr, password string) *bgp.Speaker {
		ctl := fleetCfg.Controllers[0]
		sp, err := bgp.Start(context.Background(), bgp.Config{
			RouterID: addr, ASN: fleetCfg.ASN, ListenPort: -1, GracefulRestart: true,
			Peers:  []bgp.Peer{{Address: ctl.Address, LocalAddress: addr, Password: password, ConnectRetry: time.Second}},
			Logger: testLog(t, addr.String()),
		})
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	// Each node dials with the password of its own user_data; node-d,
	// also in the inventory, with none.
	A, B := start(a, nodePassword(t, s, "node-a")), start(b, nodePassword(t, s, "node-b"))
	D := start(d, "")
	t.Cleanup(D.Stop)
	t.Cleanup(B.Stop)
	t.Cleanup(A.Stop)

	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %v; A %v; B %v; fleet %+v", what, timeout, A.Peers(), B.Peers(), s.Fleet().Nodes)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	up := func(sp *bgp.Speaker) bool {
		ps := sp.Peers()
		return len(ps) == 1 && ps[0].State == bgp.StateEstablished
	}
	t0 := time.Now()
	waitFor("sessions established", 20*time.Second, func() bool { return up(A) && up(B) })
	t.Logf("both nodes established with the reflector after %v", time.Since(t0).Round(time.Millisecond))

	route := bgp.Route{
		Family: bgp.VPNv4, RD: bgp.NewRD(a, 1), Prefix: netip.MustParsePrefix("10.0.10.5/32"),
		Label: 1001, NextHop: a, RouteTargets: []bgp.RouteTarget{{Type: routetarget.AS2, ASN: 64512, Local: 100}},
		Encaps: []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN}, OriginVN: 100,
	}
	if err := A.Announce(route); err != nil {
		t.Fatal(err)
	}
	var got bgp.Route
	received := func() bool {
		for _, r := range B.Received(bgp.VPNv4) {
			if r.Key() == route.Key() {
				got = r
				return true
			}
		}
		return false
	}
	waitFor("route at node-b", 5*time.Second, received)
	want := route
	want.LocalPref = 100 // the reflector sends iBGP's default
	if !got.Equal(want) || got.Peer != rrAddr {
		t.Errorf("node-b received\n %v\nwant\n %v from %v", got, want, rrAddr)
	}

	// The nodes report their sessions as the agent would.
	for name, sp := range map[string]*bgp.Speaker{"node-a": A, "node-b": B} {
		rep := &fleetapi.Report{IntervalSeconds: 5, Agent: &fleetapi.AgentStatus{RouterID: sp.Peers()[0].RouterID}}
		for _, p := range sp.Peers() {
			rep.Agent.BGP = append(rep.Agent.BGP, fleetapi.BGPSession{Peer: p.Address, State: p.State.String(), LastError: p.LastError})
		}
		if err := nodeClient(t, s, client.URL, name).Report(ctx, name, rep); err != nil {
			t.Fatal(err)
		}
	}
	var f *fleetapi.Fleet
	waitFor("fleet view", 5*time.Second, func() bool {
		f, err = client.Fleet(ctx)
		return err == nil && f.Nodes[0].Reflector.Routes == 1
	})
	if r := f.Reflector; r == nil || r.Established != 2 || !r.MD5 || r.ASN != 64512 || r.RouterID != rrAddr || r.Listen != "198.18.0.1:179" ||
		len(r.Clients) != 3 || r.Clients[0].String() != "198.18.0.11/32" {
		t.Errorf("reflector info %+v", f.Reflector)
	}
	for i, addr := range []netip.Addr{a, b} {
		n := f.Nodes[i]
		if !n.Reflector.Established() || n.Reflector.Peer != addr || n.Reflector.RouterID != addr || n.BGP == nil || n.BGP.Up != 1 || n.BGP.Total != 1 {
			t.Errorf("%s: reflector %+v, bgp %+v", n.Name, n.Reflector, n.BGP)
		}
	}
	if n := f.Nodes[2]; n.Reflector == nil || n.Reflector.State != "none" {
		t.Errorf("node-c never dialled: %+v", n.Reflector)
	}
	var table strings.Builder
	f.WriteTable(&table)
	t.Logf("weft ctl fleet:\n%s", table.String())

	// node-a's agent dies (no NOTIFICATION): the reflector notices, and
	// as a graceful-restart helper keeps its route for node-b.
	A.Abandon()
	waitFor("node-a's session down at the reflector", 10*time.Second, func() bool {
		return !s.Fleet().Nodes[0].Reflector.Established()
	})
	time.Sleep(time.Second) // a reflector without the helper withdraws at once
	if !received() {
		t.Error("node-b lost node-a's route when node-a's agent died: no graceful-restart helper")
	}
	if !up(B) {
		t.Errorf("node-b's session: %v", B.Peers())
	}

	// TCP MD5 is really on: the node without a password, dialling all
	// along, has no session.
	time.Sleep(time.Until(t0.Add(3 * time.Second)))
	if up(D) || s.Fleet().Nodes[3].Reflector.State != "none" {
		t.Errorf("a node without the TCP MD5 password got a session: %v; %+v", D.Peers(), s.Fleet().Nodes[3].Reflector)
	}
}

// waitReflector waits until s's reflector runs (Serve starts it).
func waitReflector(t *testing.T, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		running := s.rr != nil
		s.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reflector did not start")
		}
	}
}

// selfNS is the namespace the test binary was re-executed in (its own),
// with a netlink handle on it.
func selfNS(t *testing.T) (*nettest.NS, *netlink.Handle) {
	t.Helper()
	if os.Getenv(envInNetns) == "" {
		testenv.Unavailable(t, "not re-executed in a network namespace of its own")
	}
	h, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	self := &nettest.NS{Handle: h, NL: nl}
	// Registered first, so it runs after the caller's cleanups that use nl.
	t.Cleanup(func() { nl.Close(); h.Close() })
	return self, nl
}
