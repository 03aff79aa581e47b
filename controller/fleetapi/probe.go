package fleetapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Probes are live reachability checks that a node runs for an operator:
// "from endpoint E on node N, can you reach address A?" The operator (or
// `make demo`) posts a ProbeRequest; the node's agent, long-polling the
// node's tasks, receives it as a ProbeTask, runs it inside E's network
// namespace and posts a ProbeResult; the operator reads the Probe.
//
//	POST /weft/v1/probes                 ProbeRequest → 201, the Probe (pending)
//	GET  /weft/v1/probes                 ProbeList: the recent probes, newest first
//	GET  /weft/v1/probes/{id}[?wait=25s] the Probe; with wait, once it is done or expired or the wait ends
//	GET  /weft/v1/nodes/{name}/tasks[?wait=25s]  Tasks: the node's pending probes, now running
//	POST /weft/v1/probes/{id}/result     ProbeResult → 204
//
// The controller keeps probes in memory only, the latest MaxProbes.

// ProbeKind is what a probe checks.
type ProbeKind string

const (
	ProbeICMP ProbeKind = "icmp" // ICMP (or ICMPv6) echo requests to To
	ProbeTCP  ProbeKind = "tcp"  // a TCP connection to To, Port
)

// ProbeState is where a probe is.
type ProbeState string

const (
	ProbePending ProbeState = "pending" // waiting for the node's agent to take it
	ProbeRunning ProbeState = "running" // the agent took it and runs it
	ProbeDone    ProbeState = "done"    // the agent sent its result
	ProbeExpired ProbeState = "expired" // no agent took it, or none sent a result, in time
)

// Probe timing and limits.
const (
	// ProbePickupTimeout is how long a probe waits for the node's agent
	// to take it before it expires.
	ProbePickupTimeout = 60 * time.Second
	// ProbeResultGrace is how long past Count×TimeoutMillis a taken probe
	// waits for its result before it expires.
	ProbeResultGrace = 30 * time.Second
	// TaskWait is how long Client.Tasks waits for a task.
	TaskWait = 25 * time.Second
	// MaxWait is the longest wait= a request may ask for.
	MaxWait = 60 * time.Second
	// MaxProbes is how many probes the controller keeps; the oldest
	// finished ones make room for new ones.
	MaxProbes = 200

	DefaultProbeCount   = 3 // echo requests; a TCP probe connects once
	DefaultProbeTimeout = 2 * time.Second
	// MaxProbeDuration bounds Count×TimeoutMillis: no more than a node's
	// agent runs a probe for (agentapi.MaxProbeDuration; init/pid1's
	// tests compare them, as neither contract imports the other), which
	// is inside the wait of the agent's client: no probe outlives its
	// caller.
	MaxProbeDuration  = 10 * time.Second
	maxProbeCount     = 100
	maxProbeTimeoutMs = int(MaxProbeDuration / time.Millisecond)
	maxProbeDetail    = 4096
	// MaxProbeBody is the largest probe request or result a controller
	// reads.
	MaxProbeBody = 64 << 10
)

// ProbeRequest asks node Node's agent to probe To from endpoint
// Endpoint. Count and TimeoutMillis are per attempt: Count echo requests
// (or TCP connections), each given TimeoutMillis to answer; 0 takes the
// defaults (DefaultProbeCount echo requests or one connection, each
// DefaultProbeTimeout).
type ProbeRequest struct {
	Node          string     `json:"node"`
	Endpoint      string     `json:"endpoint"`
	To            netip.Addr `json:"to"`
	Kind          ProbeKind  `json:"kind"`
	Port          int        `json:"port,omitempty"` // tcp only: 1..65535
	Count         int        `json:"count,omitempty"`
	TimeoutMillis int        `json:"timeoutMillis,omitempty"`
}

// Probe is one probe as the controller knows it: the request (defaults
// filled in), its state and, once done, its result.
type Probe struct {
	ID string `json:"id"`
	ProbeRequest
	State ProbeState `json:"state"`
	// OK, Detail and RTTMicros are the node's result; for an expired
	// probe, Detail says why it expired.
	OK        bool   `json:"ok"`
	Detail    string `json:"detail,omitempty"`
	RTTMicros int64  `json:"rttMicros,omitempty"`
	// Created is when the controller received the request, Started when
	// the node's agent took it, Finished when it became done or expired.
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Final reports whether the probe will not change any more.
func (p *Probe) Final() bool { return p.State == ProbeDone || p.State == ProbeExpired }

// Target writes what the probe checks: "10.1.0.12 icmp", "10.1.0.12 tcp/5432".
func (p *Probe) Target() string {
	if p.Kind == ProbeTCP {
		return fmt.Sprintf("%s tcp/%d", p.To, p.Port)
	}
	return p.To.String() + " " + string(p.Kind)
}

// Summary is the probe on one line, as `weft ctl fleet probe` prints it:
// "node-1/red-1 → 10.1.0.12 icmp: ok: 3/3 replies, rtt 1.2 ms".
func (p *Probe) Summary() string {
	s := fmt.Sprintf("%s/%s → %s: ", p.Node, p.Endpoint, p.Target())
	switch {
	case p.State == ProbeDone && p.OK:
		s += "ok"
	case p.State == ProbeDone:
		s += "FAILED"
	case p.State == ProbeExpired:
		s += "EXPIRED"
	default:
		s += string(p.State)
	}
	if p.Detail != "" {
		s += ": " + oneLine(p.Detail)
	}
	return s
}

// ProbeTask is a probe as the node's agent receives it.
type ProbeTask struct {
	ID            string     `json:"id"`
	Endpoint      string     `json:"endpoint"`
	To            netip.Addr `json:"to"`
	Kind          ProbeKind  `json:"kind"`
	Port          int        `json:"port,omitempty"`
	Count         int        `json:"count"`
	TimeoutMillis int        `json:"timeoutMillis"`
}

// Timeout is the task's TimeoutMillis as a duration.
func (t ProbeTask) Timeout() time.Duration { return time.Duration(t.TimeoutMillis) * time.Millisecond }

// Tasks is what GET /weft/v1/nodes/{name}/tasks returns: the tasks the
// node is to run now (an empty list when the wait ended without any).
type Tasks struct {
	Probes []ProbeTask `json:"probes"`
}

// ProbeResult is what the node's agent posts when a probe is done. Detail
// says what was seen, for people ("3/3 replies, rtt 1.2 ms", "connection
// refused", "no endpoint red-1 on this node"); RTTMicros is the average
// round trip (or connect) time of the answers, 0 when none came.
type ProbeResult struct {
	OK        bool   `json:"ok"`
	Detail    string `json:"detail"`
	RTTMicros int64  `json:"rttMicros,omitempty"`
}

// ProbeList is what GET /weft/v1/probes returns, newest first.
type ProbeList struct {
	Probes []Probe `json:"probes"`
}

// probeRequestFields are the keys of a ProbeRequest document.
var probeRequestFields = []string{"node", "endpoint", "to", "kind", "port", "count", "timeoutMillis"}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// keys: an operator's typo ("timeout") must not pass unnoticed.
func decodeStrict(what string, data []byte, v any, fields []string) error {
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("%s: want a JSON object", what)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("%s: unknown field %s (known: %s)", what, f, strings.Join(fields, ", "))
		}
		return jsonError(what, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: data after the JSON value", what)
	}
	return nil
}

// DecodeProbeRequest reads and checks one ProbeRequest, filling in the
// defaults. Every error names the field at fault. Whether the node is in
// the inventory is the server's to check.
func DecodeProbeRequest(data []byte) (ProbeRequest, error) {
	var w struct {
		Node          string `json:"node"`
		Endpoint      string `json:"endpoint"`
		To            string `json:"to"`
		Kind          string `json:"kind"`
		Port          *int   `json:"port"`
		Count         *int   `json:"count"`
		TimeoutMillis *int   `json:"timeoutMillis"`
	}
	if len(data) > MaxProbeBody {
		return ProbeRequest{}, fmt.Errorf("probe: %d bytes, more than the %d allowed", len(data), MaxProbeBody)
	}
	if err := decodeStrict("probe", data, &w, probeRequestFields); err != nil {
		return ProbeRequest{}, err
	}
	r := ProbeRequest{Node: w.Node, Endpoint: w.Endpoint, Kind: ProbeKind(w.Kind)}
	if r.Node == "" {
		return r, errors.New("probe: node: required (the inventory name of the node to probe from)")
	}
	if err := CheckNodeName(r.Node); err != nil {
		return r, fmt.Errorf("probe: node: %v", err)
	}
	if err := checkEndpointName(r.Endpoint); err != nil {
		return r, fmt.Errorf("probe: endpoint: %v", err)
	}
	if w.To == "" {
		return r, errors.New("probe: to: required (the address to reach)")
	}
	to, err := netip.ParseAddr(w.To)
	if err != nil || to.Zone() != "" {
		return r, fmt.Errorf("probe: to: %q is not an IP address", w.To)
	}
	if to.IsUnspecified() || to.IsMulticast() {
		return r, fmt.Errorf("probe: to: %s is not a unicast address", to)
	}
	r.To = to.Unmap()
	switch r.Kind {
	case "":
		return r, errors.New("probe: kind: required (icmp or tcp)")
	case ProbeICMP:
		if w.Port != nil && *w.Port != 0 {
			return r, errors.New("probe: port: only for kind tcp")
		}
	case ProbeTCP:
		if w.Port == nil {
			return r, errors.New("probe: port: required for kind tcp")
		}
		if *w.Port < 1 || *w.Port > 65535 {
			return r, fmt.Errorf("probe: port: %d is out of range 1..65535", *w.Port)
		}
		r.Port = *w.Port
	default:
		return r, fmt.Errorf("probe: kind: %q: want icmp or tcp", w.Kind)
	}
	r.Count = DefaultProbeCount
	if r.Kind == ProbeTCP {
		r.Count = 1
	}
	if w.Count != nil && *w.Count != 0 {
		if *w.Count < 1 || *w.Count > maxProbeCount {
			return r, fmt.Errorf("probe: count: %d is out of range 1..%d (0: the default)", *w.Count, maxProbeCount)
		}
		r.Count = *w.Count
	}
	r.TimeoutMillis = int(DefaultProbeTimeout / time.Millisecond)
	if w.TimeoutMillis != nil && *w.TimeoutMillis != 0 {
		if *w.TimeoutMillis < 1 || *w.TimeoutMillis > maxProbeTimeoutMs {
			return r, fmt.Errorf("probe: timeoutMillis: %d is out of range 1..%d (0: the default, %d)", *w.TimeoutMillis, maxProbeTimeoutMs, DefaultProbeTimeout/time.Millisecond)
		}
		r.TimeoutMillis = *w.TimeoutMillis
	}
	if d := time.Duration(r.Count) * time.Duration(r.TimeoutMillis) * time.Millisecond; d > MaxProbeDuration {
		return r, fmt.Errorf("probe: count × timeoutMillis: %d × %d ms = %v, more than the %v a node runs a probe for", r.Count, r.TimeoutMillis, d, MaxProbeDuration)
	}
	return r, nil
}

// DecodeProbeResult reads one ProbeResult. Unknown fields are ignored, so
// that a newer agent can answer an older controller.
func DecodeProbeResult(data []byte) (ProbeResult, error) {
	var w struct {
		OK        *bool  `json:"ok"`
		Detail    string `json:"detail"`
		RTTMicros *int64 `json:"rttMicros"`
	}
	if len(data) > MaxProbeBody {
		return ProbeResult{}, fmt.Errorf("probe result: %d bytes, more than the %d allowed", len(data), MaxProbeBody)
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return ProbeResult{}, errors.New("probe result: want a JSON object")
	}
	if err := unmarshalOne(data, &w); err != nil {
		return ProbeResult{}, jsonError("probe result", err)
	}
	if w.OK == nil {
		return ProbeResult{}, errors.New("probe result: ok: required (true when the address was reached)")
	}
	if len(w.Detail) > maxProbeDetail {
		return ProbeResult{}, fmt.Errorf("probe result: detail: %d bytes, more than the %d allowed", len(w.Detail), maxProbeDetail)
	}
	r := ProbeResult{OK: *w.OK, Detail: strings.ToValidUTF8(w.Detail, "�")}
	if w.RTTMicros != nil {
		if *w.RTTMicros < 0 || *w.RTTMicros > int64(maxProbeTimeoutMs)*1000 {
			return r, fmt.Errorf("probe result: rttMicros: %d is out of range 0..%d", *w.RTTMicros, int64(maxProbeTimeoutMs)*1000)
		}
		r.RTTMicros = *w.RTTMicros
	}
	return r, nil
}
