package controller

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/controller/httpx"

	"github.com/weftnet/weft/controller/inventory"

	"github.com/weftnet/weft/controller/fleetapi"
)

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
	p    fleetapi.Probe
	done chan struct{} // closed when the probe becomes final
}

func newProbeStore() *probeStore {
	return &probeStore{byID: map[string]*probeEntry{}, wake: map[string]chan struct{}{}}
}

// errProbesFull is add's error when every kept probe is still in flight.
var errProbesFull = fmt.Errorf("%d probes are pending or running: wait for some to finish", fleetapi.MaxProbes)

func newProbeID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (ps *probeStore) add(req fleetapi.ProbeRequest, now time.Time) (fleetapi.Probe, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.order) >= fleetapi.MaxProbes {
		i := slices.IndexFunc(ps.order, func(e *probeEntry) bool { return e.p.Final() })
		if i < 0 {
			return fleetapi.Probe{}, errProbesFull
		}
		delete(ps.byID, ps.order[i].p.ID)
		ps.order = slices.Delete(ps.order, i, i+1)
	}
	e := &probeEntry{p: fleetapi.Probe{ID: newProbeID(), ProbeRequest: req, State: fleetapi.ProbePending, Created: now}, done: make(chan struct{})}
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
func runDeadline(p *fleetapi.Probe) time.Time {
	return p.Started.Add(time.Duration(p.Count)*time.Duration(p.TimeoutMillis)*time.Millisecond + fleetapi.ProbeResultGrace)
}

// expire ends the probes past their time; lastPoll tells when a node's
// agent last polled, for the detail. It returns the probes it expired.
func (ps *probeStore) expire(now time.Time, lastPoll func(node string) time.Time) []fleetapi.Probe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []fleetapi.Probe
	for _, e := range ps.order {
		p := &e.p
		switch {
		case p.State == fleetapi.ProbePending && now.Sub(p.Created) >= fleetapi.ProbePickupTimeout:
			polled := "it never polled"
			if t := lastPoll(p.Node); !t.IsZero() {
				polled = "it last polled " + fleetapi.Ago(t, now)
			}
			p.Detail = fmt.Sprintf("node %s's agent did not poll for tasks within %v (%s): is its agent running, and does it reach the controller?",
				p.Node, fleetapi.ProbePickupTimeout, polled)
		case p.State == fleetapi.ProbeRunning && !now.Before(runDeadline(p)):
			p.Detail = fmt.Sprintf("node %s's agent took the probe %s but sent no result within %v: did the agent restart, or lose the controller?",
				p.Node, fleetapi.Ago(p.Started, now), runDeadline(p).Sub(p.Started))
		default:
			continue
		}
		p.State, p.OK, p.Finished = fleetapi.ProbeExpired, false, now
		close(e.done)
		out = append(out, *p)
	}
	return out
}

func (ps *probeStore) get(id string) (fleetapi.Probe, <-chan struct{}, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.byID[id]
	if e == nil {
		return fleetapi.Probe{}, nil, false
	}
	return e.p, e.done, true
}

// list returns the probes, newest first.
func (ps *probeStore) list() []fleetapi.Probe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]fleetapi.Probe, 0, len(ps.order))
	for i := len(ps.order) - 1; i >= 0; i-- {
		out = append(out, ps.order[i].p)
	}
	return out
}

// take marks node's pending probes running and returns them as tasks; with
// none, it returns a channel closed when one comes.
func (ps *probeStore) take(node string, now time.Time) ([]fleetapi.ProbeTask, <-chan struct{}) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var tasks []fleetapi.ProbeTask
	for _, e := range ps.order {
		p := &e.p
		if p.State != fleetapi.ProbePending || !strings.EqualFold(p.Node, node) {
			continue
		}
		p.State, p.Started = fleetapi.ProbeRunning, now
		tasks = append(tasks, fleetapi.ProbeTask{ID: p.ID, Endpoint: p.Endpoint, To: p.To, Kind: p.Kind, Port: p.Port, Count: p.Count, TimeoutMillis: p.TimeoutMillis})
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
func (ps *probeStore) finish(id, node string, r fleetapi.ProbeResult, now time.Time) (fleetapi.Probe, int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.byID[id]
	if e == nil {
		return fleetapi.Probe{}, http.StatusNotFound, fmt.Errorf("no probe %q (the controller keeps the latest %d, in memory)", id, fleetapi.MaxProbes)
	}
	p := &e.p
	switch {
	case node != "" && !strings.EqualFold(node, p.Node):
		return *p, http.StatusConflict, fmt.Errorf("probe %s is node %s's, but %s names node %s's NICs", id, p.Node, fleetapi.MACHeader, node)
	case p.State == fleetapi.ProbePending:
		return *p, http.StatusConflict, fmt.Errorf("probe %s is pending: node %s's agent has not taken it (GET /weft/v1/nodes/%s/tasks)", id, p.Node, p.Node)
	case p.State != fleetapi.ProbeRunning:
		return *p, http.StatusConflict, fmt.Errorf("probe %s is %s already (%s)", id, p.State, strings.Join(strings.Fields(p.Detail), " "))
	}
	p.State, p.OK, p.Detail, p.RTTMicros, p.Finished = fleetapi.ProbeDone, r.OK, r.Detail, r.RTTMicros, now
	close(e.done)
	return *p, 0, nil
}

// forget drops the probes of nodes no longer in the inventory that are
// still pending: no agent will ever take them.
func (ps *probeStore) forget(inv *inventory.Inventory, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, e := range ps.order {
		if p := &e.p; p.State == fleetapi.ProbePending && inv.Node(p.Node) == nil {
			p.State, p.Detail, p.Finished = fleetapi.ProbeExpired, fmt.Sprintf("node %s was removed from the inventory", p.Node), now
			close(e.done)
		}
	}
}

// expireProbes ends overdue probes and logs them.
func (s *Server) expireProbes() {
	for _, p := range s.probes.expire(s.now(), s.state.lastPoll) {
		s.log.Warn("probe expired", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "detail", p.Detail)
	}
}

func (s *Server) servePostProbe(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, fleetapi.MaxProbeBody))
	if err != nil {
		httpx.Plain(w, http.StatusRequestEntityTooLarge, "weft controller: reading the probe: %v", err)
		return
	}
	req, err := fleetapi.DecodeProbeRequest(body)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	inv := s.inv.Load()
	node := inv.Node(req.Node)
	if node == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: probe: node: no node %q in the inventory %s", req.Node, inv.Path)
		return
	}
	req.Node = node.Name // as the inventory writes it
	s.expireProbes()
	p, err := s.probes.add(req, s.now())
	if err != nil {
		httpx.Plain(w, http.StatusServiceUnavailable, "weft controller: %v", err)
		return
	}
	s.log.Info("probe requested", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "kind", string(p.Kind), "port", p.Port, "count", p.Count)
	w.Header().Set("Location", "/weft/v1/probes/"+p.ID)
	httpx.JSON(w, http.StatusCreated, p)
}

func (s *Server) serveProbes(w http.ResponseWriter, r *http.Request) {
	s.expireProbes()
	httpx.JSON(w, http.StatusOK, fleetapi.ProbeList{Probes: s.probes.list()})
}

func (s *Server) serveProbe(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := httpx.ParseWait(r, fleetapi.MaxWait)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	httpx.LongPoll(w, wait)
	s.expireProbes()
	p, done, ok := s.probes.get(id)
	if !ok {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no probe %q (the controller keeps the latest %d, in memory)", id, fleetapi.MaxProbes)
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
	httpx.JSON(w, http.StatusOK, p)
}

// nodeOfRequest is the node a node's request is for: name must be in the
// inventory, and the request's X-Weft-MAC, if any, must not name another
// node's NICs. It writes the error answer itself.
func (s *Server) nodeOfRequest(w http.ResponseWriter, r *http.Request, name string) *inventory.Node {
	inv := s.inv.Load()
	node := inv.Node(name)
	if node == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no node %q in the inventory %s", name, inv.Path)
		return nil
	}
	macs, err := fleetapi.ParseMACHeader(r.Header)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return nil
	}
	if len(macs) > 0 {
		if other, err := inv.Match(macs, netip.Addr{}); err == nil && other.Name != node.Name {
			httpx.Plain(w, http.StatusConflict, "weft controller: a request for node %s, but %s %s are node %s's in the inventory %s", node.Name, fleetapi.MACHeader, fleetapi.FormatMACHeader(macs), other.Name, inv.Path)
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
	wait, err := httpx.ParseWait(r, fleetapi.MaxWait)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	httpx.LongPoll(w, wait)
	s.state.polled(node.Name, s.now())
	s.expireProbes()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		tasks, wake := s.probes.take(node.Name, s.now())
		if len(tasks) > 0 {
			for _, t := range tasks {
				s.log.Info("probe taken", "probe", t.ID, "node", node.Name, "addr", httpx.RemoteAddr(r).String())
			}
			httpx.JSON(w, http.StatusOK, fleetapi.Tasks{Probes: tasks})
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
		httpx.JSON(w, http.StatusOK, fleetapi.Tasks{Probes: []fleetapi.ProbeTask{}})
		return
	}
}

func (s *Server) serveProbeResult(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, fleetapi.MaxProbeBody))
	if err != nil {
		httpx.Plain(w, http.StatusRequestEntityTooLarge, "weft controller: reading the result: %v", err)
		return
	}
	res, err := fleetapi.DecodeProbeResult(body)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	macs, err := fleetapi.ParseMACHeader(r.Header)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
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
		httpx.Plain(w, code, "weft controller: %v", err)
		return
	}
	s.log.Info("probe done", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "ok", p.OK, "detail", p.Detail, "rtt_us", p.RTTMicros)
	w.WriteHeader(http.StatusNoContent)
}
