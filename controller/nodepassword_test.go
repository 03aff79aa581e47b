package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/controller/rr"
)

// serveReflector runs a controller with the reflector rc over the
// inventory doc until the test ends, its HTTP on loopback; it returns
// the server and the base URL (https) once the reflector runs.
func serveReflector(t *testing.T, doc string, rc rr.Config) (*Server, string) {
	t.Helper()
	s, err := New(Options{State: t.TempDir(), Inventory: writeTemp(t, doc), Log: testLog(t, "controller"), WatchInterval: -1, Reflector: &rc})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	waitReflector(t, s)
	return s, "https://" + addr + "/"
}

// fetchUserData is node's user_data from the controller at base, over
// https with the node's credential, as the node's config source asks.
func fetchUserData(t *testing.T, s *Server, base, node string) []byte {
	t.Helper()
	hc := nodeClient(t, s, base, node).HTTP
	resp, err := hc.Get(base + "openstack/latest/user_data")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s's user_data: %d %s %v", node, resp.StatusCode, b, err)
	}
	return b
}

// nodePassword is the reflector's password in node's user_data (served
// by s over a handler: TestReflector's HTTP is another's business).
func nodePassword(t *testing.T, s *Server, node string) string {
	t.Helper()
	r := get(asNode(t, s, node), "/openstack/latest/user_data", "192.0.2.254", "")
	c, err := config.Parse(r.Body.Bytes())
	if r.Code != http.StatusOK || err != nil {
		t.Fatalf("%s's user_data: %d %v", node, r.Code, err)
	}
	for _, ctl := range c.BGP.Controllers {
		if ctl.Address == s.rrSet.Dialled.Addr() {
			return ctl.Password
		}
	}
	t.Fatalf("%s's user_data has no entry for the reflector", node)
	return ""
}

// speakerFrom starts the agent's BGP speaker at addr toward the
// reflector entries of c (a node's weft.yaml), as the agent builds its
// peers (agent.bgpPeers); password, when not empty, replaces theirs.
func speakerFrom(t *testing.T, c *config.Config, addr netip.Addr, rrAddr netip.Addr, password string) *bgp.Speaker {
	t.Helper()
	var peers []bgp.Peer
	for _, ctl := range c.BGP.Controllers {
		if ctl.Address != rrAddr {
			continue
		}
		p := bgp.Peer{Address: ctl.Address, Port: ctl.Port, Password: ctl.Password, LocalAddress: addr, ConnectRetry: time.Second,
			HoldTime: time.Duration(ctl.HoldTime) * time.Second}
		if password != "" {
			p.Password = password
		}
		peers = append(peers, p)
	}
	sp, err := bgp.Start(context.Background(), bgp.Config{RouterID: addr, ASN: c.BGP.ASN, ListenPort: -1, Peers: peers, Logger: testLog(t, addr.String())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Stop)
	return sp
}

func established(sp *bgp.Speaker) bool {
	ps := sp.Peers()
	return len(ps) == 1 && ps[0].State == bgp.StateEstablished
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, timeout)
		}
	}
}

// TestNodePasswords: each node's user_data carries a reflector password
// of its own (in bgp.controllers and in its nodes: override), never the
// fleet's nor another node's; the reflector keys each on the node's
// address: node-a's password from node-b's address gets no session, the
// fleet's password gets none, and each node peers with what its own
// user_data says.
func TestNodePasswords(t *testing.T) {
	rrAddr := netip.MustParseAddr("198.18.0.1")
	a, b, x := netip.MustParseAddr("198.18.0.21"), netip.MustParseAddr("198.18.0.22"), netip.MustParseAddr("198.18.0.23")
	underlay(t, rrAddr, a, b, x)
	doc := fmt.Sprintf(`config:
  bgp:
    asn: 64512
    # the embedded reflector, and one outside the controller
    controllers:
      - {address: %v, password: fleet-s3cret}
      - address: 198.18.0.99
        password: outside-s3cret
  nodes:
    - hostname: node-b
      bgp:
        controllers: [{address: %v, password: fleet-s3cret, holdTime: 30}]
nodes:
  - {name: node-a, address: %v}
  - {name: node-b, address: %v}
  - {name: node-x, address: %v}
`, rrAddr, rrAddr, a, b, x)
	s, base := serveReflector(t, doc, rr.Config{Listen: netip.AddrPortFrom(rrAddr, 179)})

	uA, uB := fetchUserData(t, s, base, "node-a"), fetchUserData(t, s, base, "node-b")
	cA, err := config.Parse(uA)
	if err != nil {
		t.Fatalf("node-a's user_data: %v\n%s", err, uA)
	}
	cB, err := config.Parse(uB)
	if err != nil {
		t.Fatalf("node-b's user_data: %v\n%s", err, uB)
	}
	cB = cB.ForNode("node-b", nil)
	pwA, pwB := cA.BGP.Controllers[0].Password, cB.BGP.Controllers[0].Password
	if pwA == "" || pwB == "" || pwA == pwB || cB.BGP.Controllers[0].HoldTime != 30 {
		t.Errorf("passwords: node-a %q, node-b %q (with its override %+v)", pwA, pwB, cB.BGP.Controllers)
	}
	for name, u := range map[string][]byte{"node-a": uA, "node-b": uB} {
		other := map[string]string{"node-a": pwB, "node-b": pwA}[name]
		if bytes.Contains(u, []byte("fleet-s3cret")) || bytes.Contains(u, []byte(other)) || !bytes.Contains(u, []byte("outside-s3cret")) ||
			!bytes.Contains(u, []byte("# the embedded reflector")) {
			t.Errorf("%s's user_data holds the fleet's or another node's password, or lost the rest:\n%s", name, u)
		}
	}
	t.Logf("node-a's user_data:\n%s", uA)

	// node-a's password from node-b's address, and the fleet's password
	// from node-x's: the kernel drops their segments (MD5 mismatch).
	t0 := time.Now()
	thief := speakerFrom(t, cA, b, rrAddr, "")
	fleetPw := speakerFrom(t, cA, x, rrAddr, "fleet-s3cret")
	// The speakers' first dial waits 1-2 s, then retries each second.
	time.Sleep(time.Until(t0.Add(4 * time.Second)))
	if established(thief) || established(fleetPw) {
		t.Fatalf("a session with another node's or the fleet's password: %v; %v", thief.Peers(), fleetPw.Peers())
	}
	for _, n := range s.Fleet().Nodes {
		if n.Reflector != nil && n.Reflector.State != "none" {
			t.Errorf("%s at the reflector: %+v", n.Name, n.Reflector)
		}
	}
	if e := thief.Peers()[0].LastError; !strings.Contains(e, "MD5") {
		t.Logf("the thief's last error: %q", e)
	}
	thief.Stop()

	// Each node with its own user_data: established.
	A, B := speakerFrom(t, cA, a, rrAddr, ""), speakerFrom(t, cB, b, rrAddr, "")
	waitUntil(t, "node-a and node-b established with their own passwords", 20*time.Second, func() bool { return established(A) && established(B) })
	if established(fleetPw) {
		t.Errorf("the fleet's password got a session: %v", fleetPw.Peers())
	}
}

// TestFleetPassword: with FleetPassword (--bgp-fleet-password) the
// fleet's password is accepted from the client prefixes, for nodes the
// controller does not know the address of; a node it knows still needs
// its own.
func TestFleetPassword(t *testing.T) {
	rrAddr := netip.MustParseAddr("198.18.0.1")
	a, x := netip.MustParseAddr("198.18.0.31"), netip.MustParseAddr("198.18.0.32")
	underlay(t, rrAddr, a, x)
	doc := fmt.Sprintf(`config:
  bgp:
    asn: 64512
    controllers: [{address: %v, password: fleet-s3cret}]
nodes:
  - {name: node-a, address: %v}
`, rrAddr, a)
	if _, err := New(Options{State: t.TempDir(), Inventory: writeTemp(t, doc), WatchInterval: -1, Log: testLog(t, "controller"),
		Reflector: &rr.Config{Listen: netip.AddrPortFrom(rrAddr, 179), FleetPassword: true}}); err == nil || !strings.Contains(err.Error(), "--bgp-clients") {
		t.Errorf("the fleet password without client prefixes: %v", err)
	}
	s, _ := serveReflector(t, doc, rr.Config{Listen: netip.AddrPortFrom(rrAddr, 179), FleetPassword: true,
		Clients: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}})
	c, err := config.Parse(s.Inventory().UserData)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	X := speakerFrom(t, c, x, rrAddr, "")      // the fleet's password, an address nobody has
	stolen := speakerFrom(t, c, a, rrAddr, "") // the fleet's password, node-a's address
	waitUntil(t, "the fleet's password from an unknown address", 20*time.Second, func() bool { return established(X) })
	time.Sleep(time.Until(t0.Add(4 * time.Second)))
	if established(stolen) {
		t.Errorf("the fleet's password from node-a's address got a session: %v", stolen.Peers())
	}
	stolen.Stop()
	A := speakerFrom(t, c, a, rrAddr, nodePassword(t, s, "node-a"))
	waitUntil(t, "node-a with its own password", 20*time.Second, func() bool { return established(A) })
}

func writeTemp(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnknownAddressRefused: with client prefixes and no fleet password,
// an address in them that no node is known by gets no session, though it
// needs no password to reach the listener (no key covers it).
func TestUnknownAddressRefused(t *testing.T) {
	rrAddr := netip.MustParseAddr("198.18.0.1")
	a, x := netip.MustParseAddr("198.18.0.41"), netip.MustParseAddr("198.18.0.42")
	underlay(t, rrAddr, a, x)
	doc := fmt.Sprintf(`config:
  bgp:
    asn: 64512
    controllers: [{address: %v}]
nodes:
  - {name: node-a, address: %v}
`, rrAddr, a)
	s, _ := serveReflector(t, doc, rr.Config{Listen: netip.AddrPortFrom(rrAddr, 179), Clients: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}})
	c, err := config.Parse(s.Inventory().UserData)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	X := speakerFrom(t, c, x, rrAddr, "")
	A := speakerFrom(t, c, a, rrAddr, nodePassword(t, s, "node-a"))
	waitUntil(t, "node-a with its own password", 20*time.Second, func() bool { return established(A) })
	time.Sleep(time.Until(t0.Add(4 * time.Second)))
	if established(X) {
		t.Errorf("an address no node is known by got a session without a password: %v", X.Peers())
	}
}
