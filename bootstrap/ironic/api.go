package ironic

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Command statuses, as IPA reports them.
const (
	statusRunning   = "RUNNING"
	statusSucceeded = "SUCCEEDED"
	statusFailed    = "FAILED"
)

// maxCommands bounds the command history GET /v1/commands/ lists.
const maxCommands = 64

// result is one command as IPA's API shows it. Parameters are not echoed:
// the conductor sends the whole node document, which is not ours to keep.
type result struct {
	ID     string         `json:"id"`
	Name   string         `json:"command_name"`
	Params map[string]any `json:"command_params"`
	Status string         `json:"command_status"`
	Error  *commandError  `json:"command_error"`
	Result any            `json:"command_result"`
}

type commandError struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details string `json:"details"`
}

// fault is IPA's error answer; the conductor reads faultstring.
type fault struct {
	FaultCode   string `json:"faultcode"`
	FaultString string `json:"faultstring"`
}

// api serves IPA's REST API v1 to the conductor.
type api struct {
	token   func() string // the agent token from the lookup; "" until then
	version string
	started time.Time
	power   func(reboot bool) error
	sync    func() error
	log     *slog.Logger

	mu       sync.Mutex
	commands []*result
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && path == "/v1/status":
		writeJSON(w, http.StatusOK, map[string]any{"started_at": float64(a.started.UnixNano()) / 1e9, "version": a.version})
	case r.Method == http.MethodGet && path == "/v1/commands":
		a.mu.Lock()
		list := make([]result, len(a.commands))
		for i, c := range a.commands {
			list[i] = *c
		}
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"commands": list})
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/commands/"):
		id := strings.TrimPrefix(path, "/v1/commands/")
		a.mu.Lock()
		var found *result
		for _, c := range a.commands {
			if c.ID == id {
				cp := *c
				found = &cp
			}
		}
		a.mu.Unlock()
		if found == nil {
			writeJSON(w, http.StatusNotFound, fault{"Client", "no command " + id})
			return
		}
		writeJSON(w, http.StatusOK, found)
	case r.Method == http.MethodPost && path == "/v1/commands":
		a.command(w, r)
	default:
		writeJSON(w, http.StatusNotFound, fault{"Client", r.Method + " " + r.URL.Path + " is not part of the agent API"})
	}
}

// command runs POST /v1/commands/?agent_token=…&wait=….
func (a *api) command(w http.ResponseWriter, r *http.Request) {
	want := a.token()
	got := r.URL.Query().Get("agent_token")
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		a.log.Warn("ironic: agent API command refused: invalid or missing agent token", "from", r.RemoteAddr)
		writeJSON(w, http.StatusUnauthorized, fault{"Client", "invalid or missing agent token"})
		return
	}
	var req struct {
		Name   string         `json:"name"`
		Params map[string]any `json:"params"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.Name == "" {
		writeJSON(w, http.StatusBadRequest, fault{"Client", fmt.Sprintf("a command is {\"name\": \"extension.command\", \"params\": {…}}: %v", err)})
		return
	}
	ext, name, _ := strings.Cut(req.Name, ".")
	if busy := a.running(); busy != "" {
		writeJSON(w, http.StatusConflict, fault{"Client", "Agent is busy: " + busy + " is running"})
		return
	}
	a.log.Info("ironic: conductor command", "command", req.Name)
	switch req.Name {
	case "clean.get_clean_steps":
		a.done(w, name, map[string]any{"clean_steps": noSteps, "hardware_manager_version": managerVersion})
	case "deploy.get_deploy_steps":
		a.done(w, name, map[string]any{"deploy_steps": noSteps, "hardware_manager_version": managerVersion})
	case "standby.sync":
		if err := a.sync(); err != nil {
			a.failed(w, name, "SyncError", err)
			return
		}
		a.done(w, name, nil)
	case "standby.power_off", "standby.run_image":
		a.powerCommand(w, name, name == "run_image")
	default:
		// What IPA's hardware managers do (steps, images, RAID, logs,
		// rescue) Weft does not: say so, as IPA does for a command it
		// lacks, so the conductor fails fast and names it.
		what := "Unknown command: " + req.Name
		if ext == "clean" || ext == "deploy" {
			what += " (Weft offers no " + ext + " steps; get_" + ext + "_steps lists none)"
		}
		writeJSON(w, http.StatusBadRequest, fault{"Client", what})
	}
}

// Weft's one "hardware manager" and the steps it offers: none.
var (
	noSteps        = map[string][]any{"WeftAgent": {}}
	managerVersion = map[string]string{"WeftAgent": "1"}
)

// powerCommand answers RUNNING, as IPA does, and then has PID 1 power
// off or reboot: the answer must reach the conductor before the node
// goes down.
func (a *api) powerCommand(w http.ResponseWriter, name string, reboot bool) {
	c, answer := a.record(name, statusRunning, nil, nil)
	writeJSON(w, http.StatusOK, answer)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go func() {
		err := a.power(reboot)
		a.mu.Lock()
		defer a.mu.Unlock()
		if err != nil {
			a.log.Error("ironic: carrying out "+name, "err", err)
			c.Status, c.Error = statusFailed, &commandError{Type: "PowerError", Code: 500, Message: name + " failed", Details: err.Error()}
			return
		}
		c.Status = statusSucceeded
	}()
}

func (a *api) done(w http.ResponseWriter, name string, res any) {
	_, answer := a.record(name, statusSucceeded, nil, res)
	writeJSON(w, http.StatusOK, answer)
}

func (a *api) failed(w http.ResponseWriter, name, typ string, err error) {
	_, answer := a.record(name, statusFailed, &commandError{Type: typ, Code: 500, Message: name + " failed", Details: err.Error()}, nil)
	writeJSON(w, http.StatusOK, answer)
}

// record adds a command to the history: the stored one (which a power
// command's goroutine finishes under mu) and a copy to answer with.
func (a *api) record(name, status string, cerr *commandError, res any) (*result, result) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	c := &result{ID: hex.EncodeToString(id[:]), Name: name, Params: map[string]any{}, Status: status, Error: cerr, Result: res}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commands = append(a.commands, c)
	if len(a.commands) > maxCommands {
		a.commands = a.commands[len(a.commands)-maxCommands:]
	}
	return c, *c
}

// running names a command still running, "" when none is.
func (a *api) running() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.commands {
		if c.Status == statusRunning {
			return c.Name
		}
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
