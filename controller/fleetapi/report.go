package fleetapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// DefaultReportInterval is the report interval of a Report that gives none.
const DefaultReportInterval = 30 * time.Second

// StaleIntervals is how many report intervals without a report make a node
// stale.
const StaleIntervals = 3

// Report is what a node sends, as JSON, to POST
// /weft/v1/nodes/{name}/report: its boot steps and, once its agent runs,
// the agent's status. Each report replaces the node's previous one as a
// whole, so a node sends everything it knows every time. The controller
// answers 204 No Content, or an error status with a plain-text reason.
//
// Unknown fields are ignored, so that a newer node can report to an older
// controller; the known ones are checked, and an error names the field
// ("agent.bgp[1].peer").
type Report struct {
	// IntervalSeconds is how often the node reports (0..3600); 0 means
	// DefaultReportInterval. The node is stale after StaleIntervals
	// intervals without a report.
	IntervalSeconds int `json:"intervalSeconds,omitempty"`
	// Time is when the node sent the report, by its own clock; shown, but
	// staleness is judged by the controller's clock.
	Time time.Time `json:"time,omitzero"`
	// Version is the node's weft version.
	Version string `json:"version,omitempty"`
	// Addresses are the node's underlay addresses. They tell the
	// reflector's session with the node apart when the inventory has no
	// address for it.
	Addresses []netip.Addr `json:"addresses,omitempty"`
	// Steps are the node's boot steps as init/steps records them
	// (Recorder.Steps: the latest verdict of each step, in first-report
	// order). The node is ready when step "ready" has verdict "ok".
	Steps []Step `json:"steps,omitempty"`
	// Agent is the agent's status; nil until the agent runs.
	Agent *AgentStatus `json:"agent,omitempty"`
}

// Step is one boot step of a node, as init/steps records it (the same
// JSON): its latest verdict and why.
type Step struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Detail is every cause joined by "; " (what a reader that predates
	// Causes shows).
	Detail string `json:"detail,omitempty"`
	// Causes are the distinct causes of the verdict in the order they were
	// found: a link's root cause first, its consequences after.
	Causes []string          `json:"causes,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Time   time.Time         `json:"time"`
}

// Verdict is the outcome of a step, as init/steps words it.
type Verdict string

const (
	VerdictOK      Verdict = "ok"      // done as configured
	VerdictSkipped Verdict = "skipped" // not applicable
	VerdictWaiting Verdict = "waiting" // not done yet, will retry
	VerdictFailed  Verdict = "failed"  // tried and failed
)

// AgentStatus is the part of a Report the node agent contributes.
type AgentStatus struct {
	// RouterID is the node's BGP identifier; it also tells the
	// reflector's session with the node apart.
	RouterID netip.Addr `json:"routerID,omitzero"`
	// BGP lists every configured session of the node's speaker.
	BGP []BGPSession `json:"bgp,omitempty"`
	// Endpoints are the workload attachments the node hosts.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// BGPSession is one BGP session of a node, as the node sees it.
type BGPSession struct {
	Peer netip.Addr `json:"peer"`
	// State is the FSM state as agent/bgp's SessionState.String writes
	// it: idle, connect, active, opensent, openconfirm, established.
	State string `json:"state"`
	// LastError says why the session is not established, when known.
	LastError string `json:"lastError,omitempty"`
}

// Established reports whether the session is up.
func (s BGPSession) Established() bool { return s.State == "established" }

// Endpoint is one workload attachment on a node.
type Endpoint struct {
	Name    string       `json:"name"`
	Network string       `json:"network,omitempty"`
	Address netip.Prefix `json:"address,omitzero"` // with the interface's prefix length
}

// Limits of one report.
const (
	// MaxReportBytes is the largest report a controller reads.
	MaxReportBytes = 1 << 20
	maxReportItems = 4096 // steps, sessions, endpoints, addresses each
	maxInterval    = 3600
)

// Interval is the report interval, defaulted.
func (r *Report) Interval() time.Duration {
	if r == nil || r.IntervalSeconds <= 0 {
		return DefaultReportInterval
	}
	return time.Duration(r.IntervalSeconds) * time.Second
}

// The report as it arrives: text where the types check values, so that an
// error can name the field and the value.
type wireReport struct {
	IntervalSeconds *int              `json:"intervalSeconds"`
	Time            string            `json:"time"`
	Version         string            `json:"version"`
	Addresses       []string          `json:"addresses"`
	Steps           []json.RawMessage `json:"steps"`
	Agent           *wireAgent        `json:"agent"`
}

type wireAgent struct {
	RouterID  string            `json:"routerID"`
	BGP       []json.RawMessage `json:"bgp"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

type wireStep struct {
	Name    string            `json:"name"`
	Verdict string            `json:"verdict"`
	Detail  string            `json:"detail"`
	Causes  []string          `json:"causes"`
	Attrs   map[string]string `json:"attrs"`
	Time    string            `json:"time"`
}

type wireSession struct {
	Peer      string `json:"peer"`
	State     string `json:"state"`
	LastError string `json:"lastError"`
}

type wireEndpoint struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	Address string `json:"address"`
}

// DecodeReport reads one Report. Every error names the field at fault.
func DecodeReport(data []byte) (*Report, error) {
	if len(data) > MaxReportBytes {
		return nil, fmt.Errorf("report: %d bytes, more than the %d allowed", len(data), MaxReportBytes)
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("report: want a JSON object")
	}
	var w wireReport
	if err := unmarshalOne(data, &w); err != nil {
		return nil, jsonError("report", err)
	}
	r := &Report{Version: w.Version}
	if w.IntervalSeconds != nil {
		if v := *w.IntervalSeconds; v < 0 || v > maxInterval {
			return nil, fmt.Errorf("report: intervalSeconds: %d is out of range 0..%d (0: the default, %v)", v, maxInterval, DefaultReportInterval)
		}
		r.IntervalSeconds = *w.IntervalSeconds
	}
	var err error
	if r.Time, err = parseTime(w.Time); err != nil {
		return nil, fmt.Errorf("report: time: %w", err)
	}
	if err := tooMany("addresses", len(w.Addresses)); err != nil {
		return nil, err
	}
	for i, s := range w.Addresses {
		a, err := parseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("report: addresses[%d]: %w", i, err)
		}
		r.Addresses = append(r.Addresses, a)
	}
	if err := tooMany("steps", len(w.Steps)); err != nil {
		return nil, err
	}
	for i, raw := range w.Steps {
		p := "steps[" + strconv.Itoa(i) + "]"
		var ws wireStep
		if err := unmarshalOne(raw, &ws); err != nil {
			return nil, jsonError("report: "+p, err)
		}
		if ws.Name == "" {
			return nil, fmt.Errorf("report: %s.name: required", p)
		}
		if ws.Verdict == "" {
			return nil, fmt.Errorf("report: %s.verdict: required (ok, skipped, waiting or failed)", p)
		}
		t, err := parseTime(ws.Time)
		if err != nil {
			return nil, fmt.Errorf("report: %s.time: %w", p, err)
		}
		if err := tooMany(p+".causes", len(ws.Causes)); err != nil {
			return nil, err
		}
		r.Steps = append(r.Steps, Step{Name: ws.Name, Verdict: Verdict(ws.Verdict), Detail: ws.Detail, Causes: ws.Causes, Attrs: ws.Attrs, Time: t})
	}
	if w.Agent == nil {
		return r, nil
	}
	a := &AgentStatus{}
	r.Agent = a
	if w.Agent.RouterID != "" {
		id, err := parseAddr(w.Agent.RouterID)
		if err != nil || !id.Is4() {
			return nil, fmt.Errorf("report: agent.routerID: %q is not a router ID (an IPv4 address)", w.Agent.RouterID)
		}
		a.RouterID = id
	}
	if err := tooMany("agent.bgp", len(w.Agent.BGP)); err != nil {
		return nil, err
	}
	for i, raw := range w.Agent.BGP {
		p := "agent.bgp[" + strconv.Itoa(i) + "]"
		var ws wireSession
		if err := unmarshalOne(raw, &ws); err != nil {
			return nil, jsonError("report: "+p, err)
		}
		peer, err := parseAddr(ws.Peer)
		if err != nil {
			return nil, fmt.Errorf("report: %s.peer: %w", p, err)
		}
		if ws.State == "" {
			return nil, fmt.Errorf("report: %s.state: required (idle, connect, active, opensent, openconfirm or established)", p)
		}
		a.BGP = append(a.BGP, BGPSession{Peer: peer, State: ws.State, LastError: ws.LastError})
	}
	if err := tooMany("agent.endpoints", len(w.Agent.Endpoints)); err != nil {
		return nil, err
	}
	for i, raw := range w.Agent.Endpoints {
		p := "agent.endpoints[" + strconv.Itoa(i) + "]"
		var we wireEndpoint
		if err := unmarshalOne(raw, &we); err != nil {
			return nil, jsonError("report: "+p, err)
		}
		if we.Name == "" {
			return nil, fmt.Errorf("report: %s.name: required", p)
		}
		e := Endpoint{Name: we.Name, Network: we.Network}
		if we.Address != "" {
			pfx, err := netip.ParsePrefix(we.Address)
			if err != nil {
				return nil, fmt.Errorf("report: %s.address: %q is not an address with a prefix length (like 10.0.10.5/24)", p, we.Address)
			}
			e.Address = pfx
		}
		a.Endpoints = append(a.Endpoints, e)
	}
	return r, nil
}

func tooMany(what string, n int) error {
	if n > maxReportItems {
		return fmt.Errorf("report: %s: %d entries, more than the %d allowed", what, n, maxReportItems)
	}
	return nil
}

// unmarshalOne decodes exactly one JSON value; a JSON null for an element
// is refused rather than read as an empty one.
func unmarshalOne(data []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return errors.New("want an object, got null")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// jsonError names the field of a JSON type error.
func jsonError(path string, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		p := path
		if te.Field != "" {
			p += "." + te.Field
			if !strings.Contains(path, ":") { // a document's name: "report", "probe"
				p = path + ": " + te.Field
			}
		}
		return fmt.Errorf("%s: want %s, got JSON %s", p, jsonKind(te.Type), te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("%s: not valid JSON (at byte %d): %v", path, se.Offset, se)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		if t.Kind() == reflect.Map && t.Elem().Kind() == reflect.String {
			return "an object of strings"
		}
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (like 2026-01-02T15:04:05Z)", s)
	}
	return t, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}
