package controller

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
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
	maxProbeCount       = 100
	maxProbeTimeoutMs   = 60000
	maxProbeDetail      = 4096
	maxProbeBody        = 64 << 10
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
	if len(data) > maxProbeBody {
		return ProbeRequest{}, fmt.Errorf("probe: %d bytes, more than the %d allowed", len(data), maxProbeBody)
	}
	if err := decodeStrict("probe", data, &w, probeRequestFields); err != nil {
		return ProbeRequest{}, err
	}
	r := ProbeRequest{Node: w.Node, Endpoint: w.Endpoint, Kind: ProbeKind(w.Kind)}
	if r.Node == "" {
		return r, errors.New("probe: node: required (the inventory name of the node to probe from)")
	}
	if err := checkHostname(r.Node); err != nil {
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
	return r, nil
}

// checkEndpointName accepts what names an endpoint: config's names, and
// a pod's (namespace/name) as CNI endpoints may be named.
func checkEndpointName(s string) error {
	switch {
	case s == "":
		return errors.New("required (the endpoint to probe from, as the node reports it)")
	case len(s) > 253:
		return fmt.Errorf("%d characters, more than 253", len(s))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("%q: no white space or control characters in an endpoint name", s)
	}
	return nil
}

// DecodeProbeResult reads one ProbeResult. Unknown fields are ignored, so
// that a newer agent can answer an older controller.
func DecodeProbeResult(data []byte) (ProbeResult, error) {
	var w struct {
		OK        *bool  `json:"ok"`
		Detail    string `json:"detail"`
		RTTMicros *int64 `json:"rttMicros"`
	}
	if len(data) > maxProbeBody {
		return ProbeResult{}, fmt.Errorf("probe result: %d bytes, more than the %d allowed", len(data), maxProbeBody)
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

// probeStore keeps the probes, in memory.
type probeStore struct {
	mu    sync.Mutex
	byID  map[string]*probeEntry
	order []*probeEntry // oldest first
	// wake has a channel per node (lower-case name) that is closed, and
	// replaced, when a probe for the node becomes pending.
	wake map[string]chan struct{}
}

type probeEntry struct {
	p    Probe
	done chan struct{} // closed when the probe becomes final
}

func newProbeStore() *probeStore {
	return &probeStore{byID: map[string]*probeEntry{}, wake: map[string]chan struct{}{}}
}

// errProbesFull is add's error when every kept probe is still in flight.
var errProbesFull = fmt.Errorf("%d probes are pending or running: wait for some to finish", MaxProbes)

func newProbeID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (ps *probeStore) add(req ProbeRequest, now time.Time) (Probe, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.order) >= MaxProbes {
		i := slices.IndexFunc(ps.order, func(e *probeEntry) bool { return e.p.Final() })
		if i < 0 {
			return Probe{}, errProbesFull
		}
		delete(ps.byID, ps.order[i].p.ID)
		ps.order = slices.Delete(ps.order, i, i+1)
	}
	e := &probeEntry{p: Probe{ID: newProbeID(), ProbeRequest: req, State: ProbePending, Created: now}, done: make(chan struct{})}
	for ps.byID[e.p.ID] != nil {
		e.p.ID = newProbeID()
	}
	ps.byID[e.p.ID] = e
	ps.order = append(ps.order, e)
	key := strings.ToLower(req.Node)
	if c := ps.wake[key]; c != nil {
		close(c)
		delete(ps.wake, key)
	}
	return e.p, nil
}

// runDeadline is when a taken probe expires without a result.
func runDeadline(p *Probe) time.Time {
	return p.Started.Add(time.Duration(p.Count)*time.Duration(p.TimeoutMillis)*time.Millisecond + ProbeResultGrace)
}

// expire ends the probes past their time; lastPoll tells when a node's
// agent last polled, for the detail. It returns the probes it expired.
func (ps *probeStore) expire(now time.Time, lastPoll func(node string) time.Time) []Probe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []Probe
	for _, e := range ps.order {
		p := &e.p
		switch {
		case p.State == ProbePending && now.Sub(p.Created) >= ProbePickupTimeout:
			polled := "it never polled"
			if t := lastPoll(p.Node); !t.IsZero() {
				polled = "it last polled " + Ago(t, now)
			}
			p.Detail = fmt.Sprintf("node %s's agent did not poll for tasks within %v (%s): is its agent running, and does it reach the controller?",
				p.Node, ProbePickupTimeout, polled)
		case p.State == ProbeRunning && !now.Before(runDeadline(p)):
			p.Detail = fmt.Sprintf("node %s's agent took the probe %s but sent no result within %v: did the agent restart, or lose the controller?",
				p.Node, Ago(p.Started, now), runDeadline(p).Sub(p.Started))
		default:
			continue
		}
		p.State, p.OK, p.Finished = ProbeExpired, false, now
		close(e.done)
		out = append(out, *p)
	}
	return out
}

func (ps *probeStore) get(id string) (Probe, <-chan struct{}, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.byID[id]
	if e == nil {
		return Probe{}, nil, false
	}
	return e.p, e.done, true
}

// list returns the probes, newest first.
func (ps *probeStore) list() []Probe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]Probe, 0, len(ps.order))
	for i := len(ps.order) - 1; i >= 0; i-- {
		out = append(out, ps.order[i].p)
	}
	return out
}

// take marks node's pending probes running and returns them as tasks; with
// none, it returns a channel closed when one comes.
func (ps *probeStore) take(node string, now time.Time) ([]ProbeTask, <-chan struct{}) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var tasks []ProbeTask
	for _, e := range ps.order {
		p := &e.p
		if p.State != ProbePending || !strings.EqualFold(p.Node, node) {
			continue
		}
		p.State, p.Started = ProbeRunning, now
		tasks = append(tasks, ProbeTask{ID: p.ID, Endpoint: p.Endpoint, To: p.To, Kind: p.Kind, Port: p.Port, Count: p.Count, TimeoutMillis: p.TimeoutMillis})
	}
	if len(tasks) > 0 {
		return tasks, nil
	}
	key := strings.ToLower(node)
	c := ps.wake[key]
	if c == nil {
		c = make(chan struct{})
		ps.wake[key] = c
	}
	return nil, c
}

// finish records a result. It fails, saying why, for an unknown probe, one
// of another node, or one not running.
func (ps *probeStore) finish(id, node string, r ProbeResult, now time.Time) (Probe, int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.byID[id]
	if e == nil {
		return Probe{}, http.StatusNotFound, fmt.Errorf("no probe %q (the controller keeps the latest %d, in memory)", id, MaxProbes)
	}
	p := &e.p
	switch {
	case node != "" && !strings.EqualFold(node, p.Node):
		return *p, http.StatusConflict, fmt.Errorf("probe %s is node %s's, but %s names node %s's NICs", id, p.Node, MACHeader, node)
	case p.State == ProbePending:
		return *p, http.StatusConflict, fmt.Errorf("probe %s is pending: node %s's agent has not taken it (GET /weft/v1/nodes/%s/tasks)", id, p.Node, p.Node)
	case p.State != ProbeRunning:
		return *p, http.StatusConflict, fmt.Errorf("probe %s is %s already (%s)", id, p.State, oneLine(p.Detail))
	}
	p.State, p.OK, p.Detail, p.RTTMicros, p.Finished = ProbeDone, r.OK, r.Detail, r.RTTMicros, now
	close(e.done)
	return *p, 0, nil
}

// forget drops the probes of nodes no longer in the inventory that are
// still pending: no agent will ever take them.
func (ps *probeStore) forget(inv *Inventory, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, e := range ps.order {
		if p := &e.p; p.State == ProbePending && inv.Node(p.Node) == nil {
			p.State, p.Detail, p.Finished = ProbeExpired, fmt.Sprintf("node %s was removed from the inventory", p.Node), now
			close(e.done)
		}
	}
}

// parseWait reads a request's wait= parameter: a Go duration, 0..MaxWait.
func parseWait(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("wait: %q is not a duration (like 25s)", v)
	}
	if d < 0 || d > MaxWait {
		return 0, fmt.Errorf("wait: %v is out of range 0..%v", d, MaxWait)
	}
	return d, nil
}

// longPoll lets a response wait past the server's write timeout.
func longPoll(w http.ResponseWriter, wait time.Duration) {
	if wait > 0 {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 10*time.Second))
	}
}

// expireProbes ends overdue probes and logs them.
func (s *Server) expireProbes() {
	for _, p := range s.probes.expire(s.now(), s.state.lastPoll) {
		s.log.Warn("probe expired", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "detail", p.Detail)
	}
}

func (s *Server) sendJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		plain(w, http.StatusInternalServerError, "weft controller: %v", err)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
}

func (s *Server) servePostProbe(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxProbeBody))
	if err != nil {
		plain(w, http.StatusRequestEntityTooLarge, "weft controller: reading the probe: %v", err)
		return
	}
	req, err := DecodeProbeRequest(body)
	if err != nil {
		plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	inv := s.inv.Load()
	node := inv.Node(req.Node)
	if node == nil {
		plain(w, http.StatusNotFound, "weft controller: probe: node: no node %q in the inventory %s", req.Node, inv.Path)
		return
	}
	req.Node = node.Name // as the inventory writes it
	s.expireProbes()
	p, err := s.probes.add(req, s.now())
	if err != nil {
		plain(w, http.StatusServiceUnavailable, "weft controller: %v", err)
		return
	}
	s.log.Info("probe requested", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "kind", string(p.Kind), "port", p.Port, "count", p.Count)
	w.Header().Set("Location", "/weft/v1/probes/"+p.ID)
	s.sendJSON(w, http.StatusCreated, p)
}

func (s *Server) serveProbes(w http.ResponseWriter, r *http.Request) {
	s.expireProbes()
	s.sendJSON(w, http.StatusOK, ProbeList{Probes: s.probes.list()})
}

func (s *Server) serveProbe(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := parseWait(r)
	if err != nil {
		plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	longPoll(w, wait)
	s.expireProbes()
	p, done, ok := s.probes.get(id)
	if !ok {
		plain(w, http.StatusNotFound, "weft controller: no probe %q (the controller keeps the latest %d, in memory)", id, MaxProbes)
		return
	}
	if wait > 0 && !p.Final() {
		t := time.NewTimer(wait)
		defer t.Stop()
		// A sweep a second ends a probe on time even when no Serve runs
		// the server's own.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
	loop:
		for {
			select {
			case <-done:
				break loop
			case <-t.C:
				break loop
			case <-s.quit:
				break loop
			case <-r.Context().Done():
				return
			case <-tick.C:
				s.expireProbes()
			}
		}
		p, _, _ = s.probes.get(id)
	}
	s.sendJSON(w, http.StatusOK, p)
}

// nodeOfRequest is the node a node's request is for: name must be in the
// inventory, and the request's X-Weft-MAC, if any, must not name another
// node's NICs. It writes the error answer itself.
func (s *Server) nodeOfRequest(w http.ResponseWriter, r *http.Request, name string) *Node {
	inv := s.inv.Load()
	node := inv.Node(name)
	if node == nil {
		plain(w, http.StatusNotFound, "weft controller: no node %q in the inventory %s", name, inv.Path)
		return nil
	}
	macs, err := ParseMACHeader(r.Header)
	if err != nil {
		plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return nil
	}
	if len(macs) > 0 {
		if other, err := inv.Match(macs, netip.Addr{}); err == nil && other.Name != node.Name {
			plain(w, http.StatusConflict, "weft controller: a request for node %s, but %s %s are node %s's in the inventory %s", node.Name, MACHeader, FormatMACHeader(macs), other.Name, inv.Path)
			return nil
		}
	}
	return node
}

func (s *Server) serveTasks(w http.ResponseWriter, r *http.Request) {
	node := s.nodeOfRequest(w, r, r.PathValue("name"))
	if node == nil {
		return
	}
	wait, err := parseWait(r)
	if err != nil {
		plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	longPoll(w, wait)
	s.state.polled(node.Name, s.now())
	s.expireProbes()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		tasks, wake := s.probes.take(node.Name, s.now())
		if len(tasks) > 0 {
			for _, t := range tasks {
				s.log.Info("probe taken", "probe", t.ID, "node", node.Name, "addr", remoteAddr(r).String())
			}
			s.sendJSON(w, http.StatusOK, Tasks{Probes: tasks})
			return
		}
		select {
		case <-wake:
			continue // a probe came: take it
		case <-deadline.C:
		case <-s.quit: // the controller stops: do not hold up its shutdown
		case <-r.Context().Done():
			return
		}
		s.state.polled(node.Name, s.now())
		s.sendJSON(w, http.StatusOK, Tasks{Probes: []ProbeTask{}})
		return
	}
}

func (s *Server) serveProbeResult(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxProbeBody))
	if err != nil {
		plain(w, http.StatusRequestEntityTooLarge, "weft controller: reading the result: %v", err)
		return
	}
	res, err := DecodeProbeResult(body)
	if err != nil {
		plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	macs, err := ParseMACHeader(r.Header)
	if err != nil {
		plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	var from string
	if len(macs) > 0 {
		if n, err := s.inv.Load().Match(macs, netip.Addr{}); err == nil {
			from = n.Name
		}
	}
	s.expireProbes()
	p, code, err := s.probes.finish(id, from, res, s.now())
	if err != nil {
		plain(w, code, "weft controller: %v", err)
		return
	}
	s.log.Info("probe done", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "ok", p.OK, "detail", p.Detail, "rtt_us", p.RTTMicros)
	w.WriteHeader(http.StatusNoContent)
}
