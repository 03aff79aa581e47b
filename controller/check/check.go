// Package check keeps the controller's reachability checks: an operator
// asks for one (fleetapi.ProbeRequest), the node's agent takes it as a
// task, runs it as a probe and posts the result. A check is the
// controller's record of that expectation; the wire keeps the name
// "probe" (paths, JSON, fleetapi).
package check

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/controller/inventory"

	"github.com/weftnet/weft/controller/fleetapi"
)

// Store keeps the checks, in memory. It is safe for concurrent use.
type Store struct {
	mu    sync.Mutex
	byID  map[string]*entry
	order []*entry // oldest first
	// wake has a channel per node (lower-case name) that is closed, and
	// replaced, when a check for the node becomes pending.
	wake map[string]chan struct{}
}

type entry struct {
	p    fleetapi.Probe
	done chan struct{} // closed when the check becomes final
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{byID: map[string]*entry{}, wake: map[string]chan struct{}{}}
}

// errFull is Add's error when every kept check is still in flight.
var errFull = fmt.Errorf("%d probes are pending or running: wait for some to finish", fleetapi.MaxProbes)

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (ps *Store) Add(req fleetapi.ProbeRequest, now time.Time) (fleetapi.Probe, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.order) >= fleetapi.MaxProbes {
		i := slices.IndexFunc(ps.order, func(e *entry) bool { return e.p.Final() })
		if i < 0 {
			return fleetapi.Probe{}, errFull
		}
		delete(ps.byID, ps.order[i].p.ID)
		ps.order = slices.Delete(ps.order, i, i+1)
	}
	e := &entry{p: fleetapi.Probe{ID: newID(), ProbeRequest: req, State: fleetapi.ProbePending, Created: now}, done: make(chan struct{})}
	for ps.byID[e.p.ID] != nil {
		e.p.ID = newID()
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

// runDeadline is when a taken check expires without a result.
func runDeadline(p *fleetapi.Probe) time.Time {
	return p.Started.Add(time.Duration(p.Count)*time.Duration(p.TimeoutMillis)*time.Millisecond + fleetapi.ProbeResultGrace)
}

// Expire ends the checks past their time; lastPoll tells when a node's
// agent last polled, for the detail. It returns the checks it expired.
func (ps *Store) Expire(now time.Time, lastPoll func(node string) time.Time) []fleetapi.Probe {
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

// Get returns a check and a channel closed once it is final.
func (ps *Store) Get(id string) (fleetapi.Probe, <-chan struct{}, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.byID[id]
	if e == nil {
		return fleetapi.Probe{}, nil, false
	}
	return e.p, e.done, true
}

// List returns the checks, newest first.
func (ps *Store) List() []fleetapi.Probe {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]fleetapi.Probe, 0, len(ps.order))
	for i := len(ps.order) - 1; i >= 0; i-- {
		out = append(out, ps.order[i].p)
	}
	return out
}

// Take marks node's pending checks running and returns them as tasks;
// with none, it returns a channel closed when one comes.
func (ps *Store) Take(node string, now time.Time) ([]fleetapi.ProbeTask, <-chan struct{}) {
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

// Finish records a result. It fails, saying why (with the HTTP status to
// answer), for an unknown check, one of another node than node (the
// result's sender), or one not running.
func (ps *Store) Finish(id, node string, r fleetapi.ProbeResult, now time.Time) (fleetapi.Probe, int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.byID[id]
	if e == nil {
		return fleetapi.Probe{}, http.StatusNotFound, fmt.Errorf("no probe %q (the controller keeps the latest %d, in memory)", id, fleetapi.MaxProbes)
	}
	p := &e.p
	switch {
	case !strings.EqualFold(node, p.Node):
		return *p, http.StatusForbidden, fmt.Errorf("probe %s is node %s's, not node %s's (the request's credential)", id, p.Node, node)
	case p.State == fleetapi.ProbePending:
		return *p, http.StatusConflict, fmt.Errorf("probe %s is pending: node %s's agent has not taken it (GET /weft/v1/nodes/%s/tasks)", id, p.Node, p.Node)
	case p.State != fleetapi.ProbeRunning:
		return *p, http.StatusConflict, fmt.Errorf("probe %s is %s already (%s)", id, p.State, strings.Join(strings.Fields(p.Detail), " "))
	}
	p.State, p.OK, p.Detail, p.RTTMicros, p.Finished = fleetapi.ProbeDone, r.OK, r.Detail, r.RTTMicros, now
	close(e.done)
	return *p, 0, nil
}

// Forget ends the checks of nodes no longer in the inventory that are
// still pending: no agent will ever take them.
func (ps *Store) Forget(inv *inventory.Inventory, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, e := range ps.order {
		if p := &e.p; p.State == fleetapi.ProbePending && inv.Node(p.Node) == nil {
			p.State, p.Detail, p.Finished = fleetapi.ProbeExpired, fmt.Sprintf("node %s was removed from the inventory", p.Node), now
			close(e.done)
		}
	}
}
