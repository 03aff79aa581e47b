// Package fleet keeps what the controller knows of each node besides the
// inventory (its reports, configuration fetches, leases, boot scripts and
// task polls), builds the fleet view from it, and serves the node reports
// and the fleet as a web page.
package fleet

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/controller/inventory"

	"github.com/weftnet/weft/controller/fleetapi"
)

// record is what the controller holds of one node besides the inventory.
type record struct {
	report      *fleetapi.Report
	received    time.Time
	from        netip.Addr
	fetched     time.Time
	fetchedFrom netip.Addr
	leased      time.Time
	booted      time.Time // boot.ipxe served
	polled      time.Time // tasks asked for
	claimed     time.Time // identity claimed (credential issued)
	claimedFrom netip.Addr
	refused     *fleetapi.RefusedClaim // the latest refused claim
}

// State keeps the latest report and fetch of each node, in memory. It is
// safe for concurrent use.
type State struct {
	mu    sync.Mutex
	nodes map[string]*record // by lower-case node name
}

// NewState returns an empty State.
func NewState() *State { return &State{nodes: map[string]*record{}} }

func (f *State) get(name string) *record {
	key := strings.ToLower(name)
	r := f.nodes[key]
	if r == nil {
		r = &record{}
		f.nodes[key] = r
	}
	return r
}

// Report records a node's report, received from from.
func (f *State) Report(name string, rep *fleetapi.Report, from netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.get(name)
	r.report, r.received, r.from = rep, now, from
}

// Fetched records a node's fetch of its metadata.
func (f *State) Fetched(name string, from netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.get(name)
	r.fetched, r.fetchedFrom = now, from
}

// Leased, Booted and Polled record a DHCP acknowledgement, a boot script
// served and a task poll.
func (f *State) Leased(name string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).leased = now
}

func (f *State) Booted(name string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).booted = now
}

func (f *State) Polled(name string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).polled = now
}

// LastPoll is when node's agent last asked for tasks; zero = never.
func (f *State) LastPoll(name string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.nodes[strings.ToLower(name)]; r != nil {
		return r.polled
	}
	return time.Time{}
}

// Prune forgets nodes no longer in the inventory.
func (f *State) Prune(inv *inventory.Inventory) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.nodes {
		if inv.Node(k) == nil {
			delete(f.nodes, k)
		}
	}
}

// LastStep is the node's latest reported step, "name=verdict"; "" before
// its first report.
func (f *State) LastStep(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.nodes[strings.ToLower(name)]; r != nil && r.report != nil {
		return summary(r.report)
	}
	return ""
}

// summary is a report's latest step, "name=verdict", to log changes only.
func summary(r *fleetapi.Report) string {
	var last string
	var t time.Time
	for _, st := range r.Steps {
		if last == "" || !st.Time.Before(t) {
			last, t = st.Name+"="+string(st.Verdict), st.Time
		}
	}
	return last
}

// sessionIndex finds the reflector's session with a node.
type sessionIndex struct {
	byAddr     map[netip.Addr]fleetapi.ReflectorSession
	byRouterID map[netip.Addr]fleetapi.ReflectorSession
}

func newSessionIndex(sessions []fleetapi.ReflectorSession) sessionIndex {
	ix := sessionIndex{byAddr: map[netip.Addr]fleetapi.ReflectorSession{}, byRouterID: map[netip.Addr]fleetapi.ReflectorSession{}}
	for _, s := range sessions {
		ix.byAddr[s.Peer] = s
		if s.RouterID.IsValid() {
			// An established session wins over an older one that had the
			// same router ID.
			if o, ok := ix.byRouterID[s.RouterID]; !ok || !o.Established() {
				ix.byRouterID[s.RouterID] = s
			}
		}
	}
	return ix
}

// find looks for the session by the node's addresses, then its router ID,
// then the address its reports come from (last: it may be a NAT's).
func (ix sessionIndex) find(addrs []netip.Addr, routerID, from netip.Addr) *fleetapi.ReflectorSession {
	for _, a := range addrs {
		if s, ok := ix.byAddr[a]; ok && a.IsValid() {
			return &s
		}
	}
	if s, ok := ix.byRouterID[routerID]; ok && routerID.IsValid() {
		return &s
	}
	if s, ok := ix.byAddr[from]; ok && from.IsValid() {
		return &s
	}
	return nil
}

// Snapshot builds the fleet view. sessions is nil without a reflector.
func (f *State) Snapshot(inv *inventory.Inventory, rr *fleetapi.ReflectorInfo, sessions []fleetapi.ReflectorSession, now time.Time) fleetapi.Fleet {
	fl := fleetapi.Fleet{Time: now, Inventory: inv.Path, Reflector: rr, Nodes: make([]fleetapi.NodeStatus, 0, len(inv.Nodes))}
	ix := newSessionIndex(sessions)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range inv.Nodes {
		ns := fleetapi.NodeStatus{Name: n.Name, Address: n.Address, UUID: n.UUID, Phase: fleetapi.PhaseUnseen}
		for _, m := range n.MACs {
			ns.MACs = append(ns.MACs, m.String())
		}
		addrs := []netip.Addr{n.Address}
		var routerID, from netip.Addr
		if r := f.nodes[strings.ToLower(n.Name)]; r != nil {
			ns.ConfigFetched = r.fetched
			ns.Leased, ns.BootFetched, ns.TasksPolled = r.leased, r.booted, r.polled
			if !r.claimed.IsZero() || r.refused != nil {
				ns.Identity = &fleetapi.Identity{Claimed: r.claimed, ClaimedFrom: r.claimedFrom}
				if r.refused != nil {
					c := *r.refused
					ns.Identity.Refused = &c
				}
			}
			if !ns.Address.IsValid() {
				ns.Address = r.from
				if !ns.Address.IsValid() {
					ns.Address = r.fetchedFrom
				}
			}
			if !r.fetched.IsZero() || !r.leased.IsZero() || !r.booted.IsZero() {
				ns.Phase = fleetapi.PhaseBooting
			}
			if rep := r.report; rep != nil {
				ns.Phase = fleetapi.PhaseBooting
				ns.LastSeen = r.received
				ns.IntervalSeconds = int(rep.Interval() / time.Second)
				ns.Version = rep.Version
				ns.Stale = now.Sub(r.received) > fleetapi.StaleIntervals*rep.Interval()
				ns.Steps = slices.Clone(rep.Steps)
				failed := false
				for i, s := range rep.Steps {
					if ns.LastStep == nil || !s.Time.Before(ns.LastStep.Time) {
						ns.LastStep = &rep.Steps[i]
					}
					switch s.Verdict {
					case fleetapi.VerdictFailed:
						failed = true
					case fleetapi.VerdictOK:
						if s.Name == "ready" {
							ns.Ready = true
						}
					}
				}
				for _, s := range rep.Steps {
					if s.Verdict == fleetapi.VerdictFailed || (s.Verdict == fleetapi.VerdictWaiting && !ns.Ready) {
						ns.Problems = append(ns.Problems, s)
					}
				}
				if ns.LastStep != nil {
					c := *ns.LastStep
					ns.LastStep = &c
				}
				switch {
				case ns.Stale:
					ns.Phase, ns.Ready = fleetapi.PhaseStale, false
				case ns.Ready:
					ns.Phase = fleetapi.PhaseReady
				case failed:
					ns.Phase = fleetapi.PhaseStuck
				}
				if a := rep.Agent; a != nil {
					sum := &fleetapi.BGPSummary{Sessions: slices.Clone(a.BGP)}
					for _, s := range a.BGP {
						sum.Total++
						if s.Established() {
							sum.Up++
						}
					}
					ns.BGP = sum
					ns.Endpoints = slices.Clone(a.Endpoints)
					routerID = a.RouterID
				}
				addrs = append(addrs, rep.Addresses...)
				from = r.from
			}
		}
		if rr != nil {
			if s := ix.find(addrs, routerID, from); s != nil {
				ns.Reflector = s
			} else {
				ns.Reflector = &fleetapi.ReflectorSession{State: "none"}
			}
		}
		fl.Nodes = append(fl.Nodes, ns)
	}
	return fl
}

// Claimed records the node's claim of its identity, from from.
func (f *State) Claimed(name string, from netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.get(name)
	r.claimed, r.claimedFrom = now, from
}

// ClaimRefused records a refused claim of the node's identity.
func (f *State) ClaimRefused(name string, c fleetapi.RefusedClaim) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).refused = &c
}
