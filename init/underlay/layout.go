package underlay

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/config"
)

// hostLink is what makeLayout needs to know about one existing kernel link.
// The Linux side fills it from netlink; tests write it by hand.
type hostLink struct {
	Name  string
	Index int
	// MAC identifies the NIC: the permanent address when the kernel knows
	// it (a bond member's current MAC is the bond's), else the current one.
	MAC      net.HardwareAddr
	Kind     string // netlink kind: "device", "veth", "bond", "vlan", ...
	Master   string // name of the link this one is enslaved to, or ""
	MTU      int
	Parent   string // VLAN: name of the parent link
	VLANID   int    // VLAN: 802.1Q id
	Loopback bool
	// Phys is true for a NIC backed by a device (/sys/class/net/X/device):
	// what DefaultUnderlay runs DHCP on.
	Phys bool
}

// layoutState is where a link stands in the layout.
type layoutState int

const (
	stateReady   layoutState = iota // can be configured now
	stateWaiting                    // needs a NIC that is not there (yet)
	stateFailed                     // cannot be configured as declared
)

func (s layoutState) String() string {
	switch s {
	case stateReady:
		return "ready"
	case stateWaiting:
		return "waiting"
	default:
		return "failed"
	}
}

// linkLayout is what to do for one declared link.
type linkLayout struct {
	Link config.Link
	ID   string // Link.ID, or "links[i]" when the source gave none
	Name string // kernel name: found (phy) or to create (bond, vlan)

	Exists bool     // a kernel link of this name and kind exists now
	Host   hostLink // the existing kernel link, when Exists

	// Bond: kernel names of the members present now, in declared order,
	// and the IDs of the declared members that are not usable (yet).
	Members        []string
	MissingMembers []string
	// Phy: the bond this link is a member of (kernel name and ID).
	Bond, BondID string
	// VLAN: kernel name and ID of the parent link.
	Parent, ParentID string
	// Recreate: a VLAN of this name exists on another parent or id.
	Recreate bool
	// NoNIC: a phy link whose NIC is not there (waiting, or failed once
	// the wait is over).
	NoNIC bool

	// MTU is the exact MTU to set (0: leave it). MinMTU is a lower bound
	// that VLANs on top of this link need, applied when MTU is 0 and the
	// current MTU is smaller.
	MTU, MinMTU int

	State  layoutState
	Reason string   // why waiting or failed: goes into the verdict as is
	Notes  []string // remarks that do not stop the link ("mtu 9000 clamped ...")
}

func (ll *linkLayout) fail(format string, args ...any) {
	ll.State = stateFailed
	ll.Reason = fmt.Sprintf(format, args...)
}

func (ll *linkLayout) wait(format string, args ...any) {
	ll.State = stateWaiting
	ll.Reason = fmt.Sprintf(format, args...)
}

func (ll *linkLayout) note(format string, args ...any) {
	ll.Notes = append(ll.Notes, fmt.Sprintf(format, args...))
}

// layout is the declared links resolved against the host's links, in the
// order they are applied: phy links first (config order), then bonds, then
// VLANs parent before child. Applying them in this order brings members
// down and enslaves them before their bond goes up, and sets a parent's
// MTU before its VLANs'.
type layout struct {
	Links []*linkLayout
}

func (p *layout) byID(id string) *linkLayout {
	for _, ll := range p.Links {
		if ll.ID == id {
			return ll
		}
	}
	return nil
}

// layoutOpts tune makeLayout.
type layoutOpts struct {
	// GaveUpAfter > 0 turns links still waiting for a NIC into failures
	// that say how long we waited: the bounded wait is over.
	GaveUpAfter time.Duration
	// GaveUp does the same for the phy links it names (by ID) only: an
	// earlier Apply waited for their NIC that long already, and waiting
	// again would only print "waiting" and "failed" once more.
	GaveUp map[string]time.Duration
}

// bondModes are the kernel's bonding modes by name; numeric modes are
// accepted too (network_data.json producers use both).
var bondModes = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}

var bondHashPolicies = []string{"layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"}

// normBondMode returns the kernel name of a bond mode, "" when unknown.
// An empty mode is the kernel's default, balance-rr.
func normBondMode(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "balance-rr"
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n >= 0 && n < len(bondModes) {
			return bondModes[n]
		}
		return ""
	}
	if s == "lacp" {
		return "802.3ad"
	}
	if slices.Contains(bondModes, s) {
		return s
	}
	return ""
}

// validIfName checks a Linux interface name (IFNAMSIZ-1 bytes, no '/',
// no whitespace, not "." or "..").
func validIfName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty interface name")
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed", s)
	case strings.ContainsAny(s, "/: \t\n"):
		return fmt.Errorf("interface name %q contains '/', ':' or whitespace", s)
	}
	return nil
}

// makeLayout computes what to do for u on a host whose links are host. It
// never fails as a whole: every problem becomes the verdict of the link it
// concerns, and the other links go on.
func makeLayout(u config.Underlay, host []hostLink, opts layoutOpts) *layout {
	p := &layout{}
	hostByName := make(map[string]hostLink, len(host))
	for _, h := range host {
		hostByName[h.Name] = h
	}

	// Every declared link gets a layout, in declared order for now.
	all := make([]*linkLayout, 0, len(u.Links))
	byID := make(map[string]*linkLayout, len(u.Links))
	for i, l := range u.Links {
		ll := &linkLayout{Link: l, ID: l.ID}
		if ll.ID == "" {
			ll.ID = fmt.Sprintf("links[%d]", i)
		}
		all = append(all, ll)
		if prev, dup := byID[ll.ID]; dup {
			// Reported by position: the ID's verdict is the first link's.
			ll.ID = fmt.Sprintf("links[%d]", i)
			ll.fail("duplicate link id %q (also used by an earlier %s link)", l.ID, prev.Link.Kind)
			continue
		}
		byID[ll.ID] = ll
		if l.MTU != 0 { // 0: leave the kernel's (or DHCP's) MTU
			if err := config.CheckMTU(l.MTU); err != nil {
				ll.fail("mtu %v", err)
				continue
			}
		}
		ll.MTU = l.MTU
		switch l.Kind {
		case config.LinkPhy, config.LinkBond, config.LinkVLAN:
		default:
			ll.fail("unknown link kind %q (phy, bond or vlan)", l.Kind)
		}
	}

	// Phy links: find their NIC. The first link to claim a NIC keeps it.
	claimed := map[string]string{} // kernel name -> link ID
	for _, ll := range all {
		if ll.Link.Kind != config.LinkPhy || ll.State == stateFailed {
			continue
		}
		resolvePhy(ll, host, hostByName, opts)
		if ll.State != stateReady {
			continue
		}
		if other, ok := claimed[ll.Name]; ok {
			ll.fail("matches %s, already matched by link %q", ll.Name, other)
			continue
		}
		claimed[ll.Name] = ll.ID
	}

	// Names of the links we create: declared or derived, unique, and not
	// taken by a NIC or by an existing link of another kind.
	nBond := 0
	for _, ll := range all {
		if ll.Link.Kind != config.LinkBond || ll.State == stateFailed {
			continue
		}
		ll.Name = ll.Link.Name
		if ll.Name == "" {
			ll.Name = fmt.Sprintf("bond%d", nBond)
		}
		nBond++
		claimName(ll, "bond", hostByName, claimed)
	}

	layoutBonds(all, byID)
	layoutVLANs(all, byID, hostByName, claimed)
	layoutMTU(all, byID)

	// Apply order: phy, bond, vlan (vlans already sorted parent first).
	for _, kind := range []config.LinkKind{config.LinkPhy, config.LinkBond} {
		for _, ll := range all {
			if ll.Link.Kind == kind {
				p.Links = append(p.Links, ll)
			}
		}
	}
	for _, ll := range vlanOrder(all, byID) {
		p.Links = append(p.Links, ll)
	}
	for _, ll := range all { // unknown kinds and duplicates, for their verdicts
		if !slices.Contains(p.Links, ll) {
			p.Links = append(p.Links, ll)
		}
	}
	return p
}

// claimName reserves ll.Name for a link we create of the given netlink kind.
func claimName(ll *linkLayout, kind string, hostByName map[string]hostLink, claimed map[string]string) {
	if err := validIfName(ll.Name); err != nil {
		ll.fail("%v", err)
		return
	}
	if other, ok := claimed[ll.Name]; ok {
		ll.fail("name %s is already used by link %q", ll.Name, other)
		return
	}
	if h, ok := hostByName[ll.Name]; ok {
		if h.Kind != kind {
			ll.fail("name %s is taken by an existing %s link", ll.Name, kindOr(h.Kind))
			return
		}
		ll.Exists, ll.Host = true, h
	}
	claimed[ll.Name] = ll.ID
}

func kindOr(k string) string {
	if k == "" {
		return "device"
	}
	return k
}

// layoutBonds checks bond settings and members and marks members as enslaved.
func layoutBonds(all []*linkLayout, byID map[string]*linkLayout) {
	memberOf := map[string]string{} // member ID -> bond ID
	for _, ll := range all {
		if ll.Link.Kind != config.LinkBond || ll.State == stateFailed {
			continue
		}
		l := ll.Link
		if normBondMode(l.BondMode) == "" {
			ll.fail("bond mode %q unknown (one of %s)", l.BondMode, strings.Join(bondModes, ", "))
			continue
		}
		if l.BondHashPolicy != "" && !slices.Contains(bondHashPolicies, strings.ToLower(l.BondHashPolicy)) {
			ll.fail("bond xmit hash policy %q unknown (one of %s)", l.BondHashPolicy, strings.Join(bondHashPolicies, ", "))
			continue
		}
		if l.BondMiimon < 0 {
			ll.fail("bond miimon %d is negative", l.BondMiimon)
			continue
		}
		if len(l.BondMembers) == 0 {
			ll.fail("bond has no members")
			continue
		}
		// All checks first: a bond that fails claims no member.
		var bad string
		seen := map[string]bool{}
		for _, id := range l.BondMembers {
			m, ok := byID[id]
			switch {
			case !ok:
				bad = fmt.Sprintf("member %q is not a link in this underlay", id)
			case id == ll.ID:
				bad = "bond lists itself as a member"
			case m.Link.Kind != config.LinkPhy:
				bad = fmt.Sprintf("member %q is a %s link; bond members must be phy links", id, m.Link.Kind)
			case seen[id]:
				bad = fmt.Sprintf("member %q is listed twice", id)
			case memberOf[id] != "":
				bad = fmt.Sprintf("member %q is already in bond %q", id, memberOf[id])
			}
			if bad != "" {
				break
			}
			seen[id] = true
		}
		if bad != "" {
			ll.fail("%s", bad)
			continue
		}
		var why []string
		for _, id := range l.BondMembers {
			m := byID[id]
			memberOf[id] = ll.ID
			m.Bond, m.BondID = ll.Name, ll.ID
			if m.Link.DHCP4 || m.Link.SLAAC || len(m.Link.Addresses) > 0 || len(m.Link.Routes) > 0 {
				m.note("addressing ignored: enslaved to bond %s", ll.Name)
			}
			if m.State == stateReady {
				ll.Members = append(ll.Members, m.Name)
			} else {
				ll.MissingMembers = append(ll.MissingMembers, id)
				why = append(why, fmt.Sprintf("member %q: %s", id, m.Reason))
			}
		}
		switch {
		case len(ll.Members) > 0 && len(why) > 0:
			ll.note("degraded: %s", strings.Join(why, "; "))
		case len(ll.Members) == 0 && anyWaiting(byID, ll.MissingMembers):
			ll.wait("no member present: %s", strings.Join(why, "; "))
		case len(ll.Members) == 0:
			ll.fail("no usable member: %s", strings.Join(why, "; "))
		}
	}
}

func anyWaiting(byID map[string]*linkLayout, ids []string) bool {
	for _, id := range ids {
		if byID[id].State == stateWaiting {
			return true
		}
	}
	return false
}

// layoutVLANs resolves parents (which may be VLANs themselves: QinQ), names
// and existing kernel VLANs, parents before children.
func layoutVLANs(all []*linkLayout, byID map[string]*linkLayout, hostByName map[string]hostLink, claimed map[string]string) {
	type key struct {
		parent string
		id     int
	}
	defined := map[key]string{}
	for _, ll := range vlanOrder(all, byID) {
		if ll.State == stateFailed {
			continue
		}
		l := ll.Link
		if l.VLANID < 1 || l.VLANID > 4094 {
			ll.fail("vlan id %d out of range 1-4094", l.VLANID)
			continue
		}
		parent, ok := byID[l.VLANParent]
		switch {
		case l.VLANParent == "":
			ll.fail("vlan has no parent link")
			continue
		case !ok:
			ll.fail("vlan parent %q is not a link in this underlay", l.VLANParent)
			continue
		case parent == ll:
			ll.fail("vlan is its own parent")
			continue
		case vlanLoops(ll, byID):
			ll.fail("vlan parents form a loop through %q", l.VLANParent)
			continue
		case parent.Bond != "":
			ll.fail("vlan parent %q is enslaved to bond %s; put the vlan on the bond", parent.ID, parent.Bond)
			continue
		case parent.State == stateFailed:
			ll.fail("parent %q: %s", parent.ID, parent.Reason)
			continue
		case parent.State == stateWaiting:
			ll.wait("parent %q: %s", parent.ID, parent.Reason)
		}
		ll.ParentID = parent.ID
		ll.Parent = parent.Name
		if prev, dup := defined[key{parent.ID, l.VLANID}]; dup {
			ll.fail("vlan %d on %q is already defined by link %q", l.VLANID, parent.ID, prev)
			continue
		}
		defined[key{parent.ID, l.VLANID}] = ll.ID
		if ll.State == stateWaiting {
			continue // no name to claim before the parent has one
		}
		ll.Name = l.Name
		if ll.Name == "" {
			ll.Name = fmt.Sprintf("%s.%d", parent.Name, l.VLANID)
			if len(ll.Name) > 15 {
				ll.Name = fmt.Sprintf("vlan%d", l.VLANID)
			}
		}
		claimName(ll, "vlan", hostByName, claimed)
		if ll.Exists && (ll.Host.Parent != parent.Name || ll.Host.VLANID != l.VLANID) {
			ll.Recreate = true
			ll.note("existing %s is vlan %d on %s: recreated as vlan %d on %s",
				ll.Name, ll.Host.VLANID, ll.Host.Parent, l.VLANID, parent.Name)
		}
	}
}

// vlanLoops reports whether following VLAN parents from ll comes back.
func vlanLoops(ll *linkLayout, byID map[string]*linkLayout) bool {
	seen := map[*linkLayout]bool{}
	for cur := ll; cur != nil && cur.Link.Kind == config.LinkVLAN; cur = byID[cur.Link.VLANParent] {
		if seen[cur] {
			return true
		}
		seen[cur] = true
	}
	return false
}

// vlanDepth is how many VLANs sit below ll (0 for a VLAN on a phy or
// bond); -1 when the chain loops or breaks.
func vlanDepth(ll *linkLayout, byID map[string]*linkLayout) int {
	d := 0
	seen := map[*linkLayout]bool{ll: true}
	for cur := byID[ll.Link.VLANParent]; cur != nil && cur.Link.Kind == config.LinkVLAN; cur = byID[cur.Link.VLANParent] {
		if seen[cur] {
			return -1
		}
		seen[cur] = true
		d++
	}
	return d
}

// vlanOrder returns the VLAN links, parents before children, config order
// within a depth; looping chains last.
func vlanOrder(all []*linkLayout, byID map[string]*linkLayout) []*linkLayout {
	var vl []*linkLayout
	for _, ll := range all {
		if ll.Link.Kind == config.LinkVLAN {
			vl = append(vl, ll)
		}
	}
	depth := func(ll *linkLayout) int {
		if d := vlanDepth(ll, byID); d >= 0 {
			return d
		}
		return len(all) + 1
	}
	slices.SortStableFunc(vl, func(a, b *linkLayout) int { return depth(a) - depth(b) })
	return vl
}

// layoutMTU makes the MTUs consistent: a VLAN cannot exceed its parent, so
// a parent without an MTU of its own is raised to what its VLANs need and
// a VLAN above an explicit parent MTU is clamped to it; bond members take
// their bond's MTU (the kernel propagates it when they are enslaved).
func layoutMTU(all []*linkLayout, byID map[string]*linkLayout) {
	vl := vlanOrder(all, byID)
	for i := len(vl) - 1; i >= 0; i-- { // children first
		ll := vl[i]
		if ll.State == stateFailed {
			continue
		}
		parent := byID[ll.Link.VLANParent]
		need := max(ll.MTU, ll.MinMTU)
		if parent == nil || need == 0 {
			continue
		}
		switch {
		case parent.MTU == 0:
			parent.MinMTU = max(parent.MinMTU, need)
		case parent.MTU < need && ll.MTU > 0:
			ll.note("mtu %d clamped to parent %s's %d", ll.MTU, parent.ID, parent.MTU)
			ll.MTU = parent.MTU
		}
	}
	for _, ll := range all {
		if ll.Link.Kind != config.LinkBond || ll.State == stateFailed {
			continue
		}
		for _, id := range ll.Link.BondMembers {
			m := byID[id]
			if m == nil || m.BondID != ll.ID {
				continue
			}
			switch {
			case m.MTU != 0 && ll.MTU != 0 && m.MTU != ll.MTU:
				m.note("mtu %d replaced by bond %s's %d", m.MTU, ll.Name, ll.MTU)
			case m.MTU != 0 && ll.MTU == 0:
				m.note("mtu %d ignored: members take bond %s's mtu", m.MTU, ll.Name)
			}
			m.MTU, m.MinMTU = ll.MTU, ll.MinMTU
		}
	}
}
