// Package sources keeps, per VRF, the remote tunnel endpoints its routes
// lead to: the only outer sources a tunnel packet for that VRF is
// accepted from. The vRouter's labels (handed out from 16 up) and VNIs
// (from the config) are guessable, so a packet's label or VNI alone says
// nothing about who sent it; the outer source does, once it is held to
// the endpoints the agent programmed, per encapsulation.
//
// The sets are derived from the routes and next hops as they change, not
// configured: a route in VRF v whose next hop is a tunnel to (encap, addr)
// — or a composite with such a member — makes v accept addr for encap
// (and for the next hop's AcceptEncaps: what the remote may choose to
// send with), for as long as some route of v still leads there. The writer (the
// engine, under its own lock) reports each change; the sets change only
// when an endpoint joins or leaves a VRF, and are then republished whole
// for that VRF (copy on write, O(endpoints of the VRF)). Readers (the
// tunnel receive loops) never lock and never allocate: Accepts is two
// atomic loads and one map lookup.
package sources

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
)

// key is one remote tunnel endpoint of one encapsulation. The address is
// kept as 16 bytes (IPv4 mapped), a plain array that hashes without
// following pointers.
type key struct {
	addr  [16]byte
	encap packet.Encap
}

func keyOf(enc packet.Encap, a netip.Addr) key { return key{addr: a.Unmap().As16(), encap: enc} }

// set is one published, immutable set of endpoints.
type set map[key]struct{}

// slot holds one VRF's published set; slots are shared between
// generations of the index, so republishing a VRF swaps one pointer.
type slot struct{ cur atomic.Pointer[set] }

// Table is the per-VRF source sets. Accepts and Known are safe from any
// goroutine at any time; the writer methods (Route, SetNextHop,
// DeleteNextHop, DeleteVRF) are serialised by a mutex and publish their
// effect before they return.
type Table struct {
	vrfs  atomic.Pointer[[]*slot] // by VRF ID
	known atomic.Pointer[set]     // every endpoint of every VRF

	mu         sync.Mutex
	uses       map[nexthop.ID]map[uint32]int     // next hop -> VRF -> routes of the VRF that name it
	ends       map[nexthop.ID][]key              // next hop -> the endpoints it leads to (a composite: its members', repeats kept)
	members    map[nexthop.ID][]nexthop.ID       // composite -> its members
	parents    map[nexthop.ID]map[nexthop.ID]int // member -> composites naming it
	count      map[uint32]map[key]int            // VRF -> endpoint -> next hops in use in the VRF that lead there
	total      map[key]int                       // endpoint -> VRFs that hold it
	dirty      map[uint32]map[key]bool           // VRF -> endpoints that joined (true) or left its published set
	knownDelta map[key]bool                      // endpoints that joined (true) or left known
}

// New returns a table in which no VRF accepts anything.
func New() *Table {
	t := &Table{
		uses:       map[nexthop.ID]map[uint32]int{},
		ends:       map[nexthop.ID][]key{},
		members:    map[nexthop.ID][]nexthop.ID{},
		parents:    map[nexthop.ID]map[nexthop.ID]int{},
		count:      map[uint32]map[key]int{},
		total:      map[key]int{},
		dirty:      map[uint32]map[key]bool{},
		knownDelta: map[key]bool{},
	}
	t.vrfs.Store(new([]*slot))
	t.known.Store(&set{})
	return t
}

// Accepts reports whether a tunnel packet of encapsulation enc from outer
// source a may enter VRF vrf: some route of vrf leads to a over enc.
func (t *Table) Accepts(vrf uint32, enc packet.Encap, a netip.Addr) bool {
	v := *t.vrfs.Load()
	if int(vrf) >= len(v) || v[vrf] == nil {
		return false
	}
	_, ok := (*v[vrf].cur.Load())[keyOf(enc, a)]
	return ok
}

// Known reports whether a is an endpoint of enc for some VRF: a packet
// that Accepts refuses came from a real vRouter (with a label or VNI of
// a VRF it has no routes in) rather than from a stranger.
func (t *Table) Known(enc packet.Encap, a netip.Addr) bool {
	_, ok := (*t.known.Load())[keyOf(enc, a)]
	return ok
}

// Source is one remote tunnel endpoint of one encapsulation.
type Source struct {
	Encap packet.Encap
	Addr  netip.Addr
}

// List returns the sources VRF vrf accepts, sorted (introspection, tests).
func (t *Table) List(vrf uint32) []Source {
	v := *t.vrfs.Load()
	if int(vrf) >= len(v) || v[vrf] == nil {
		return nil
	}
	var out []Source
	for k := range *v[vrf].cur.Load() {
		out = append(out, Source{Encap: k.encap, Addr: netip.AddrFrom16(k.addr).Unmap()})
	}
	slices.SortFunc(out, func(a, b Source) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Encap) - int(b.Encap)
	})
	return out
}

// Route records that a route of VRF vrf changed its next hop from old to
// next (0 for none: a new or a deleted route).
func (t *Table) Route(vrf uint32, old, next nexthop.ID) {
	if old == next {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.route(vrf, old, next)
	t.publish()
}

func (t *Table) route(vrf uint32, old, next nexthop.ID) {
	if old != 0 {
		if u := t.uses[old]; u[vrf] > 0 {
			u[vrf]--
			if u[vrf] == 0 {
				delete(u, vrf)
				if len(u) == 0 {
					delete(t.uses, old)
				}
				t.sub(vrf, t.ends[old])
			}
		}
	}
	if next != 0 {
		u := t.uses[next]
		if u == nil {
			u = map[uint32]int{}
			t.uses[next] = u
		}
		u[vrf]++
		if u[vrf] == 1 {
			t.add(vrf, t.ends[next])
		}
	}
}

// SetNextHop records next hop nh as the table now has it (added or
// replaced): the endpoints it leads to move with it in every VRF whose
// routes use it, directly or as a composite's member.
func (t *Table) SetNextHop(nh *nexthop.NextHop) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unlink(nh.ID)
	var ends []key
	switch nh.Kind {
	case nexthop.Tunnel:
		ends = []key{keyOf(nh.Encap, nh.Underlay)}
		for _, enc := range nh.AcceptEncaps {
			if k := keyOf(enc, nh.Underlay); !slices.Contains(ends, k) {
				ends = append(ends, k)
			}
		}
	case nexthop.Composite:
		t.members[nh.ID] = slices.Clone(nh.Members)
		for _, m := range nh.Members {
			p := t.parents[m]
			if p == nil {
				p = map[nexthop.ID]int{}
				t.parents[m] = p
			}
			p[nh.ID]++
		}
		ends = t.memberEnds(nh.ID)
	}
	t.setEnds(nh.ID, ends)
	t.publish()
}

// DeleteNextHop records that next hop id is gone. Routes that still name
// it (the engine's caller should have moved them) accept nothing through
// it, and again what it leads to if it comes back.
func (t *Table) DeleteNextHop(id nexthop.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unlink(id)
	t.setEnds(id, nil)
	t.publish()
}

// DeleteVRF records that VRF vrf is gone with its routes, whose next hops
// routes yields.
func (t *Table) DeleteVRF(vrf uint32, routes func(yield func(nexthop.ID) bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for nh := range routes {
		t.route(vrf, nh, 0)
	}
	t.publish()
}

// unlink forgets composite id's members (a no-op for other next hops).
func (t *Table) unlink(id nexthop.ID) {
	for _, m := range t.members[id] {
		if p := t.parents[m]; p != nil {
			if p[id]--; p[id] <= 0 {
				delete(p, id)
			}
			if len(p) == 0 {
				delete(t.parents, m)
			}
		}
	}
	delete(t.members, id)
}

func (t *Table) memberEnds(id nexthop.ID) []key {
	var ends []key
	for _, m := range t.members[id] {
		ends = append(ends, t.ends[m]...)
	}
	return ends
}

// setEnds makes ends what next hop id leads to, in every VRF that uses it
// and, through the composites naming id, in theirs.
func (t *Table) setEnds(id nexthop.ID, ends []key) {
	old := t.ends[id]
	if slices.Equal(old, ends) {
		return
	}
	for vrf := range t.uses[id] {
		t.add(vrf, ends) // before sub: an endpoint that stays never leaves
		t.sub(vrf, old)
	}
	if len(ends) == 0 {
		delete(t.ends, id)
	} else {
		t.ends[id] = ends
	}
	for c := range t.parents[id] {
		t.setEnds(c, t.memberEnds(c)) // composites do not nest: one level
	}
}

func (t *Table) add(vrf uint32, ends []key) {
	if len(ends) == 0 {
		return
	}
	c := t.count[vrf]
	if c == nil {
		c = map[key]int{}
		t.count[vrf] = c
	}
	for _, k := range ends {
		c[k]++
		if c[k] == 1 {
			t.mark(vrf, k, true)
			t.total[k]++
			if t.total[k] == 1 {
				t.knownDelta[k] = true
			}
		}
	}
}

func (t *Table) sub(vrf uint32, ends []key) {
	c := t.count[vrf]
	if c == nil {
		return
	}
	for _, k := range ends {
		if c[k] <= 0 {
			continue
		}
		c[k]--
		if c[k] == 0 {
			delete(c, k)
			t.mark(vrf, k, false)
			if t.total[k]--; t.total[k] <= 0 {
				delete(t.total, k)
				t.knownDelta[k] = false
			}
		}
	}
	if len(c) == 0 {
		delete(t.count, vrf)
	}
}

// mark notes that endpoint k joined or left VRF vrf's set.
func (t *Table) mark(vrf uint32, k key, in bool) {
	d := t.dirty[vrf]
	if d == nil {
		d = map[key]bool{}
		t.dirty[vrf] = d
	}
	d[k] = in
}

// publish republishes the sets that changed: a copy of the published
// set with the changes applied (copying a map is a few memory copies, not
// an insert per endpoint).
func (t *Table) publish() {
	if len(t.dirty) > 0 {
		idx := *t.vrfs.Load()
		grown := false
		for vrf, d := range t.dirty {
			if int(vrf) >= len(idx) {
				if !grown {
					idx = slices.Clone(idx)
					grown = true
				}
				idx = append(idx, make([]*slot, int(vrf)+1-len(idx))...)
			}
			if idx[vrf] == nil {
				if !grown {
					idx = slices.Clone(idx)
					grown = true
				}
				idx[vrf] = &slot{}
				idx[vrf].cur.Store(&set{})
			}
			s := maps.Clone(*idx[vrf].cur.Load())
			for k, in := range d {
				if in {
					s[k] = struct{}{}
				} else {
					delete(s, k)
				}
			}
			idx[vrf].cur.Store(&s)
		}
		if grown {
			t.vrfs.Store(&idx)
		}
		clear(t.dirty)
	}
	if len(t.knownDelta) > 0 {
		s := maps.Clone(*t.known.Load())
		for k, in := range t.knownDelta {
			if in {
				s[k] = struct{}{}
			} else {
				delete(s, k)
			}
		}
		t.known.Store(&s)
		clear(t.knownDelta)
	}
}
