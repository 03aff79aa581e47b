package flow

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// The table is split into shards, each an open-addressing hash table
// (linear probing) of entry pointers. Readers probe without locking: slots
// are atomic pointers, an entry's key never changes once published, and an
// entry never moves inside a slot array (a resize publishes a new array).
// A reader that raced with a resize or an insert may miss an entry that is
// there; it then takes the shard lock and looks again, so a false miss costs
// time, never a wrong decision. Writers (insert, remove, resize, sweep) hold
// the shard's mutex.
//
// Both directions of a flow live in the same shard, because the shard is
// chosen by a hash that is symmetric in the two endpoints; the slot inside
// the shard comes from a directional hash. So inserting, ageing or dropping
// a flow and its reverse takes one lock, never two.
//
// The hash is keyed with a per-table random seed: tuples are chosen by
// tenants, and with a public hash (packet.FiveTuple.Hash is fixed on purpose,
// for ECMP stability across restarts) they could be picked to collide into
// one long probe chain.
const (
	shardBits = 8
	nShards   = 1 << shardBits
	minSlots  = 16
)

// tombstone marks a removed slot, so probes for keys further along the
// chain continue past it.
var tombstone = new(Entry)

// slot holds an entry and its directional hash, so that a probe passing
// over other flows' slots compares hashes in the slot array and touches no
// entry. A writer stores the hash before the pointer; a reader loads the
// pointer first. A reader racing with the reuse of a slot may pair an old
// pointer with a new hash: it then compares the entry's key, which tells,
// or skips the slot, which is a false miss the locked look corrects.
type slot struct {
	h atomic.Uint64
	e atomic.Pointer[Entry]
}

type slotArray struct{ s []slot }

type shard struct {
	tab atomic.Pointer[slotArray]
	mu  sync.Mutex
	// Under mu: live entries, and slots not nil (live + tombstones).
	live, used int
	// hits is written on every cached decision; 64 bytes on each side keep
	// it off the cache lines that readers load tab from.
	_    [64]byte
	hits atomic.Uint64
	_    [64]byte
}

func (s *shard) init() {
	s.tab.Store(&slotArray{s: make([]slot, minSlots)})
}

// find returns the entry for k, without locking. See the comment above for
// why a miss here is only a hint.
func (s *shard) find(k *Key, h uint64) *Entry {
	sl := s.tab.Load().s
	mask := uint64(len(sl) - 1)
	i := h & mask
	for n := 0; n < len(sl); n++ {
		e := sl[i].e.Load()
		if e == nil {
			return nil
		}
		if sl[i].h.Load() == h && e != tombstone && e.tuple == k.Tuple && e.vrf == k.VRF {
			return e
		}
		i = (i + 1) & mask
	}
	return nil
}

// reserve makes room for n more entries, resizing (and dropping
// tombstones) so the load stays at most 3/4. Called with mu held.
func (s *shard) reserve(n int) {
	sl := s.tab.Load().s
	if (s.used+n)*4 <= len(sl)*3 {
		return
	}
	s.resize(slotsFor(s.live + n))
}

// slotsFor is the array size that holds n entries at half load.
func slotsFor(n int) int {
	if n*2 <= minSlots {
		return minSlots
	}
	return 1 << bits.Len(uint(n*2-1))
}

// resize rehashes the live entries into a new array of size slots and
// publishes it. Called with mu held.
func (s *shard) resize(size int) {
	old := s.tab.Load().s
	nt := &slotArray{s: make([]slot, size)}
	mask := uint64(size - 1)
	for i := range old {
		e := old[i].e.Load()
		if e == nil || e == tombstone {
			continue
		}
		h := old[i].h.Load()
		j := h & mask
		for nt.s[j].e.Load() != nil {
			j = (j + 1) & mask
		}
		nt.s[j].h.Store(h)
		nt.s[j].e.Store(e)
	}
	s.used = s.live
	s.tab.Store(nt)
}

// put inserts e with hash h; its key must be absent and reserve must have
// been called. Called with mu held.
func (s *shard) put(e *Entry, h uint64) {
	sl := s.tab.Load().s
	mask := uint64(len(sl) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch x := sl[i].e.Load(); x {
		case nil:
			s.used++
			fallthrough
		case tombstone:
			sl[i].h.Store(h)
			sl[i].e.Store(e)
			s.live++
			return
		}
	}
}

// del removes e, whose hash is h, if it is in the shard. Called with mu
// held.
func (s *shard) del(e *Entry, h uint64) bool {
	sl := s.tab.Load().s
	mask := uint64(len(sl) - 1)
	i := h & mask
	for n := 0; n < len(sl); n++ {
		switch sl[i].e.Load() {
		case nil:
			return false
		case e:
			sl[i].e.Store(tombstone)
			s.live--
			return true
		}
		i = (i + 1) & mask
	}
	return false
}

// compact shrinks an array that sweeping left mostly empty, or clears one
// clogged with tombstones (which lengthen every miss). Called with mu held.
func (s *shard) compact() {
	n := len(s.tab.Load().s)
	if (n > minSlots && s.live*8 < n) || (s.used-s.live)*4 > n {
		s.resize(slotsFor(s.live))
	}
}

// hasher is the table's keyed hash; see the comment at the top.
type hasher struct{ k [6]uint64 }

func newHasher() hasher {
	var h hasher
	for i := range h.k {
		h.k[i] = rand.Uint64() | 1
	}
	return h
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash returns the symmetric hash (the same for k and its reverse: picks
// the shard) and the directional one (picks the slot).
func (h *hasher) hash(k *Key) (sym, dir uint64) {
	s, d := k.Tuple.Src.As16(), k.Tuple.Dst.As16()
	// Each endpoint is mixed before its port is folded in, so that no
	// choice of address and port bits collides without knowing the seed.
	a := mum(binary.BigEndian.Uint64(s[:8])^h.k[0], binary.BigEndian.Uint64(s[8:])^h.k[1]) ^ uint64(k.Tuple.SrcPort)
	b := mum(binary.BigEndian.Uint64(d[:8])^h.k[0], binary.BigEndian.Uint64(d[8:])^h.k[1]) ^ uint64(k.Tuple.DstPort)
	c := uint64(k.VRF)<<8 | uint64(k.Tuple.Proto)
	sym = mum((a+b)^h.k[2], c^h.k[3])
	dir = mum(a^h.k[4], b^c^h.k[5])
	return sym, dir
}
