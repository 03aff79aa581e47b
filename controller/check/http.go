package check

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/httpx"
	"github.com/weftnet/weft/controller/identity"
	"github.com/weftnet/weft/controller/inventory"
)

// Handlers serve the checks' HTTP API: operators' requests and results
// (/weft/v1/probes...) and the nodes' task polls (/weft/v1/nodes/{name}/tasks).
type Handlers struct {
	Inv   func() *inventory.Inventory
	Store *Store
	State *fleet.State // task polls are recorded here
	Log   *slog.Logger
	Now   func() time.Time
	// Quit is closed when the controller stops, to end long polls.
	Quit <-chan struct{}
}

// Expire ends overdue checks and logs them.
func (s *Handlers) Expire() {
	for _, p := range s.Store.Expire(s.Now(), s.State.LastPoll) {
		s.Log.Warn("probe expired", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "detail", p.Detail)
	}
}

// Post serves POST /weft/v1/probes.
func (s *Handlers) Post(w http.ResponseWriter, r *http.Request) {
	req, ok := httpx.Document(w, r, fleetapi.MaxProbeBody, "probe", fleetapi.DecodeProbeRequest)
	if !ok {
		return
	}
	inv := s.Inv()
	node := inv.Node(req.Node)
	if node == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: probe: node: no node %q in the inventory %s", req.Node, inv.Path)
		return
	}
	req.Node = node.Name // as the inventory writes it
	s.Expire()
	p, err := s.Store.Add(req, s.Now())
	if err != nil {
		httpx.Plain(w, http.StatusServiceUnavailable, "weft controller: %v", err)
		return
	}
	s.Log.Info("probe requested", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "kind", string(p.Kind), "port", p.Port, "count", p.Count)
	w.Header().Set("Location", "/weft/v1/probes/"+p.ID)
	httpx.JSON(w, http.StatusCreated, p)
}

// List serves GET /weft/v1/probes.
func (s *Handlers) List(w http.ResponseWriter, r *http.Request) {
	s.Expire()
	httpx.JSON(w, http.StatusOK, fleetapi.ProbeList{Probes: s.Store.List()})
}

// Get serves GET /weft/v1/probes/{id}.
func (s *Handlers) Get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := httpx.ParseWait(r, fleetapi.MaxWait)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	httpx.LongPoll(w, wait)
	s.Expire()
	p, done, ok := s.Store.Get(id)
	if !ok {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no probe %q (the controller keeps the latest %d, in memory)", id, fleetapi.MaxProbes)
		return
	}
	if wait > 0 && !p.Final() {
		t := time.NewTimer(wait)
		defer t.Stop()
		// A sweep a second ends a check on time even when no Serve runs
		// the controller's own.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
	loop:
		for {
			select {
			case <-done:
				break loop
			case <-t.C:
				break loop
			case <-s.Quit:
				break loop
			case <-r.Context().Done():
				return
			case <-tick.C:
				s.Expire()
			}
		}
		p, _, _ = s.Store.Get(id)
	}
	httpx.JSON(w, http.StatusOK, p)
}

// nodeOfRequest is the node a node's request is for: name must be in the
// inventory, and the request's X-Weft-MAC, if any, must not name another
// node's NICs. It writes the error answer itself.
func (s *Handlers) nodeOfRequest(w http.ResponseWriter, r *http.Request, name string) *inventory.Node {
	inv := s.Inv()
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

// Tasks serves GET /weft/v1/nodes/{name}/tasks.
func (s *Handlers) Tasks(w http.ResponseWriter, r *http.Request) {
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
	s.State.Polled(node.Name, s.Now())
	s.Expire()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		tasks, wake := s.Store.Take(node.Name, s.Now())
		if len(tasks) > 0 {
			for _, t := range tasks {
				s.Log.Info("probe taken", "probe", t.ID, "node", node.Name, "addr", httpx.RemoteAddr(r).String())
			}
			httpx.JSON(w, http.StatusOK, fleetapi.Tasks{Probes: tasks})
			return
		}
		select {
		case <-wake:
			continue // a check came: take it
		case <-deadline.C:
		case <-s.Quit: // the controller stops: do not hold up its shutdown
		case <-r.Context().Done():
			return
		}
		s.State.Polled(node.Name, s.Now())
		httpx.JSON(w, http.StatusOK, fleetapi.Tasks{Probes: []fleetapi.ProbeTask{}})
		return
	}
}

// Result serves POST /weft/v1/probes/{id}/result.
func (s *Handlers) Result(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	res, ok := httpx.Document(w, r, fleetapi.MaxProbeBody, "result", fleetapi.DecodeProbeResult)
	if !ok {
		return
	}
	s.Expire()
	// A result only from the node the probe was given to: the node of the
	// request's credential (identity.Require runs first).
	p, code, err := s.Store.Finish(id, identity.NodeOf(r), res, s.Now())
	if err != nil {
		httpx.Plain(w, code, "weft controller: %v", err)
		return
	}
	s.Log.Info("probe done", "probe", p.ID, "node", p.Node, "endpoint", p.Endpoint, "to", p.To.String(), "ok", p.OK, "detail", p.Detail, "rtt_us", p.RTTMicros)
	w.WriteHeader(http.StatusNoContent)
}

// Recent ends overdue checks and returns the checks, newest first.
func (s *Handlers) Recent() []fleetapi.Probe {
	s.Expire()
	return s.Store.List()
}
