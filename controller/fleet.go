package controller

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/init/steps"
)

// Fleet is what GET /weft/v1/fleet returns: every node of the inventory
// with what the controller knows of it.
type Fleet struct {
	Time      time.Time `json:"time"`      // the controller's clock when the view was taken
	Inventory string    `json:"inventory"` // the inventory file
	// InventoryError is why the inventory file's current content was
	// refused; meanwhile the controller serves the last good one.
	InventoryError string         `json:"inventoryError,omitempty"`
	Reflector      *ReflectorInfo `json:"reflector,omitempty"` // nil without the route reflector
	Boot           *BootInfo      `json:"boot,omitempty"`      // nil without boot files (--image)
	DHCP           *DHCPInfo      `json:"dhcp,omitempty"`      // nil without the DHCP server
	Nodes          []NodeStatus   `json:"nodes"`               // in inventory order
}

// ReflectorInfo describes the embedded route reflector.
type ReflectorInfo struct {
	Listen      string         `json:"listen"` // ADDR:PORT
	ASN         uint32         `json:"asn"`
	RouterID    netip.Addr     `json:"routerID"`
	Clients     []netip.Prefix `json:"clients"` // where sessions are accepted from
	MD5         bool           `json:"md5"`
	Established int            `json:"established"` // sessions up, of any node or none
}

// Phase is where a node is, in one word.
type Phase string

const (
	PhaseUnseen  Phase = "unseen"  // no DHCP lease, boot script, config fetch or report
	PhaseBooting Phase = "booting" // got a lease, its boot script or config, or reports steps; not ready, nothing failed
	PhaseStuck   Phase = "stuck"   // not ready and a step failed: Problems says which and why
	PhaseReady   Phase = "ready"   // step "ready" is ok
	PhaseStale   Phase = "stale"   // reported before, but not for StaleIntervals intervals
)

// NodeStatus is one node in the fleet view.
type NodeStatus struct {
	Name string `json:"name"`
	// Address is the inventory's, else where the node's last report came
	// from.
	Address netip.Addr `json:"address,omitzero"`
	MACs    []string   `json:"macs,omitempty"`
	UUID    string     `json:"uuid"`
	Phase   Phase      `json:"phase"`
	Ready   bool       `json:"ready"` // step "ready" has verdict ok (and the node is not stale)
	Stale   bool       `json:"stale"`
	// LastSeen is when the last report arrived (the controller's clock);
	// ConfigFetched when the node last fetched its meta_data.json.
	LastSeen      time.Time `json:"lastSeen,omitzero"`
	ConfigFetched time.Time `json:"configFetched,omitzero"`
	// Leased is when the controller's DHCP server last acknowledged the
	// node's lease; BootFetched when the node last fetched boot.ipxe.
	Leased      time.Time `json:"leased,omitzero"`
	BootFetched time.Time `json:"bootFetched,omitzero"`
	// TasksPolled is when the node's agent last asked for tasks (probes).
	TasksPolled     time.Time `json:"tasksPolled,omitzero"`
	IntervalSeconds int       `json:"intervalSeconds,omitempty"` // of the last report
	Version         string    `json:"version,omitempty"`
	// LastStep is the step reported most recently.
	LastStep *steps.Step `json:"lastStep,omitempty"`
	// Problems are the steps whose latest verdict is failed, and while the
	// node is not ready, waiting.
	Problems []steps.Step `json:"problems,omitempty"`
	Steps    []steps.Step `json:"steps,omitempty"`
	// BGP is the node's own view of its sessions; nil until its agent
	// reports.
	BGP       *BGPSummary `json:"bgp,omitempty"`
	Endpoints []Endpoint  `json:"endpoints,omitempty"`
	// Reflector is the embedded reflector's session with the node; nil
	// without the reflector.
	Reflector *ReflectorSession `json:"reflector,omitempty"`
}

// BGPSummary counts a node's sessions.
type BGPSummary struct {
	Up       int          `json:"up"`
	Total    int          `json:"total"`
	Sessions []BGPSession `json:"sessions"`
}

// ReflectorSession is the reflector's session with one node.
type ReflectorSession struct {
	// State is the FSM state (established, idle, ...), or "none" when the
	// reflector has never had a session with the node.
	State    string     `json:"state"`
	Peer     netip.Addr `json:"peer,omitzero"`     // the session's remote address
	RouterID netip.Addr `json:"routerID,omitzero"` // the node's, from its OPEN
	Since    time.Time  `json:"since,omitzero"`    // when State began, as far as the controller saw
	Routes   uint64     `json:"routes,omitempty"`  // paths accepted from the node
}

// Established reports whether the session is up.
func (s *ReflectorSession) Established() bool { return s != nil && s.State == "established" }

// record is what the controller holds of one node besides the inventory.
type record struct {
	report      *Report
	received    time.Time
	from        netip.Addr
	fetched     time.Time
	fetchedFrom netip.Addr
	leased      time.Time
	booted      time.Time // boot.ipxe served
	polled      time.Time // tasks asked for
}

// fleetState keeps the latest report and fetch of each node, in memory.
type fleetState struct {
	mu    sync.Mutex
	nodes map[string]*record // by lower-case node name
}

func newFleetState() *fleetState { return &fleetState{nodes: map[string]*record{}} }

func (f *fleetState) get(name string) *record {
	key := strings.ToLower(name)
	r := f.nodes[key]
	if r == nil {
		r = &record{}
		f.nodes[key] = r
	}
	return r
}

func (f *fleetState) report(name string, rep *Report, from netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.get(name)
	r.report, r.received, r.from = rep, now, from
}

func (f *fleetState) fetched(name string, from netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.get(name)
	r.fetched, r.fetchedFrom = now, from
}

// leased, booted and polled record a DHCP acknowledgement, a boot script
// served and a task poll.
func (f *fleetState) leased(name string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).leased = now
}

func (f *fleetState) booted(name string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).booted = now
}

func (f *fleetState) polled(name string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(name).polled = now
}

// lastPoll is when node's agent last asked for tasks; zero = never.
func (f *fleetState) lastPoll(name string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.nodes[strings.ToLower(name)]; r != nil {
		return r.polled
	}
	return time.Time{}
}

// prune forgets nodes no longer in the inventory.
func (f *fleetState) prune(inv *Inventory) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.nodes {
		if inv.Node(k) == nil {
			delete(f.nodes, k)
		}
	}
}

// sessionIndex finds the reflector's session with a node.
type sessionIndex struct {
	byAddr     map[netip.Addr]ReflectorSession
	byRouterID map[netip.Addr]ReflectorSession
}

func newSessionIndex(sessions []ReflectorSession) sessionIndex {
	ix := sessionIndex{byAddr: map[netip.Addr]ReflectorSession{}, byRouterID: map[netip.Addr]ReflectorSession{}}
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
func (ix sessionIndex) find(addrs []netip.Addr, routerID, from netip.Addr) *ReflectorSession {
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

// snapshot builds the fleet view. sessions is nil without a reflector.
func (f *fleetState) snapshot(inv *Inventory, rr *ReflectorInfo, sessions []ReflectorSession, now time.Time) Fleet {
	fl := Fleet{Time: now, Inventory: inv.Path, Reflector: rr, Nodes: make([]NodeStatus, 0, len(inv.Nodes))}
	ix := newSessionIndex(sessions)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range inv.Nodes {
		ns := NodeStatus{Name: n.Name, Address: n.Address, UUID: n.UUID, Phase: PhaseUnseen}
		for _, m := range n.MACs {
			ns.MACs = append(ns.MACs, m.String())
		}
		addrs := []netip.Addr{n.Address}
		var routerID, from netip.Addr
		if r := f.nodes[strings.ToLower(n.Name)]; r != nil {
			ns.ConfigFetched = r.fetched
			ns.Leased, ns.BootFetched, ns.TasksPolled = r.leased, r.booted, r.polled
			if !ns.Address.IsValid() {
				ns.Address = r.from
				if !ns.Address.IsValid() {
					ns.Address = r.fetchedFrom
				}
			}
			if !r.fetched.IsZero() || !r.leased.IsZero() || !r.booted.IsZero() {
				ns.Phase = PhaseBooting
			}
			if rep := r.report; rep != nil {
				ns.Phase = PhaseBooting
				ns.LastSeen = r.received
				ns.IntervalSeconds = int(rep.Interval() / time.Second)
				ns.Version = rep.Version
				ns.Stale = now.Sub(r.received) > StaleIntervals*rep.Interval()
				ns.Steps = slices.Clone(rep.Steps)
				failed := false
				for i, s := range rep.Steps {
					if ns.LastStep == nil || !s.Time.Before(ns.LastStep.Time) {
						ns.LastStep = &rep.Steps[i]
					}
					switch s.Verdict {
					case steps.Failed:
						failed = true
					case steps.OK:
						if s.Name == "ready" {
							ns.Ready = true
						}
					}
				}
				for _, s := range rep.Steps {
					if s.Verdict == steps.Failed || (s.Verdict == steps.Waiting && !ns.Ready) {
						ns.Problems = append(ns.Problems, s)
					}
				}
				if ns.LastStep != nil {
					c := *ns.LastStep
					ns.LastStep = &c
				}
				switch {
				case ns.Stale:
					ns.Phase, ns.Ready = PhaseStale, false
				case ns.Ready:
					ns.Phase = PhaseReady
				case failed:
					ns.Phase = PhaseStuck
				}
				if a := rep.Agent; a != nil {
					sum := &BGPSummary{Sessions: slices.Clone(a.BGP)}
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
				ns.Reflector = &ReflectorSession{State: "none"}
			}
		}
		fl.Nodes = append(fl.Nodes, ns)
	}
	return fl
}

// Ago writes how long before now t was, for people: "4s ago", "3m10s
// ago", "2h5m ago", "never".
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// WriteTable prints the fleet as `weft ctl fleet` shows it: one line a
// node, then the problems of nodes that are not ready.
func (f *Fleet) WriteTable(w io.Writer) error {
	var b strings.Builder
	if f.InventoryError != "" {
		fmt.Fprintf(&b, "inventory %s: its current content was refused; serving the last good one:\n  %s\n\n", f.Inventory, f.InventoryError)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	header := "NODE\tADDRESS\tPHASE\tLAST STEP\tVERDICT\tREADY\tBGP UP\tENDPOINTS\tLAST SEEN"
	if f.Reflector != nil {
		header += "\tREFLECTOR"
	}
	fmt.Fprintln(tw, header)
	for _, n := range f.Nodes {
		addr, step, verdict, bgp := "-", "-", "-", "-"
		if n.Address.IsValid() {
			addr = n.Address.String()
		}
		if n.LastStep != nil {
			step, verdict = n.LastStep.Name, string(n.LastStep.Verdict)
		}
		if n.BGP != nil {
			bgp = fmt.Sprintf("%d/%d", n.BGP.Up, n.BGP.Total)
		}
		ready := "no"
		if n.Ready {
			ready = "yes"
		}
		seen := Ago(n.LastSeen, f.Time)
		switch {
		case !n.LastSeen.IsZero():
		case !n.ConfigFetched.IsZero():
			seen = "fetched config " + Ago(n.ConfigFetched, f.Time)
		case !n.BootFetched.IsZero():
			seen = "fetched boot.ipxe " + Ago(n.BootFetched, f.Time)
		case !n.Leased.IsZero():
			seen = "DHCP lease " + Ago(n.Leased, f.Time)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s", n.Name, addr, n.Phase, step, verdict, ready, bgp, len(n.Endpoints), seen)
		if f.Reflector != nil && n.Reflector != nil {
			line += "\t" + n.Reflector.State
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	first := true
	for _, n := range f.Nodes {
		if n.Ready || len(n.Problems) == 0 {
			continue
		}
		if first {
			b.WriteString("\nnot ready:\n")
			first = false
		}
		for _, s := range n.Problems {
			fmt.Fprintf(&b, "  %s: step %s %s", n.Name, s.Name, s.Verdict)
			if s.Detail != "" {
				b.WriteString(": " + oneLine(s.Detail))
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine keeps a detail on one terminal line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
