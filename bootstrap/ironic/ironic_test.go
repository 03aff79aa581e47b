package ironic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/cloud"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// One Ironic for the package, started by the first test that needs it.
var (
	ironicOnce sync.Once
	theIronic  *cloud.Ironic
	ironicErr  error
	ironicDir  string
)

// heartbeatTimeout is what Ironic hands the agent: it heartbeats every 2 s.
const heartbeatTimeout = 6 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if theIronic != nil {
		theIronic.Stop()
	}
	if code == 0 && ironicDir != "" {
		os.RemoveAll(ironicDir)
	}
	os.Exit(code)
}

func needIronic(t *testing.T) *cloud.Ironic {
	t.Helper()
	testenv.SkipIfShort(t)
	if m := cloud.MissingIronic(); m != "" {
		testenv.Unavailable(t, m+" not on PATH (make ironic-deps installs Ironic)")
	}
	ironicOnce.Do(func() {
		if ironicDir, ironicErr = os.MkdirTemp("", "weft-ironic-"); ironicErr != nil {
			return
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		theIronic, ironicErr = cloud.StartIronic(ctx, ironicDir, heartbeatTimeout)
		t.Logf("ironic started in %s", time.Since(start).Round(100*time.Millisecond))
	})
	if ironicErr != nil {
		t.Fatalf("starting ironic (state in %s): %v", ironicDir, ironicErr)
	}
	return theIronic
}

// ironicDo is one call to Ironic's API for the test's own setup.
func ironicDo(t *testing.T, ir *cloud.Ironic, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, ir.URL+path, body)
	req.Header.Set(versionHeader, APIVersion)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

type nodeDoc struct {
	UUID               string         `json:"uuid"`
	ProvisionState     string         `json:"provision_state"`
	LastError          *string        `json:"last_error"`
	DriverInternalInfo map[string]any `json:"driver_internal_info"`
}

func getNode(t *testing.T, ir *cloud.Ironic, uuid string) nodeDoc {
	t.Helper()
	var n nodeDoc
	ironicDo(t, ir, "GET", "/v1/nodes/"+uuid, nil, &n)
	return n
}

// waitState waits for one of the node's provision states (want: "|"
// between them), failing on a failed one.
func waitState(t *testing.T, ir *cloud.Ironic, uuid, want string, within time.Duration) nodeDoc {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := getNode(t, ir, uuid)
		for _, w := range strings.Split(want, "|") {
			if n.ProvisionState == w {
				return n
			}
		}
		if strings.HasSuffix(n.ProvisionState, "failed") || time.Now().After(deadline) {
			le := ""
			if n.LastError != nil {
				le = *n.LastError
			}
			t.Fatalf("node %s: provision state %q (last_error %q), want %q within %v; ironic log %s", uuid, n.ProvisionState, le, want, within, ir.Log)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// enroll enrolls a fake-hardware node with mac and deploys it with the
// custom-agent deploy interface, up to "wait call-back" (deploy wait):
// then Ironic waits for an agent to look it up. An agent already running
// may take the node further before the test sees deploy wait.
func enroll(t *testing.T, ir *cloud.Ironic, name string, mac net.HardwareAddr) string {
	t.Helper()
	var n nodeDoc
	ironicDo(t, ir, "POST", "/v1/nodes", map[string]any{"name": name, "driver": "fake-hardware", "deploy_interface": "custom-agent"}, &n)
	ironicDo(t, ir, "POST", "/v1/ports", map[string]any{"node_uuid": n.UUID, "address": mac.String()}, nil)
	for _, step := range []struct{ target, state string }{{"manage", "manageable"}, {"provide", "available"}, {"active", "wait call-back|deploying|active"}} {
		ironicDo(t, ir, "PUT", "/v1/nodes/"+n.UUID+"/states/provision", map[string]any{"target": step.target}, nil)
		waitState(t, ir, n.UUID, step.state, time.Minute)
	}
	return n.UUID
}

// logBuffer collects an agent's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// powerEvent is one call of the agent's Power.
type powerEvent struct{ reboot bool }

// testAgent is an Agent whose Power is observed by the test: it reports
// the call and stops the agent, as the node going down would.
// With stay, the agent keeps running after Power.
func testAgent(t *testing.T, apiURL string, mac net.HardwareAddr, log *logBuffer, stay bool) (*Agent, <-chan powerEvent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	power := make(chan powerEvent, 4)
	a := &Agent{
		APIURL: apiURL,
		MACs:   func() []net.HardwareAddr { return []net.HardwareAddr{mac} },
		Power: func(reboot bool) error {
			power <- powerEvent{reboot}
			if !stay {
				cancel()
			}
			return nil
		},
		Sync:    func() error { return nil },
		Version: "weft-test",
		Port:    freePort(t),
		Log:     log.logger(),

		MinBackoff: 100 * time.Millisecond, MaxBackoff: 800 * time.Millisecond,
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, power
}

func testMAC(last byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0x00, 0x1e, 0x0c, last} }

// The bar: a node in deploy wait is looked up by its MAC, its heartbeats
// are accepted, the conductor's calls to the agent API (get_deploy_steps,
// the command list, power_off) get valid answers, and the conductor's
// power-off is carried out; the node ends active, not failed. Ironic's
// power interface is fake (no BMC here), so after the agent's power_off
// the conductor cannot see the node off and powers it off "itself" after
// 1 s: that is the fake BMC, not an error of the agent.
func TestAgentContract(t *testing.T) {
	ir := needIronic(t)
	mac := testMAC(1)
	var log logBuffer
	// The agent starts before the node waits for it: lookups are
	// refused (404) and retried until the node is in deploy wait.
	a, power := testAgent(t, ir.URL, mac, &log, false)
	start := time.Now()
	uuid := enroll(t, ir, "weft-contract", mac)
	t.Logf("node %s in deploy wait after %s", uuid, time.Since(start).Round(time.Millisecond))

	var ev powerEvent
	select {
	case ev = <-power:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the conductor's power-off never reached the agent; agent log:\n%s\nironic log %s", strings.Join(log.lines(""), "\n"), ir.Log)
	}
	if ev.reboot {
		t.Errorf("the conductor asked for a reboot (standby.run_image), want standby.power_off")
	}
	t.Logf("power_off carried out %s after deploy", time.Since(start).Round(time.Millisecond))
	n := waitState(t, ir, uuid, "active", time.Minute)
	if n.LastError != nil && *n.LastError != "" {
		t.Errorf("node active with last_error %q", *n.LastError)
	}
	if len(log.lines("ironic: lookup failed")) == 0 || len(log.lines("HTTP 404, request req-")) == 0 {
		t.Errorf("no refused lookup logged before deploy wait (want HTTP 404 with a request id); log:\n%s", strings.Join(log.lines(""), "\n"))
	}
	if got := log.lines("heartbeat accepted"); len(got) == 0 {
		t.Errorf("no heartbeat accepted (202); log:\n%s", strings.Join(log.lines(""), "\n"))
	}
	if got := log.lines("heartbeat failed"); len(got) != 0 {
		t.Errorf("heartbeats failed: %v", got)
	}
	for _, want := range []string{"command=deploy.get_deploy_steps", "command=standby.power_off"} {
		if len(log.lines(want)) == 0 {
			t.Errorf("the conductor never sent %s; log:\n%s", want, strings.Join(log.lines(""), "\n"))
		}
	}
	if len(log.lines(fmt.Sprintf("callback_url=http://127.0.0.1:%d", a.Port))) == 0 {
		t.Errorf("the agent API is not on the address the node reaches Ironic from (127.0.0.1:%d); log:\n%s", a.Port, strings.Join(log.lines(""), "\n"))
	}
	// The conductor logged no error for the node (the refused early
	// lookups aside): no failed agent command, no failed soft power-off
	// (the agent's call itself).
	raw, err := os.ReadFile(ir.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, "Lookup is not allowed") {
			continue
		}
		if strings.Contains(line, uuid) && (strings.Contains(line, " ERROR ") || strings.Contains(line, "Failed to soft power off node "+uuid+". ")) {
			t.Errorf("ironic logged for the node: %s", line)
		}
	}
}

// The agent API answers the conductor only: a command without the agent
// token, or with another, is refused; the status needs none.
func TestAgentAPIToken(t *testing.T) {
	ir := needIronic(t)
	mac := testMAC(2)
	var log logBuffer
	a, power := testAgent(t, ir.URL, mac, &log, true)
	enroll(t, ir, "weft-token", mac)
	select {
	case <-power: // the conductor's command, with the token, got through
	case <-time.After(2 * time.Minute):
		t.Fatalf("the conductor's power-off never reached the agent; agent log:\n%s", strings.Join(log.lines(""), "\n"))
	}
	cb := fmt.Sprintf("http://127.0.0.1:%d", a.Port)
	post := func(query string) int {
		resp, err := http.Post(cb+"/v1/commands/"+query, "application/json", strings.NewReader(`{"name":"standby.power_off","params":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(""); got != http.StatusUnauthorized {
		t.Errorf("power_off without agent_token: HTTP %d, want 401", got)
	}
	if got := post("?agent_token=" + strings.Repeat("x", len(a.tokenString()))); got != http.StatusUnauthorized {
		t.Errorf("power_off with a wrong agent_token: HTTP %d, want 401", got)
	}
	resp, err := http.Get(cb + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || st["version"] != "weft-test" {
		t.Errorf("GET /v1/status: HTTP %d %v", resp.StatusCode, st)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.2:%d", a.Port), time.Second); err == nil {
		t.Errorf("the agent API answers on 127.0.0.2, not only on the address toward Ironic")
	}
}
