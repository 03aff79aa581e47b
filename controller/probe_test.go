package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/access"
	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// fakeAgent is the node side of the probe protocol as the tests play it:
// it long-polls its node's tasks and answers each from a table, the way
// the node's agent will after running the probe in the endpoint's
// namespace.
type fakeAgent struct {
	c    *fleetapi.Client
	node string
	mu   sync.Mutex
	seen []fleetapi.ProbeTask
}

// fakeResult is what the fake agent "sees": 10.0.10.6 answers echo
// requests, nothing listens on TCP, endpoint web1 is the only one.
func fakeResult(t fleetapi.ProbeTask) fleetapi.ProbeResult {
	switch {
	case t.Endpoint != "web1":
		return fleetapi.ProbeResult{Detail: "no endpoint " + t.Endpoint + " on this node"}
	case t.Kind == fleetapi.ProbeTCP:
		return fleetapi.ProbeResult{Detail: fmt.Sprintf("connect to %s port %d: connection refused", t.To, t.Port)}
	case t.To == netip.MustParseAddr("10.0.10.6"):
		return fleetapi.ProbeResult{OK: true, Detail: fmt.Sprintf("%d/%d replies, rtt 1.2 ms", t.Count, t.Count), RTTMicros: 1200}
	}
	return fleetapi.ProbeResult{Detail: fmt.Sprintf("0/%d replies", t.Count)}
}

// run serves tasks until ctx ends.
func (a *fakeAgent) run(ctx context.Context, t *testing.T) {
	for ctx.Err() == nil {
		tasks, err := a.c.Tasks(ctx, a.node)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("fake agent: tasks: %v", err)
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		for _, task := range tasks {
			a.mu.Lock()
			a.seen = append(a.seen, task)
			a.mu.Unlock()
			if err := a.c.ProbeResult(ctx, task.ID, fakeResult(task)); err != nil && ctx.Err() == nil {
				t.Errorf("fake agent: result: %v", err)
			}
		}
	}
}

// startAgent runs a fake agent for node-a (MAC 52:54:00:00:00:01) of
// inventory/testdata/fleet.yaml against ts until the test ends; ts must be closed
// by a cleanup registered before.
func startAgent(t *testing.T, s *Server, ts *httptest.Server) *fakeAgent {
	a := &fakeAgent{c: nodeClient(t, s, ts.URL+"/", "node-a", mustMAC(t, "52:54:00:00:00:01")), node: "node-a"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.run(ctx, t)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// TestProbeCycle: an operator's probe goes to the node's agent through a
// long poll, and the agent's result comes back through the controller,
// by the fleetapi.Client's methods, as make demo and weft ctl use them.
func TestProbeCycle(t *testing.T) {
	s, _ := fleetServer(t)
	ts := startAPI(t, s) // closed after the agent's cleanup ends its long poll
	agent := startAgent(t, s, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op := operatorClient(t, s, ts.URL)
	hc := operatorHTTP(t, s)

	p, err := op.Probe(ctx, fleetapi.ProbeRequest{Node: "NODE-A", Endpoint: "web1", To: netip.MustParseAddr("10.0.10.6"), Kind: fleetapi.ProbeICMP})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID == "" || p.Node != "node-a" || p.State != fleetapi.ProbePending || p.Count != fleetapi.DefaultProbeCount || p.TimeoutMillis != 2000 || p.Created.IsZero() {
		t.Errorf("as posted: %+v", p)
	}
	t0 := time.Now()
	done, err := op.WaitProbe(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(t0) > 5*time.Second {
		t.Errorf("the probe took %v: the long polls do not wake", time.Since(t0))
	}
	if done.State != fleetapi.ProbeDone || !done.OK || done.Detail != "3/3 replies, rtt 1.2 ms" || done.RTTMicros != 1200 ||
		done.Started.IsZero() || done.Finished.IsZero() || done.ID != p.ID || done.To != p.To {
		t.Errorf("done: %+v", done)
	}
	if got := done.Summary(); got != "node-a/web1 → 10.0.10.6 icmp: ok: 3/3 replies, rtt 1.2 ms" {
		t.Errorf("summary %q", got)
	}
	agent.mu.Lock()
	task := agent.seen[0]
	agent.mu.Unlock()
	if want := (fleetapi.ProbeTask{ID: p.ID, Endpoint: "web1", To: p.To, Kind: fleetapi.ProbeICMP, Count: 3, TimeoutMillis: 2000}); task != want {
		t.Errorf("the agent got %+v, want %+v", task, want)
	}

	// A failing TCP probe, straight through the HTTP API.
	resp, err := hc.Post(ts.URL+"/weft/v1/probes", "application/json",
		strings.NewReader(`{"node":"node-a","endpoint":"web1","to":"10.0.10.7","kind":"tcp","port":5432,"count":2,"timeoutMillis":500}`))
	if err != nil {
		t.Fatal(err)
	}
	var posted map[string]any
	json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	id, _ := posted["id"].(string)
	if resp.StatusCode != 201 || id == "" || resp.Header.Get("Location") != "/weft/v1/probes/"+id || posted["state"] != "pending" {
		t.Fatalf("POST: %s %v", resp.Status, posted)
	}
	failed, err := op.WaitProbe(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if failed.State != fleetapi.ProbeDone || failed.OK || failed.Detail != "connect to 10.0.10.7 port 5432: connection refused" || failed.Port != 5432 || failed.Count != 2 {
		t.Errorf("failed: %+v", failed)
	}
	// The document as the brief's readers see it: field names and values.
	var doc map[string]any
	resp, err = hc.Get(ts.URL + "/weft/v1/probes/" + id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || json.Unmarshal(b, &doc) != nil {
		t.Fatal(resp.Status, err)
	}
	for k, want := range map[string]any{"id": id, "node": "node-a", "endpoint": "web1", "to": "10.0.10.7", "kind": "tcp", "port": 5432.0,
		"count": 2.0, "timeoutMillis": 500.0, "state": "done", "ok": false} {
		if doc[k] != want {
			t.Errorf("GET probe: %s = %v, want %v", k, doc[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(doc["finished"])); err != nil {
		t.Errorf("finished %v: %v", doc["finished"], err)
	}

	list, err := op.Probes(ctx)
	if err != nil || len(list) != 2 || list[0].ID != id || list[1].ID != p.ID {
		t.Errorf("list: %+v %v", list, err)
	}
	if n := s.Fleet().Nodes[0]; n.TasksPolled.IsZero() {
		t.Errorf("node-a's polls are not in the fleet view: %+v", n)
	}
	page := get(operator(t, s), "/", "127.0.0.1", "").Body.String()
	for _, want := range []string{`<tr data-probe="` + p.ID + `" data-state="done" data-ok="true">`, `<tr data-probe="` + id + `" data-state="done" data-ok="false">`,
		"10.0.10.7 tcp/5432", "connection refused", "1.2 ms"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

// TestTasksLongPoll: a poll waiting when a probe comes answers at once; one
// that waits in vain answers an empty list when its wait ends.
func TestTasksLongPoll(t *testing.T) {
	s, _ := fleetServer(t)
	ts := startAPI(t, s)
	poll := func(wait string) (int, string) {
		resp, err := nodeClient(t, s, ts.URL, "node-b").HTTP.Get(ts.URL + "/weft/v1/nodes/node-b/tasks?wait=" + wait)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t0 := time.Now()
	if code, body := poll("300ms"); code != 200 || body != "{\n  \"probes\": []\n}\n" || time.Since(t0) < 300*time.Millisecond {
		t.Errorf("an empty poll: %d %q after %v", code, body, time.Since(t0))
	}
	got := make(chan string, 1)
	go func() { _, body := poll("20s"); got <- body }()
	time.Sleep(200 * time.Millisecond) // the poll waits
	posted := time.Now()
	w := postProbe(t, s, `{"node":"node-b","endpoint":"e1","to":"fd00::7","kind":"icmp","count":1}`)
	if w.Code != 201 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	select {
	case body := <-got:
		var tasks fleetapi.Tasks
		if err := json.Unmarshal([]byte(body), &tasks); err != nil || len(tasks.Probes) != 1 || tasks.Probes[0].To != netip.MustParseAddr("fd00::7") {
			t.Errorf("tasks %s", body)
		}
		if d := time.Since(posted); d > 2*time.Second {
			t.Errorf("the poll answered %v after the probe came", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting poll did not get the probe")
	}
	// Taken once only.
	if _, body := poll("0s"); body != "{\n  \"probes\": []\n}\n" {
		t.Errorf("a second poll: %s", body)
	}
}

func postProbe(t *testing.T, s *Server, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/weft/v1/probes", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	operator(t, s).ServeHTTP(w, r)
	return w
}

func probeOf(t *testing.T, s *Server, id string) fleetapi.Probe {
	t.Helper()
	w := get(operator(t, s), "/weft/v1/probes/"+id, "127.0.0.1", "")
	var p fleetapi.Probe
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &p) != nil {
		t.Fatalf("GET probe %s: %d %s", id, w.Code, w.Body)
	}
	return p
}

// nodeRequest sends a request to s with node's credential ("" = none).
func nodeRequest(t *testing.T, s *Server, node, method, path, macs, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = "10.0.2.16:40000"
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	if macs != "" {
		r.Header.Set(fleetapi.MACHeader, macs)
	}
	w := httptest.NewRecorder()
	if node == "" {
		s.Handler().ServeHTTP(w, r)
	} else {
		asNode(t, s, node).ServeHTTP(w, r)
	}
	return w
}

// TestProbeExpiry: a probe no agent takes within a minute expires, saying
// so and when the agent last polled; one taken but never answered expires
// once its attempts and a grace are over; a late result is refused.
func TestProbeExpiry(t *testing.T) {
	s, clk := fleetServer(t)
	w := postProbe(t, s, `{"node":"node-b","endpoint":"e1","to":"10.0.10.6","kind":"icmp"}`)
	var p fleetapi.Probe
	json.Unmarshal(w.Body.Bytes(), &p)
	clk.add(fleetapi.ProbePickupTimeout - time.Second)
	if got := probeOf(t, s, p.ID); got.State != fleetapi.ProbePending {
		t.Fatalf("before its minute: %+v", got)
	}
	clk.add(time.Second)
	got := probeOf(t, s, p.ID)
	if got.State != fleetapi.ProbeExpired || got.OK || got.Finished != clk.now() ||
		got.Detail != "node node-b's agent did not poll for tasks within 1m0s (it never polled): is its agent running, and does it reach the controller?" {
		t.Errorf("expired: %+v", got)
	}

	// The agent polled once, then went away.
	if w := nodeRequest(t, s, "node-b", http.MethodGet, "/weft/v1/nodes/node-b/tasks", "", ""); w.Code != 200 {
		t.Fatalf("poll: %d %s", w.Code, w.Body)
	}
	clk.add(10 * time.Minute)
	json.Unmarshal(postProbe(t, s, `{"node":"node-b","endpoint":"e1","to":"10.0.10.6","kind":"icmp"}`).Body.Bytes(), &p)
	clk.add(fleetapi.ProbePickupTimeout)
	if got := probeOf(t, s, p.ID); !strings.Contains(got.Detail, "(it last polled 11m00s ago)") {
		t.Errorf("expired after a poll: %+v", got)
	}

	// Taken, never answered: 3 attempts of 2 s, and the grace.
	json.Unmarshal(postProbe(t, s, `{"node":"node-b","endpoint":"e1","to":"10.0.10.6","kind":"icmp"}`).Body.Bytes(), &p)
	if w := nodeRequest(t, s, "node-b", http.MethodGet, "/weft/v1/nodes/node-b/tasks", "52:54:00:00:00:02", ""); !strings.Contains(w.Body.String(), p.ID) {
		t.Fatalf("poll: %d %s", w.Code, w.Body)
	}
	clk.add(6*time.Second + fleetapi.ProbeResultGrace - time.Second)
	if got := probeOf(t, s, p.ID); got.State != fleetapi.ProbeRunning {
		t.Fatalf("before its time: %+v", got)
	}
	clk.add(time.Second)
	if got := probeOf(t, s, p.ID); got.State != fleetapi.ProbeExpired || got.Detail != "node node-b's agent took the probe 36s ago but sent no result within 36s: did the agent restart, or lose the controller?" {
		t.Errorf("expired while running: %+v", got)
	}
	w = nodeRequest(t, s, "node-b", http.MethodPost, "/weft/v1/probes/"+p.ID+"/result", "52:54:00:00:00:02", `{"ok": true, "detail": "late"}`)
	if w.Code != 409 || !strings.Contains(w.Body.String(), "is expired already") {
		t.Errorf("a late result: %d %s", w.Code, w.Body)
	}

	// A waiting reader learns of the expiry within a second.
	ts := startAPI(t, s)
	json.Unmarshal(postProbe(t, s, `{"node":"node-b","endpoint":"e1","to":"10.0.10.6","kind":"icmp"}`).Body.Bytes(), &p)
	res := make(chan fleetapi.Probe, 1)
	op := operatorClient(t, s, ts.URL)
	go func() {
		got, err := op.WaitProbe(context.Background(), p.ID)
		if err != nil {
			t.Error(err)
		}
		res <- got
	}()
	time.Sleep(200 * time.Millisecond)
	clk.add(fleetapi.ProbePickupTimeout)
	select {
	case got := <-res:
		if got.State != fleetapi.ProbeExpired {
			t.Errorf("WaitProbe: %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitProbe did not return on the expiry")
	}

	// Probes of a node removed from the inventory end with it.
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	doc := baseConfig + "nodes:\n  - {name: a, address: 10.0.2.15}\n  - {name: b, address: 10.0.2.16}\n"
	if err := os.WriteFile(inv, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := testServer(t, inv)
	json.Unmarshal(postProbe(t, s2, `{"node":"b","endpoint":"e1","to":"10.0.10.6","kind":"icmp"}`).Body.Bytes(), &p)
	if err := os.WriteFile(inv, []byte(baseConfig+"nodes:\n  - {name: a, address: 10.0.2.15}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s2.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := probeOf(t, s2, p.ID); got.State != fleetapi.ProbeExpired || got.Detail != "node b was removed from the inventory" {
		t.Errorf("after the node's removal: %+v", got)
	}
}

// TestProbeRefusals: requests the controller turns down, each with a
// status and a reason an operator or an agent's log can act on.
func TestProbeRefusals(t *testing.T) {
	s, _ := fleetServer(t)
	if w := postProbe(t, s, `{"node":"node-x","endpoint":"e","to":"10.1.0.12","kind":"icmp"}`); w.Code != 404 || !strings.Contains(w.Body.String(), `probe: node: no node "node-x" in the inventory`) {
		t.Errorf("unknown node: %d %s", w.Code, w.Body)
	}
	if w := postProbe(t, s, `{"node":"node-a","endpoint":"e","to":"10.1.0.12","kind":"ping"}`); w.Code != 400 {
		t.Errorf("bad kind: %d %s", w.Code, w.Body)
	}
	var p fleetapi.Probe
	json.Unmarshal(postProbe(t, s, `{"node":"node-a","endpoint":"e","to":"10.1.0.12","kind":"icmp"}`).Body.Bytes(), &p)
	for _, tc := range []struct {
		node, method, path, macs, body string
		code                           int
		err                            string
	}{
		{"node-a", "GET", "/weft/v1/nodes/node-x/tasks", "", "", 403, `the credential is node node-a's, not node node-x's`},
		{"", "GET", "/weft/v1/nodes/node-a/tasks", "52:54:00:00:00:01", "", 401, "no node credential (Authorization: Bearer)"},
		{"node-b", "GET", "/weft/v1/nodes/node-a/tasks", "52:54:00:00:00:01", "", 403, "the credential is node node-b's, not node node-a's"},
		{"node-a", "GET", "/weft/v1/nodes/node-a/tasks", "52:54:00:00:00:02", "", 409, "a request for node node-a, but X-Weft-MAC 52:54:00:00:00:02 are node node-b's"},
		{"node-a", "GET", "/weft/v1/nodes/node-a/tasks?wait=2m", "", "", 400, "wait: 2m0s is out of range 0..1m0s"},
		{"node-a", "GET", "/weft/v1/nodes/node-a/tasks?wait=soon", "", "", 400, `wait: "soon" is not a duration`},
		{"node-a", "POST", "/weft/v1/probes/nope/result", "", `{"ok":true}`, 404, `no probe "nope"`},
		{"", "POST", "/weft/v1/probes/" + p.ID + "/result", "", `{"ok":true}`, 401, "no node credential"},
		{"node-a", "POST", "/weft/v1/probes/" + p.ID + "/result", "", `{"ok":true}`, 409, "is pending: node node-a's agent has not taken it"},
		{"node-a", "POST", "/weft/v1/probes/" + p.ID + "/result", "", `{"ok":1}`, 400, "probe result: ok: want true or false"},
	} {
		w := nodeRequest(t, s, tc.node, tc.method, tc.path, tc.macs, tc.body)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.err) {
			t.Errorf("%s %s: %d %s, want %d %q", tc.method, tc.path, w.Code, w.Body, tc.code, tc.err)
		}
	}
	if w := get(operator(t, s), "/weft/v1/probes/nope", "127.0.0.1", ""); w.Code != 404 || !strings.Contains(w.Body.String(), `no probe "nope"`) {
		t.Errorf("GET /weft/v1/probes/nope: %d %s", w.Code, w.Body)
	}
	if w := nodeRequest(t, s, "node-a", "GET", "/weft/v1/nodes/node-a/tasks", "52:54:00:00:00:01", ""); !strings.Contains(w.Body.String(), p.ID) {
		t.Fatalf("tasks: %d %s", w.Code, w.Body)
	}
	// A result only for a probe given to the credential's node.
	if w := nodeRequest(t, s, "node-b", "POST", "/weft/v1/probes/"+p.ID+"/result", "52:54:00:00:00:01", `{"ok":true}`); w.Code != 403 ||
		!strings.Contains(w.Body.String(), "probe "+p.ID+` is node node-a's, not node node-b's (the request's credential)`) {
		t.Errorf("a result from another node: %d %s", w.Code, w.Body)
	}
	if w := nodeRequest(t, s, "node-a", "POST", "/weft/v1/probes/"+p.ID+"/result", "52:54:00:00:00:01", `{"ok":true,"detail":"1/1"}`); w.Code != 204 {
		t.Errorf("the result: %d %s", w.Code, w.Body)
	}
	if w := nodeRequest(t, s, "node-a", "POST", "/weft/v1/probes/"+p.ID+"/result", "", `{"ok":true}`); w.Code != 409 || !strings.Contains(w.Body.String(), "is done already") {
		t.Errorf("a second result: %d %s", w.Code, w.Body)
	}

	// When every kept probe is in flight, new ones wait.
	for range fleetapi.MaxProbes - 1 {
		if w := postProbe(t, s, `{"node":"node-c","endpoint":"e","to":"10.1.0.12","kind":"icmp"}`); w.Code != 201 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	if w := postProbe(t, s, `{"node":"node-c","endpoint":"e","to":"10.1.0.12","kind":"icmp"}`); w.Code != 201 {
		t.Errorf("the done probe makes room: %d %s", w.Code, w.Body)
	}
	if w := postProbe(t, s, `{"node":"node-c","endpoint":"e","to":"10.1.0.12","kind":"icmp"}`); w.Code != 503 || !strings.Contains(w.Body.String(), "200 probes are pending or running") {
		t.Errorf("full: %d %s", w.Code, w.Body)
	}
}

// weftBin is the weft binary: $WEFT_BIN (make test sets it), else one
// built from this tree into dir.
func weftBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_BIN"); p != "" {
		return p
	}
	testenv.RequireTools(t, "go")
	out := filepath.Join(t.TempDir(), "weft")
	cmd := exec.Command("go", "build", "-o", out, "github.com/weftnet/weft/cmd/weft")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/weft: %v\n%s", err, b)
	}
	return out
}

// TestCtlFleetProbe: `weft ctl fleet probe` prints the result, and its
// exit status says whether the address was reached.
func TestCtlFleetProbe(t *testing.T) {
	testenv.SkipIfShort(t)
	bin := weftBin(t)
	s, _ := fleetServer(t)
	ts := startAPI(t, s) // closed after the agent's cleanup ends its long poll
	startAgent(t, s, ts)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"ctl", "fleet", "probe", "--controller", ts.URL, "--ca", s.CA().String(),
			"--token-file", filepath.Join(s.opt.State, access.TokenFile)}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	if out, errOut, code := run("--from", "node-a/web1", "--to", "10.0.10.6"); code != 0 || out != "node-a/web1 → 10.0.10.6 icmp: ok: 3/3 replies, rtt 1.2 ms\n" {
		t.Errorf("icmp: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run("--from", "node-a/web1", "--to", "10.0.10.7", "--tcp", "5432"); code != 1 ||
		out != "node-a/web1 → 10.0.10.7 tcp/5432: FAILED: connect to 10.0.10.7 port 5432: connection refused\n" || errOut != "weft ctl: the probe failed\n" {
		t.Errorf("tcp: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := run("--from", "node-a/web1", "--to", "10.0.10.6", "--count", "5", "--timeout", "500ms", "-o", "json")
	var p fleetapi.Probe
	if err := json.Unmarshal([]byte(out), &p); err != nil || code != 0 || !p.OK || p.Count != 5 || p.TimeoutMillis != 500 || p.Detail != "5/5 replies, rtt 1.2 ms" {
		t.Errorf("json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--from", "node-a", "--to", "10.0.10.6"}, `--from "node-a": want NODE/ENDPOINT`},
		{[]string{"--from", "node-a/web1"}, "--to ADDR is required"},
		{[]string{"--from", "node-a/web1", "--to", "ten"}, `--to "ten": not an IP address`},
		{[]string{"--from", "node-a/web1", "--to", "10.0.10.6", "--tcp", "0x"}, "invalid value"},
		{[]string{"--from", "node-z/web1", "--to", "10.0.10.6"}, `probe: node: no node "node-z" in the inventory`},
	} {
		if _, errOut, code := run(tc.args...); code == 0 || !strings.Contains(errOut, tc.err) {
			t.Errorf("%v: exit %d, %s", tc.args, code, errOut)
		}
	}
}

// TestLongPollShutdown: long polls end when the controller stops, rather
// than holding its shutdown up for their wait.
func TestLongPollShutdown(t *testing.T) {
	s, _ := fleetServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	node := nodeClient(t, s, "https://"+ln.Addr().String(), "node-b")
	polled := make(chan error, 1)
	go func() {
		tasks, err := node.Tasks(context.Background(), "node-b")
		if err == nil && len(tasks) != 0 {
			err = fmt.Errorf("tasks %v", tasks)
		}
		polled <- err
	}()
	waitFor(t, 5*time.Second, "the poll", func() bool { return !s.Fleet().Nodes[1].TasksPolled.IsZero() })
	t0 := time.Now()
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if err := <-polled; err != nil {
		t.Errorf("the poll: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("shutting down took %v", d)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
