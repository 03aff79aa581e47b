package controller

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"
)

// clock is a settable time for staleness tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func fleetServer(t *testing.T) (*Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s, err := New(Options{State: t.TempDir(), Inventory: "inventory/testdata/fleet.yaml", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchInterval: -1, now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// post sends node's report to s as if from addr, with node's credential.
func post(t *testing.T, s *Server, node, addr, macs string, r *fleetapi.Report) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/weft/v1/nodes/"+node+"/report", strings.NewReader(string(b)))
	req.RemoteAddr = net.JoinHostPort(addr, "40000")
	req.Header.Set("Content-Type", "application/json")
	if macs != "" {
		req.Header.Set(fleetapi.MACHeader, macs)
	}
	w := httptest.NewRecorder()
	asNode(t, s, node).ServeHTTP(w, req)
	return w
}

// bootSteps is a node's boot up to step last, with verdict v.
func bootSteps(t0 time.Time, last string, v fleetapi.Verdict, detail string) []fleetapi.Step {
	names := []string{"mounts", "modules", "cmdline", "underlay", "url", "config", "hostname", "services", "ready"}
	var out []fleetapi.Step
	for i, n := range names {
		s := fleetapi.Step{Name: n, Verdict: fleetapi.VerdictOK, Time: t0.Add(time.Duration(i) * time.Second)}
		if n == last {
			s.Verdict, s.Detail = v, detail
			out = append(out, s)
			break
		}
		out = append(out, s)
	}
	return out
}

func TestFleet(t *testing.T) {
	s, clk := fleetServer(t)
	t0 := clk.now().Add(-time.Minute)

	// node-a: ready, agent up.
	ready := &fleetapi.Report{IntervalSeconds: 10, Steps: bootSteps(t0, "ready", fleetapi.VerdictOK, ""), Agent: &fleetapi.AgentStatus{
		RouterID: netip.MustParseAddr("10.0.2.15"),
		BGP: []fleetapi.BGPSession{{Peer: netip.MustParseAddr("10.0.2.2"), State: "established"},
			{Peer: netip.MustParseAddr("10.0.2.3"), State: "active", LastError: "connection refused"}},
		Endpoints: []fleetapi.Endpoint{{Name: "web1", Network: "leonardo", Address: netip.MustParsePrefix("10.0.10.5/24")}},
	}}
	if w := post(t, s, "node-a", "10.0.2.15", "52:54:00:00:00:01", ready); w.Code != 204 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	// node-b: stuck at the config step; reported from NAT (another address).
	stuck := &fleetapi.Report{Steps: bootSteps(t0, "config", fleetapi.VerdictFailed, "user_data: bgp.asn (line 3): 0 is out of range")}
	if w := post(t, s, "node-b", "192.0.2.50", "", stuck); w.Code != 204 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	// node-c: fetched its config, no report yet (MAC only: its address is
	// where the fetch came from).
	if w := get(asNode(t, s, "node-c"), "/openstack/latest/meta_data.json", "10.0.2.17", "52:54:00:00:00:03"); w.Code != 200 {
		t.Fatalf("fetch: %d %s", w.Code, w.Body)
	}

	// Refused reports (node-a's credential on each).
	for _, tt := range []struct {
		node, macs, body string
		code             int
		msg              string
	}{
		{"node-x", "", `{}`, 403, `weft controller: the credential is node node-a's, not node node-x's`},
		{"node-b", "", `{}`, 403, `weft controller: the credential is node node-a's, not node node-b's`},
		{"node-a", "52:54:00:00:00:02", `{}`, 409, "weft controller: a report for node node-a, but X-Weft-MAC 52:54:00:00:00:02 are node node-b's in the inventory"},
		{"node-a", "", `{"steps": [{"name": "x"}]}`, 400, "weft controller: report: steps[0].verdict: required"},
		{"node-a", "", strings.Repeat(" ", fleetapi.MaxReportBytes+1), 413, "weft controller: reading the report"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/weft/v1/nodes/"+tt.node+"/report", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", "application/json")
		if tt.macs != "" {
			req.Header.Set(fleetapi.MACHeader, tt.macs)
		}
		w := httptest.NewRecorder()
		asNode(t, s, "node-a").ServeHTTP(w, req)
		if w.Code != tt.code || !strings.HasPrefix(w.Body.String(), tt.msg) {
			t.Errorf("report for %s: %d %q, want %d %q", tt.node, w.Code, w.Body, tt.code, tt.msg)
		}
	}

	clk.add(5 * time.Second)
	w := get(operator(t, s), "/weft/v1/fleet", "127.0.0.1", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("fleet: %d %s", w.Code, w.Body)
	}
	// The JSON contract: field names as documented.
	var raw map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	nodes := raw["nodes"].([]any)
	a := nodes[0].(map[string]any)
	for _, k := range []string{"name", "address", "macs", "uuid", "phase", "ready", "stale", "lastSeen", "intervalSeconds", "lastStep", "steps", "bgp", "endpoints"} {
		if _, ok := a[k]; !ok {
			t.Errorf("node JSON lacks %q: %v", k, a)
		}
	}
	if bgp := a["bgp"].(map[string]any); bgp["up"] != 1.0 || bgp["total"] != 2.0 {
		t.Errorf("bgp JSON %v", bgp)
	}
	if raw["time"] != "2026-03-01T12:00:05Z" || !strings.HasSuffix(raw["inventory"].(string), "inventory/testdata/fleet.yaml") {
		t.Errorf("fleet JSON: time %v inventory %v", raw["time"], raw["inventory"])
	}

	var f fleetapi.Fleet
	if err := json.Unmarshal(w.Body.Bytes(), &f); err != nil {
		t.Fatal(err)
	}
	got := map[string]fleetapi.NodeStatus{}
	for _, n := range f.Nodes {
		got[n.Name] = n
	}
	na, nb, nc := got["node-a"], got["node-b"], got["node-c"]
	if na.Phase != fleetapi.PhaseReady || !na.Ready || na.Stale || na.LastStep.Name != "ready" || na.BGP.Up != 1 || na.BGP.Total != 2 ||
		len(na.Endpoints) != 1 || na.Address.String() != "10.0.2.15" || !na.LastSeen.Equal(clk.now().Add(-5*time.Second)) || na.IntervalSeconds != 10 {
		t.Errorf("node-a: %+v", na)
	}
	if nb.Phase != fleetapi.PhaseStuck || nb.Ready || len(nb.Problems) != 1 || nb.Problems[0].Name != "config" || !strings.Contains(nb.Problems[0].Detail, "bgp.asn") ||
		nb.LastStep.Verdict != fleetapi.VerdictFailed || nb.BGP != nil || nb.Address.String() != "10.0.2.16" || nb.IntervalSeconds != 30 {
		t.Errorf("node-b: %+v", nb)
	}
	if nc.Phase != fleetapi.PhaseBooting || nc.LastStep != nil || nc.ConfigFetched.IsZero() || nc.Address.String() != "10.0.2.17" || nc.UUID != "5f0c3b1e-8d2a-4c7e-9b1a-2e4f6a8c0d12" {
		t.Errorf("node-c: %+v", nc)
	}
	if f.Reflector != nil || na.Reflector != nil {
		t.Errorf("reflector info without a reflector: %+v %+v", f.Reflector, na.Reflector)
	}

	// Staleness: 3 intervals of node-a's (10 s), node-b's default (30 s).
	for _, tt := range []struct {
		after        time.Duration // since the reports
		staleA       bool
		staleB       bool
		phaseA       fleetapi.Phase
		phaseB       fleetapi.Phase
		readyA, okay bool
	}{
		{after: 30 * time.Second, phaseA: fleetapi.PhaseReady, phaseB: fleetapi.PhaseStuck, readyA: true},
		{after: 31 * time.Second, staleA: true, phaseA: fleetapi.PhaseStale, phaseB: fleetapi.PhaseStuck},
		{after: 91 * time.Second, staleA: true, staleB: true, phaseA: fleetapi.PhaseStale, phaseB: fleetapi.PhaseStale},
	} {
		clk.t = t0.Add(time.Minute).Add(tt.after)
		f := s.Fleet()
		a, b := f.Nodes[0], f.Nodes[1]
		if a.Stale != tt.staleA || b.Stale != tt.staleB || a.Phase != tt.phaseA || b.Phase != tt.phaseB || a.Ready != tt.readyA {
			t.Errorf("after %v: node-a stale %v %s ready %v, node-b stale %v %s", tt.after, a.Stale, a.Phase, a.Ready, b.Stale, b.Phase)
		}
	}
	// A new report makes the node fresh again.
	post(t, s, "node-a", "10.0.2.15", "", ready)
	if a := s.Fleet().Nodes[0]; a.Stale || a.Phase != fleetapi.PhaseReady {
		t.Errorf("after a new report: %+v", a)
	}
}

// TestClient: a node's phone-home and `weft ctl fleet` through fleetapi.Client.
func TestClient(t *testing.T) {
	s, _ := fleetServer(t)
	ts := startAPI(t, s)
	ctx := context.Background()
	node := nodeClient(t, s, ts.URL+"/", "node-b", mustMAC(t, "52:54:00:00:00:02"))
	if err := node.Report(ctx, "node-b", &fleetapi.Report{Steps: bootSteps(time.Now(), "ready", fleetapi.VerdictOK, "")}); err != nil {
		t.Fatal(err)
	}
	err := node.Report(ctx, "node-a", &fleetapi.Report{})
	if err == nil || !strings.Contains(err.Error(), "HTTP 403 Forbidden: weft controller: the credential is node node-b's, not node node-a's") {
		t.Errorf("report under another node's name: %v", err)
	}
	f, err := operatorClient(t, s, ts.URL).Fleet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Nodes[1]; n.Name != "node-b" || n.Phase != fleetapi.PhaseReady {
		t.Errorf("node-b: %+v", n)
	}
	for _, u := range []string{"", "10.0.2.2", "ftp://10.0.2.2/"} {
		if _, err := (&fleetapi.Client{URL: u}).Fleet(ctx); err == nil || !strings.Contains(err.Error(), "want http://HOST[:PORT]/") {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}

// TestNoDHCPViewWithoutServe: the fleet view shows a DHCP server only
// while Serve runs one.
func TestNoDHCPViewWithoutServe(t *testing.T) {
	s, err := New(Options{State: t.TempDir(), Inventory: "dhcp/testdata/dhcp.yaml", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Fleet(); f.DHCP != nil {
		t.Errorf("a DHCP view without Serve: %+v", f.DHCP)
	}
}
