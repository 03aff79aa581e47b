package controller

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/controller/dhcp"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// barPassword is the fleet's BGP password in the identity test's
// weft.yaml: the secret no host but a node may read.
const barPassword = "bar-Md5-s3cret"

const barInventory = `config:
  bgp:
    asn: 64512
    controllers:
      - {address: 198.18.10.1, password: ` + barPassword + `}
nodes:
  - {name: node-1, macs: ["52:54:00:0d:00:01"], address: 198.18.10.11}
  - {name: node-2, macs: ["52:54:00:0d:00:02"], address: 198.18.10.12}
`

// nsHTTP is an HTTP client pinning the controller's CA (as a node does;
// the pin is no secret: it is on every node's kernel command line) whose
// connections are opened in ns.
func nsHTTP(ns *nettest.NS, pin fleetapi.Pin) *http.Client {
	return fleetapi.HTTPClient(pin, func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	})
}

// TestIdentityOnTheSegment is issue 9's bar 1 (its first two clauses),
// over real sockets: the controller's DHCP server and HTTP on a bridge in
// the test's namespace; node-1 in namespace wtid-n takes its lease and
// claims; a hostile host in wtid-h on the same segment, sending node-1's
// MAC in X-Weft-MAC, gets 401/403 and never the BGP password; a second
// claim of node-1's identity is refused and shows in the fleet view.
func TestIdentityOnTheSegment(t *testing.T) {
	testenv.SkipIfShort(t)
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "udhcpc", "unshare", "mount")
	self, nl := selfNS(t)
	t.Cleanup(func() {
		for _, l := range []string{"wtidbr", "wtid0", "wtid2"} {
			if link, err := nl.LinkByName(l); err == nil {
				nl.LinkDel(link)
			}
		}
	})
	node := nettest.New(t, "wtid-n")
	hostile := nettest.New(t, "wtid-h")
	self.Bridge(t, "wtidbr")
	self.Up(t, "wtidbr", "198.18.10.1/24")
	nettest.Veth(t, self, "wtid0", "", node, dhcpClientIf, "")
	nettest.Veth(t, self, "wtid2", "", hostile, "wtid3", "198.18.10.66/24")
	self.Attach(t, "wtidbr", "wtid0")
	self.Attach(t, "wtidbr", "wtid2")

	inv := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(inv, []byte(barInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{t: t}
	s, err := New(Options{Inventory: inv, WatchInterval: -1, Log: slog.New(slog.NewTextHandler(logs, nil)),
		DHCP: &dhcp.Config{Interface: "wtidbr"}, State: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "198.18.10.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String() + "/"
	serveOn(t, s, ln)
	waitFor(t, 5*time.Second, "the DHCP server", func() bool { return s.Fleet().DHCP != nil })

	// The hostile host: node-1's MAC in its header, any credential it can
	// make up; no answer may hold the secret.
	evil := nsHTTP(hostile, s.CA())
	ask := func(method, path, cred, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+strings.TrimPrefix(path, "/"), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(fleetapi.MACHeader, "52:54:00:0d:00:01")
		req.Header.Set("Content-Type", "application/json")
		fleetapi.SetAuth(req.Header, cred)
		resp, err := evil.Do(req)
		if err != nil {
			t.Fatalf("%s %s from the hostile host: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if bytes.Contains(b, []byte(barPassword)) {
			t.Errorf("%s %s from the hostile host: the BGP password in the answer (%d)", method, path, resp.StatusCode)
		}
		return resp.StatusCode, string(b)
	}
	attack := func(when string) {
		t.Helper()
		for _, path := range []string{"/openstack/latest/meta_data.json", "/openstack/latest/user_data", "/openstack/latest/network_data.json", "/openstack/latest/"} {
			for _, cred := range []string{"", "0123456789abcdef.bm90LWEtY3JlZGVudGlhbA"} {
				if code, body := ask("GET", path, cred, ""); code != 401 {
					t.Errorf("%s: GET %s (credential %q) from the hostile host: %d %s, want 401", when, path, cred, code, body)
				}
			}
		}
		if code, body := ask("POST", "/weft/v1/nodes/node-1/report", "", `{}`); code != 401 {
			t.Errorf("%s: a report for node-1 from the hostile host: %d %s", when, code, body)
		}
		if code, body := ask("GET", "/weft/v1/nodes/node-1/tasks", "", ""); code != 401 {
			t.Errorf("%s: node-1's tasks from the hostile host: %d %s", when, code, body)
		}
		if code, body := ask("POST", fleetapi.ClaimPath, "", `{}`); code != 403 || !strings.Contains(body, "node node-1's") {
			t.Errorf("%s: a claim of node-1 from the hostile host: %d %s, want 403", when, code, body)
		}
	}
	attack("before node-1 boots")

	// node-1 boots: its lease arms the claim, for its address.
	resetClient(t, node, "52:54:00:0d:00:01")
	if env, err := udhcpcEnv(t, node); err != nil || env["ip"] != "198.18.10.11" {
		t.Fatalf("node-1's lease: %v %v", env, err)
	}
	if id := s.Fleet().Nodes[0].Identity; id == nil || id.Armed == nil || id.Armed.By != "dhcp" || id.Armed.Address.String() != "198.18.10.11" {
		t.Fatalf("node-1's claim is not armed by its lease: %+v", id)
	}
	// It claims and fetches its configuration as PID 1 does.
	source.NodeMACs = func() []net.HardwareAddr { return []net.HardwareAddr{mustMAC(t, "52:54:00:0d:00:01")} }
	claim := &fleetapi.Claimer{URL: base, HTTP: nsHTTP(node, s.CA()), MACs: source.NodeMACs}
	src := source.NewURL(base, slog.New(slog.DiscardHandler), claim)
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	b, err := src.Fetch(fctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.MetaData == nil || b.MetaData.Name != "node-1" || !bytes.Contains(b.UserData, []byte(barPassword)) {
		t.Fatalf("node-1's own config: %+v %q", b.MetaData, b.UserData)
	}
	// Its reports go with its credential.
	nc := &fleetapi.Client{URL: base, HTTP: claim.HTTP, Node: claim}
	if err := nc.Report(fctx, "node-1", &fleetapi.Report{Steps: bootSteps(time.Now(), "config", fleetapi.VerdictOK, "")}); err != nil {
		t.Errorf("node-1's report: %v", err)
	}
	if err := nc.Report(fctx, "node-2", &fleetapi.Report{}); !fleetapi.IsStatus(err, 403) {
		t.Errorf("node-1's report as node-2: %v, want 403", err)
	}
	attack("after node-1's claim")

	// A second claim of node-1's identity, from node-1's own address:
	// refused, logged and shown.
	second := &fleetapi.Claimer{URL: base, HTTP: nsHTTP(node, s.CA()), MACs: source.NodeMACs}
	if _, err := second.Credential(fctx); !fleetapi.IsStatus(err, 403) || !strings.Contains(err.Error(), "node node-1's identity was claimed already") {
		t.Errorf("a second claim: %v, want 403", err)
	}
	f := s.Fleet()
	id := f.Nodes[0].Identity
	if id == nil || id.Refused == nil || !id.Refused.Twice || id.Refused.From.String() != "198.18.10.11" || id.Claimed.IsZero() || id.ClaimedFrom.String() != "198.18.10.11" {
		t.Fatalf("node-1's identity in the fleet view: %+v", id)
	}
	var table strings.Builder
	f.WriteTable(&table)
	if !strings.Contains(table.String(), "node-1: identity claimed twice: from 198.18.10.11 at ") {
		t.Errorf("the fleet table:\n%s", table.String())
	}
	w := get(operator(t, s), "/", "127.0.0.1", "")
	if !strings.Contains(w.Body.String(), "identity claimed twice: from 198.18.10.11 at ") {
		t.Errorf("the web page does not show the second claim")
	}
	if !strings.Contains(logs.String(), `level=WARN msg="identity claimed twice: refused`) {
		t.Errorf("the second claim is not logged:\n%s", logs)
	}
	// The first credential still serves node-1: a later fetch (a config
	// reload) reuses it without claiming.
	if b, err := src.Fetch(fctx); err != nil || b.MetaData.Name != "node-1" {
		t.Errorf("node-1's second fetch: %v", err)
	}

	// node-2's credential (an operator armed it for the hostile address)
	// serves node-2's routes only.
	if _, err := operatorClient(t, s, base).Arm(fctx, "node-2", netip.MustParseAddr("198.18.10.66")); err != nil {
		t.Fatal(err)
	}
	two := &fleetapi.Claimer{URL: base, HTTP: evil, MACs: func() []net.HardwareAddr { return []net.HardwareAddr{mustMAC(t, "52:54:00:0d:00:02")} }}
	cred2, err := two.Credential(fctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/weft/v1/nodes/node-1/report", `{}`},
		{"GET", "/weft/v1/nodes/node-1/tasks", ""},
	} {
		if code, body := ask(r.method, r.path, cred2, r.body); code != 403 {
			t.Errorf("%s %s with node-2's credential: %d %s, want 403", r.method, r.path, code, body)
		}
	}
	if code, body := ask("GET", "/openstack/latest/meta_data.json", cred2, ""); code != 200 || !strings.Contains(body, `"name":"node-2"`) {
		t.Errorf("node-1's MAC with node-2's credential: %d %s, want node-2's own document", code, body)
	}
}
