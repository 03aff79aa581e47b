package nexthop

import (
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
)

// A snapshot maps IDs to next hops through fixed-size chunks, so that a
// write copies one chunk and the chunk index rather than the whole table.
const (
	chunkBits = 8
	chunkSize = 1 << chunkBits
)

type chunk [chunkSize]*NextHop

type snapshot struct {
	chunks []*chunk
	n      int
}

func (s *snapshot) get(id ID) *NextHop {
	c := int(id >> chunkBits)
	if c >= len(s.chunks) || s.chunks[c] == nil {
		return nil
	}
	return s.chunks[c][id&(chunkSize-1)]
}

// Table holds next hops by ID. Get and Resolve are safe from any number of
// goroutines at once, take no lock and allocate nothing; they see the table
// as of the last completed Set or Delete. Set and Delete may be called
// concurrently too (a mutex orders them), but the design has one writer,
// the control API.
//
// Write cost: each Set or Delete copies one chunk of 256 pointers and the
// chunk index (one pointer per 256 IDs: 32 KiB at MaxID), then publishes
// the new snapshot; the old one is garbage once readers drop it. A Set is a
// few microseconds, so the agent's full reconcile of 100k next hops takes
// well under a second without batching.
//
// References are kept whole: a composite's members must exist and not be
// composite, and a next hop cannot be deleted, or turned into a composite,
// while a composite names it.
type Table struct {
	cur atomic.Pointer[snapshot]

	mu        sync.Mutex
	referrers map[ID]map[ID]struct{} // member -> composites naming it
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{referrers: make(map[ID]map[ID]struct{})}
	t.cur.Store(&snapshot{})
	return t
}

// Get returns the next hop with id, or nil. The result must not be
// modified.
func (t *Table) Get(id ID) *NextHop { return t.cur.Load().get(id) }

// Resolve returns the next hop a packet of the flow with flowHash takes
// through id: id's own next hop, or for a composite the member Select
// picks. It returns nil when id is unknown.
func (t *Table) Resolve(id ID, flowHash uint64) *NextHop {
	s := t.cur.Load()
	nh := s.get(id)
	if nh == nil || nh.Kind != Composite {
		return nh
	}
	return s.get(nh.Select(flowHash))
}

// Len is the number of next hops.
func (t *Table) Len() int { return t.cur.Load().n }

// All yields every next hop in ID order, from one snapshot, for dumps.
func (t *Table) All() iter.Seq[*NextHop] {
	s := t.cur.Load()
	return func(yield func(*NextHop) bool) {
		for _, c := range s.chunks {
			if c == nil {
				continue
			}
			for _, nh := range c {
				if nh != nil && !yield(nh) {
					return
				}
			}
		}
	}
}

// Set adds nh, or replaces the next hop with its ID. The table keeps its
// own copy of nh (and of Members).
func (t *Table) Set(nh NextHop) error {
	if err := nh.validate(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.cur.Load()
	old := s.get(nh.ID)
	if nh.Kind == Composite {
		if refs := t.referrers[nh.ID]; len(refs) > 0 {
			return fmt.Errorf("nexthop %d: composite: composite %d names it as a member, and composites do not nest", nh.ID, minKey(refs))
		}
		for i, m := range nh.Members {
			mnh := s.get(m)
			if mnh == nil {
				return fmt.Errorf("nexthop %d: composite: members[%d]: nexthop %d does not exist", nh.ID, i, m)
			}
			if mnh.Kind == Composite {
				return fmt.Errorf("nexthop %d: composite: members[%d]: nexthop %d is a composite, and composites do not nest", nh.ID, i, m)
			}
		}
	}
	c := nh
	c.Members = slices.Clone(nh.Members)
	c.AcceptEncaps = slices.Clone(nh.AcceptEncaps)
	c.seeds = nil
	if c.Kind == Composite {
		c.seeds = make([]uint64, len(c.Members))
		for i, m := range c.Members {
			c.seeds[i] = memberSeed(m)
		}
	}
	if old != nil && old.Kind == Composite {
		t.unref(old)
	}
	for _, m := range c.Members {
		if t.referrers[m] == nil {
			t.referrers[m] = make(map[ID]struct{})
		}
		t.referrers[m][c.ID] = struct{}{}
	}
	n := s.n
	if old == nil {
		n++
	}
	t.cur.Store(s.with(c.ID, &c, n))
	return nil
}

// Delete removes the next hop with id. Deleting an unknown ID is not an
// error (the caller's desired state is reached).
func (t *Table) Delete(id ID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.cur.Load()
	old := s.get(id)
	if old == nil {
		return nil
	}
	if refs := t.referrers[id]; len(refs) > 0 {
		return fmt.Errorf("nexthop %d: member of %d composite next hops (first %d); remove it from them first", id, len(refs), minKey(refs))
	}
	if old.Kind == Composite {
		t.unref(old)
	}
	t.cur.Store(s.with(id, nil, s.n-1))
	return nil
}

func (t *Table) unref(composite *NextHop) {
	for _, m := range composite.Members {
		delete(t.referrers[m], composite.ID)
		if len(t.referrers[m]) == 0 {
			delete(t.referrers, m)
		}
	}
}

// with returns a copy of s with id set to nh (nil to remove), sharing every
// chunk but the one holding id.
func (s *snapshot) with(id ID, nh *NextHop, n int) *snapshot {
	ci := int(id >> chunkBits)
	chunks := s.chunks
	if ci >= len(chunks) {
		chunks = append(make([]*chunk, 0, ci+1), chunks...)
		chunks = chunks[:ci+1]
	} else {
		chunks = slices.Clone(chunks)
	}
	c := new(chunk)
	if old := chunks[ci]; old != nil {
		*c = *old
	}
	c[id&(chunkSize-1)] = nh
	chunks[ci] = c
	if nh == nil && *c == (chunk{}) {
		chunks[ci] = nil
		for len(chunks) > 0 && chunks[len(chunks)-1] == nil {
			chunks = chunks[:len(chunks)-1]
		}
	}
	return &snapshot{chunks: chunks, n: n}
}

func minKey(m map[ID]struct{}) ID {
	first := true
	var k ID
	for id := range m {
		if first || id < k {
			k, first = id, false
		}
	}
	return k
}
