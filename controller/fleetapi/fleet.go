package fleetapi

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
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

// BootInfo is what the controller serves for PXE boots, as the fleet view
// shows it.
type BootInfo struct {
	Dir string `json:"dir"`
	// Script is the iPXE script's path (/boot.ipxe); its URLs name the
	// host the script was fetched from.
	Script string `json:"script"`
	// Cmdline is the kernel command line; <controller> stands for the
	// host the script was fetched from.
	Cmdline       string     `json:"cmdline"`
	KernelRelease string     `json:"kernelRelease,omitempty"` // from manifest.json
	Weft          string     `json:"weft,omitempty"`          // from manifest.json
	Files         []BootFile `json:"files"`
}

// BootFile is one file served under /boot/.
type BootFile struct {
	Name string    `json:"name"`
	Path string    `json:"path"` // /boot/vmlinuz
	Size int64     `json:"size"`
	Mod  time.Time `json:"modified"`
}

// DHCPInfo describes the DHCP server, as the fleet view shows it.
type DHCPInfo struct {
	Interface string         `json:"interface"`
	Addresses []netip.Prefix `json:"addresses"` // the interface's IPv4 addresses, server identifiers
	Router    netip.Addr     `json:"router,omitzero"`
	// MTU is the configured option 26: 0 = each node's underlay MTU, -1 = never.
	MTU          int    `json:"mtu"`
	LeaseSeconds int    `json:"leaseSeconds"`
	BootFile     string `json:"bootFile,omitempty"` // option 67 for iPXE clients; "" without boot files
	Answered     uint64 `json:"answered"`           // offers, acks and naks sent
	Unknown      uint64 `json:"unknown"`            // requests from MACs the inventory lacks
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
	LastStep *Step `json:"lastStep,omitempty"`
	// Problems are the steps whose latest verdict is failed, and while the
	// node is not ready, waiting.
	Problems []Step `json:"problems,omitempty"`
	Steps    []Step `json:"steps,omitempty"`
	// BGP is the node's own view of its sessions; nil until its agent
	// reports.
	BGP       *BGPSummary `json:"bgp,omitempty"`
	Endpoints []Endpoint  `json:"endpoints,omitempty"`
	// Reflector is the embedded reflector's session with the node; nil
	// without the reflector.
	Reflector *ReflectorSession `json:"reflector,omitempty"`
	// Identity is the node's claim and credential; nil before any.
	Identity *Identity `json:"identity,omitempty"`
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
		if n.Identity == nil || n.Identity.Refused == nil {
			continue
		}
		if first {
			b.WriteString("\nidentity:\n")
			first = false
		}
		fmt.Fprintf(&b, "  %s: %s\n", n.Name, n.Identity.Refused.Alert())
	}
	first = true
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
