package flow

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/vrouter/packet"
)

// Defaults for the zero fields of Config.
const (
	DefaultMax            = 512 << 10
	DefaultTCPTimeout     = 180 * time.Second
	DefaultUDPTimeout     = 60 * time.Second
	DefaultOtherTimeout   = 30 * time.Second
	DefaultClosingTimeout = 10 * time.Second
	DefaultDeniedTimeout  = 10 * time.Second
)

// Config sizes the table and sets how long an idle flow stays. A zero (or
// negative) field takes its default.
type Config struct {
	// Max is the number of entries; an allowed flow takes two (forward and
	// reverse), a denied one takes one. Denied flows may use at most a
	// quarter of Max, so that a scan across networks cannot keep allowed
	// flows, whose replies depend on their reverse entry, out of the table.
	Max            int
	TCPTimeout     time.Duration
	UDPTimeout     time.Duration
	OtherTimeout   time.Duration // every protocol but TCP and UDP
	ClosingTimeout time.Duration // TCP after an RST, or a FIN each way
	// DeniedTimeout ages denied flows. They are cached so that a flood of
	// denied packets costs a lookup each, not an Evaluate, but briefly: a
	// client retries a refused connection, and a scan leaves many behind.
	DeniedTimeout time.Duration
	// VRFQuota is the number of entries one VRF may hold; zero takes
	// Max/DefaultVRFShare (65,536 of the default Max: 32,768 allowed flows),
	// so that it takes that many VRFs at their quota to fill the table. A
	// VRF at its quota gets its new flows decided and not cached, exactly
	// as a full table does (Stats.QuotaHits): it cannot evict or crowd out
	// another VRF's flows.
	VRFQuota int
}

// DefaultVRFShare is how many VRFs at their default quota fill the table.
const DefaultVRFShare = 8

// Key is what a flow is cached under: the VRF of the local port the packet
// comes from or goes to, and its tuple as seen on the wire (the inner
// packet of a tunnel).
type Key struct {
	VRF   uint32
	Tuple packet.FiveTuple
}

// decision is what an entry caches. It is immutable: a re-decision
// publishes a new one, so a reader sees all of one or all of the other.
type decision struct {
	gen            uint64 // the policy generation it was taken under
	srcNet, dstNet uint32 // the networks it was taken for, in the entry's direction
	rule           uint32
	allowed        bool
}

func (d *decision) current(b *binding, srcNet, dstNet uint32) bool {
	return d.gen == b.gen && d.srcNet == srcNet && d.dstNet == dstNet
}

// binding is the policy in force, its generation, and the per-rule
// counters in the policy's rule order; published as one pointer, so a
// decision and the counter it bumps always belong together.
type binding struct {
	pol  *Policy
	gen  uint64
	hits []*atomic.Uint64
}

// Table is the flow table: per flow, the cached policy decision and its
// counters. Decide, DecideICMPError, Len, All and Stats are safe from any
// number of goroutines, concurrently with SetPolicy and Sweep. See the
// package documentation for the caller's contract.
type Table struct {
	cur atomic.Pointer[binding] // read by every packet, written by SetPolicy
	h   hasher
	max int64
	// maxPeerless caps the entries that stand alone (denied flows).
	maxPeerless                            int64
	quota                                  int64 // entries per VRF
	tcpTO, udpTO, otherTO, closeTO, denyTO int64

	_      [64]byte
	shards [nShards]shard
	_      [64]byte

	n, peerless atomic.Int64 // entries, and those of them without a peer
	misses      atomic.Uint64
	revalidated atomic.Uint64
	inserts     atomic.Uint64
	expired     atomic.Uint64
	evictions   atomic.Uint64
	full        atomic.Uint64
	denied      atomic.Uint64
	related     atomic.Uint64

	mu       sync.Mutex                // SetPolicy
	ruleHits map[uint32]*atomic.Uint64 // by rule ID, carried across policies

	// vrfs is each VRF's share of the table, copied on write (under
	// vrfMu) when a VRF is first seen: read on inserts and removals only.
	vrfs  atomic.Pointer[map[uint32]*vrfUse]
	vrfMu sync.Mutex
}

// NewTable returns an empty table whose policy denies all traffic between
// networks until SetPolicy.
func NewTable(cfg Config) *Table {
	def := func(d, v time.Duration) int64 {
		if v <= 0 {
			v = d
		}
		return int64(v)
	}
	t := &Table{
		h:        newHasher(),
		max:      int64(cfg.Max),
		tcpTO:    def(DefaultTCPTimeout, cfg.TCPTimeout),
		udpTO:    def(DefaultUDPTimeout, cfg.UDPTimeout),
		otherTO:  def(DefaultOtherTimeout, cfg.OtherTimeout),
		closeTO:  def(DefaultClosingTimeout, cfg.ClosingTimeout),
		denyTO:   def(DefaultDeniedTimeout, cfg.DeniedTimeout),
		ruleHits: make(map[uint32]*atomic.Uint64),
	}
	if t.max <= 0 {
		t.max = DefaultMax
	}
	t.maxPeerless = max(t.max/4, 1)
	t.quota = int64(cfg.VRFQuota)
	if t.quota <= 0 {
		t.quota = max(t.max/DefaultVRFShare, 2)
	}
	t.vrfs.Store(&map[uint32]*vrfUse{})
	for i := range t.shards {
		t.shards[i].init()
	}
	empty, _ := Compile(nil)
	t.cur.Store(&binding{pol: empty, gen: 1})
	return t
}

// SetPolicy puts p in force (nil: deny all between networks). Cached
// decisions are not flushed: each carries the generation of the policy it
// was taken under, and the next packet of a flow decided under an older one
// re-decides it. This is why a change never lets a stale decision stand,
// yet costs nothing up front, and why an established flow that the new
// policy still allows keeps working even when its reply is the first packet
// seen afterwards: a reverse entry is re-decided by evaluating its forward
// direction (a flush would evaluate the reply as a new flow of its own, and
// deny it). Setting the policy already in force changes nothing.
func (t *Table) SetPolicy(p *Policy) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Load()
	if p == nil {
		p, _ = Compile(nil)
	}
	if p == old.pol {
		return
	}
	nb := &binding{pol: p, gen: old.gen + 1, hits: make([]*atomic.Uint64, len(p.c))}
	counters := make(map[uint32]*atomic.Uint64, len(p.c))
	for i := range p.c {
		id := p.c[i].id
		c := t.ruleHits[id]
		if c == nil {
			c = new(atomic.Uint64)
		}
		counters[id] = c
		nb.hits[i] = c
	}
	t.ruleHits = counters
	t.cur.Store(nb)
}

// Policy is the policy in force.
func (t *Table) Policy() *Policy { return t.cur.Load().pol }

func (t *Table) shard(sym uint64) *shard { return &t.shards[sym>>(64-shardBits)] }

// dirHash is the slot hash of an entry (kept in its slot, not in it, so
// that an Entry fits two cache lines; the slow paths recompute it).
func (t *Table) dirHash(e *Entry) uint64 {
	k := e.Key()
	_, h := t.h.hash(&k)
	return h
}

// Decide returns whether the packet with key k, from network srcNet to
// network dstNet, may pass, and the rule that allowed it (0 when denied or
// inside one network). It counts the packet and its bytes on the flow's
// entry and stamps now (nanoseconds, the clock Sweep is given).
//
// A cached, current decision is returned without locking or allocating.
// Otherwise the policy decides, and the flow is cached: an allowed flow
// together with its reverse (same VRF, reversed tuple, allowed by the same
// rule), so that replies pass; a denied flow alone, so that its reverse can
// still be allowed by a rule of its own. A cached decision is current when
// it was taken under the policy in force and for the same srcNet and dstNet
// (a route change that moves an address to another network re-decides).
// When the table is full, or the VRF at its quota, the decision is still
// taken, just not cached (Stats.Full, Stats.QuotaHits): an allowed flow
// passes but its reply, with no reverse entry, is decided as a flow of its
// own, which the policy usually denies.
//
// tcpFlags is the TCP flags byte of a TCP packet (ignored for other
// protocols): a flow that has seen an RST, or a FIN each way, ages with
// ClosingTimeout; a SYN without ACK reopens it. srcNet == dstNet (not 0)
// is traffic inside one network: allowed, and nothing is cached or counted.
func (t *Table) Decide(k Key, srcNet, dstNet uint32, tcpFlags uint8, bytes int, now int64) (allowed bool, rule uint32) {
	if srcNet == dstNet && srcNet != 0 {
		return true, 0
	}
	b := t.cur.Load()
	sym, h := t.h.hash(&k)
	s := t.shard(sym)
	if e := s.find(&k, h); e != nil {
		if d := e.dec.Load(); d.current(b, srcNet, dstNet) {
			s.hits.Add(1)
			e.account(bytes, now, tcpFlags)
			return d.allowed, d.rule
		}
	}
	return t.decideSlow(s, &k, h, srcNet, dstNet, tcpFlags, bytes, now)
}

// decideSlow is Decide under the shard lock: the lock-free look may have
// raced with a writer, so it looks again before deciding.
func (t *Table) decideSlow(s *shard, k *Key, h uint64, srcNet, dstNet uint32, tcpFlags uint8, bytes int, now int64) (bool, uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := t.cur.Load()
	if e := s.find(k, h); e != nil {
		if d := e.dec.Load(); d.current(b, srcNet, dstNet) {
			s.hits.Add(1)
			e.account(bytes, now, tcpFlags)
			return d.allowed, d.rule
		}
		t.revalidated.Add(1)
		if d := t.redecideLocked(s, b, e, srcNet, dstNet); d != nil {
			e.account(bytes, now, tcpFlags)
			return d.allowed, d.rule
		}
		// Dropped: decided below as a new flow of the packet's direction.
	} else {
		t.misses.Add(1)
	}
	return t.insertLocked(s, b, k, h, srcNet, dstNet, tcpFlags, bytes, now)
}

// redecideLocked re-decides e, cached under another policy generation or
// other networks, for the packet's srcNet and dstNet. It returns the new
// decision, or nil when it dropped e (and its peer) for the caller to
// decide the packet afresh. Called with s.mu held.
func (t *Table) redecideLocked(s *shard, b *binding, e *Entry, srcNet, dstNet uint32) *decision {
	pol := b.pol
	if p := e.peer; p != nil {
		// A flow allowed both ways is re-decided as its forward direction,
		// whichever direction's packet came first.
		f, fs, fd := e, srcNet, dstNet
		if e.Reverse() {
			f, fs, fd = p, dstNet, srcNet
		}
		if i := pol.match(fs, fd, &f.tuple); i >= 0 {
			id := pol.c[i].id
			if old := f.dec.Load(); !old.allowed || old.rule != id {
				b.hits[i].Add(1)
			}
			f.dec.Store(&decision{gen: b.gen, srcNet: fs, dstNet: fd, rule: id, allowed: true})
			f.peer.dec.Store(&decision{gen: b.gen, srcNet: fd, dstNet: fs, rule: id, allowed: true})
			return e.dec.Load()
		}
		// No longer allowed. Both directions go; the packet is then decided
		// as a flow of its own direction, which a rule may still allow.
		t.dropLocked(s, e)
		return nil
	}
	i := pol.match(srcNet, dstNet, &e.tuple)
	if i >= 0 && !selfReverse(&e.tuple) {
		// A denied flow now allowed needs its reverse: insert it anew.
		t.dropLocked(s, e)
		return nil
	}
	old := e.dec.Load()
	d := &decision{gen: b.gen, srcNet: srcNet, dstNet: dstNet}
	if i >= 0 {
		d.allowed, d.rule = true, pol.c[i].id
		if !old.allowed || old.rule != d.rule {
			b.hits[i].Add(1)
		}
	} else if old.allowed {
		t.denied.Add(1)
	}
	e.dec.Store(d)
	return d
}

// selfReverse reports a tuple that is its own reverse (same address and
// port at both ends): its reply direction is the same entry.
func selfReverse(t *packet.FiveTuple) bool { return *t == t.Reverse() }

// insertLocked decides a flow with no entry and caches it. Called with
// s.mu held.
func (t *Table) insertLocked(s *shard, b *binding, k *Key, h uint64, srcNet, dstNet uint32, tcpFlags uint8, bytes int, now int64) (bool, uint32) {
	i := b.pol.match(srcNet, dstNet, &k.Tuple)
	d := decision{gen: b.gen, srcNet: srcNet, dstNet: dstNet}
	if i >= 0 {
		d.allowed, d.rule = true, b.pol.c[i].id
		b.hits[i].Add(1)
	} else {
		t.denied.Add(1)
	}
	if !d.allowed || selfReverse(&k.Tuple) {
		if !t.take(k.VRF, 1, true) {
			return d.allowed, d.rule
		}
		e := &Entry{vrf: k.VRF, tuple: k.Tuple, d0: d}
		e.dec.Store(&e.d0)
		e.account(bytes, now, tcpFlags)
		s.reserve(1)
		s.put(e, h)
		t.inserts.Add(1)
		return d.allowed, d.rule
	}
	rk := Key{VRF: k.VRF, Tuple: k.Tuple.Reverse()}
	_, rh := t.h.hash(&rk) // same shard: the shard hash is symmetric
	if x := s.find(&rk, rh); x != nil {
		// The reverse tuple is cached as a flow of its own. Since a pair's
		// keys are each other's reverse and k had no entry, x stands alone:
		// a denied flow. The reply direction of an allowed flow supersedes
		// it.
		t.dropLocked(s, x)
	}
	if !t.take(k.VRF, 2, false) {
		return d.allowed, d.rule
	}
	p := &pair{}
	p.fwd.vrf, p.fwd.tuple, p.fwd.peer, p.fwd.d0 = k.VRF, k.Tuple, &p.rev, d
	p.rev.vrf, p.rev.tuple, p.rev.peer = rk.VRF, rk.Tuple, &p.fwd
	p.rev.d0 = decision{gen: d.gen, srcNet: dstNet, dstNet: srcNet, rule: d.rule, allowed: true}
	p.rev.state.Store(stReverse)
	p.fwd.dec.Store(&p.fwd.d0)
	p.rev.dec.Store(&p.rev.d0)
	p.fwd.account(bytes, now, tcpFlags)
	s.reserve(2)
	s.put(&p.fwd, h)
	s.put(&p.rev, rh)
	t.inserts.Add(2)
	return d.allowed, d.rule
}

// dropLocked removes e and its peer (Stats.Evictions). Called with s.mu
// held.
func (t *Table) dropLocked(s *shard, e *Entry) {
	n := t.unlinkLocked(s, e)
	t.evictions.Add(uint64(n))
}

// unlinkLocked removes e and its peer and returns how many entries went.
func (t *Table) unlinkLocked(s *shard, e *Entry) int {
	n := 0
	if s.del(e, t.dirHash(e)) {
		n++
	}
	if e.peer == nil {
		if n > 0 {
			t.peerless.Add(-1)
		}
	} else if s.del(e.peer, t.dirHash(e.peer)) {
		n++
	}
	if n > 0 {
		t.n.Add(int64(-n))
		t.use(e.vrf).n.Add(int64(-n)) // a flow's two directions share its VRF
	}
	return n
}

// DecideICMPError decides an ICMP or ICMPv6 error message (destination
// unreachable, including fragmentation needed; packet too big; time
// exceeded; parameter problem) by the flow it reports on. k is the error's
// own key; quoted is the tuple of the datagram it quotes, as that datagram
// was sent, so quoted.Src must be the error's destination. When the table
// holds a flow for quoted in k.VRF that is allowed, so is the error, with
// that flow's rule (Stats.Related); the error is not counted on the flow
// and does not keep it alive. Otherwise the error is decided as a packet of
// its own, exactly as Decide (so a rule allowing ICMP between the networks
// still lets it pass). Like Decide, it allocates nothing when the flow is
// cached and current.
func (t *Table) DecideICMPError(k Key, quoted packet.FiveTuple, srcNet, dstNet uint32, bytes int, now int64) (allowed bool, rule uint32) {
	if srcNet == dstNet && srcNet != 0 {
		return true, 0
	}
	if quoted.Src == k.Tuple.Dst {
		qk := Key{VRF: k.VRF, Tuple: quoted}
		b := t.cur.Load()
		sym, h := t.h.hash(&qk)
		s := t.shard(sym)
		if e := s.find(&qk, h); e != nil {
			d := e.dec.Load()
			if d.gen != b.gen {
				d = t.redecideStored(s, &qk, h)
			}
			if d != nil && d.allowed {
				t.related.Add(1)
				return true, d.rule
			}
		}
	}
	return t.Decide(k, srcNet, dstNet, 0, bytes, now)
}

// redecideStored re-decides the entry for k with the networks it was
// cached for: an ICMP error does not say which networks its quoted flow
// runs between.
func (t *Table) redecideStored(s *shard, k *Key, h uint64) *decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := t.cur.Load()
	e := s.find(k, h)
	if e == nil {
		return nil
	}
	d := e.dec.Load()
	if d.gen == b.gen {
		return d
	}
	t.revalidated.Add(1)
	return t.redecideLocked(s, b, e, d.srcNet, d.dstNet)
}

// Sweep removes the flows idle for longer than their timeout at now, both
// directions together (a flow's idle time counts from the latest packet
// either way), and returns how many entries went. Call it from one
// goroutine, every second or so; it locks one shard at a time, so packets
// of flows being created wait at most for the sweep of one shard
// (Max/256 entries).
func (t *Table) Sweep(now int64) (removed int) {
	for i := range t.shards {
		s := &t.shards[i]
		n := 0
		s.mu.Lock()
		sl := s.tab.Load().s
		for j := range sl {
			e := sl[j].e.Load()
			if e == nil || e == tombstone || e.Reverse() || !t.idle(e, now) {
				continue // a reverse entry goes with its forward one
			}
			n += t.unlinkLocked(s, e)
		}
		if n > 0 {
			s.compact()
		}
		s.mu.Unlock()
		t.expired.Add(uint64(n))
		removed += n
	}
	return removed
}

// idle reports whether the flow of e (a forward or standalone entry) has
// outlived its timeout.
func (t *Table) idle(e *Entry, now int64) bool {
	last := e.last.Load()
	if e.peer != nil {
		last = max(last, e.peer.last.Load())
	}
	var to int64
	switch {
	case !e.dec.Load().allowed:
		to = t.denyTO
	case e.tuple.Proto == packet.ProtoTCP:
		to = t.tcpTO
		if e.Closing() {
			to = t.closeTO
		}
	case e.tuple.Proto == packet.ProtoUDP:
		to = t.udpTO
	default:
		to = t.otherTO
	}
	return now-last > to
}

// Len is the number of entries (an allowed flow is two).
func (t *Table) Len() int { return int(t.n.Load()) }

// All calls fn for each entry until fn returns false. It takes no lock:
// each shard is read as it stands when All reaches it, so an entry added
// or removed meanwhile may be missed or still be seen, but none is seen
// twice. fn may call the table.
func (t *Table) All(fn func(Key, *Entry) bool) {
	for i := range t.shards {
		sl := t.shards[i].tab.Load().s
		for j := range sl {
			e := sl[j].e.Load()
			if e == nil || e == tombstone {
				continue
			}
			if !fn(e.Key(), e) {
				return
			}
		}
	}
}

// Stats are the table's counters since NewTable. Packet counters: Hits +
// Misses + Revalidations is every packet Decide looked up (not the
// same-network ones), plus the ICMP errors whose quoted flow had to be
// re-decided. Entry counters: when no Decide or Sweep is running,
// Inserts = Entries + Expired + Evictions.
type Stats struct {
	Entries       int    // entries now
	Hits          uint64 // packets decided by a current cached entry
	Misses        uint64 // packets of a flow with no entry: the policy decided
	Revalidations uint64 // lookups whose entry was for another policy or networks: re-decided
	Inserts       uint64 // entries created
	Expired       uint64 // entries removed by Sweep
	Evictions     uint64 // entries removed otherwise: re-decided to deny, or superseded
	Full          uint64 // decisions not cached for want of room
	// VRFQuota is the entries a VRF may hold; VRFs has, per VRF that has
	// held entries, its entries now and its decisions not cached because
	// it was at the quota.
	VRFQuota int
	VRFs     map[uint32]VRFStats
	Denied   uint64 // flows denied: first decisions, and re-decisions that turned to deny
	Related  uint64 // ICMP errors allowed by the flow they report on
	// RuleHits counts flows allowed, by rule ID, for the rules of the
	// policy in force: first decisions, and re-decisions that moved a flow
	// to the rule. A rule keeps its count across SetPolicy while its ID
	// stays in the policy.
	RuleHits map[uint32]uint64
}

// Stats returns the counters; they are read one by one, not as one
// snapshot.
func (t *Table) Stats() Stats {
	st := Stats{
		Entries:       t.Len(),
		Misses:        t.misses.Load(),
		Revalidations: t.revalidated.Load(),
		Inserts:       t.inserts.Load(),
		Expired:       t.expired.Load(),
		Evictions:     t.evictions.Load(),
		Full:          t.full.Load(),
		Denied:        t.denied.Load(),
		Related:       t.related.Load(),
	}
	for i := range t.shards {
		st.Hits += t.shards[i].hits.Load()
	}
	st.VRFQuota = int(t.quota)
	vrfs := *t.vrfs.Load()
	st.VRFs = make(map[uint32]VRFStats, len(vrfs))
	for id, u := range vrfs {
		st.VRFs[id] = VRFStats{Entries: int(u.n.Load()), QuotaHits: u.quotaHits.Load()}
	}
	b := t.cur.Load()
	st.RuleHits = make(map[uint32]uint64, len(b.hits))
	for i, c := range b.hits {
		st.RuleHits[b.pol.c[i].id] = c.Load()
	}
	return st
}

// Current reports whether e's cached decision was taken under the policy
// in force (after SetPolicy, an entry's next packet re-decides it). The
// in-kernel fast path carries only current, allowed flows.
func (t *Table) Current(e *Entry) bool { return e.dec.Load().gen == t.cur.Load().gen }

// Credit adds packets and bytes that another path (the in-kernel fast
// path) carried for the flow cached under k, and stamps last (the Sweep
// clock) if it is later, so that the flow ages from its latest packet
// whichever path took it. It reports whether the entry is there.
func (t *Table) Credit(k Key, packets, bytes uint64, last int64) bool {
	sym, h := t.h.hash(&k)
	e := t.shard(sym).find(&k, h)
	if e == nil {
		return false
	}
	e.packets.Add(packets)
	e.bytes.Add(bytes)
	for {
		old := e.last.Load()
		if last <= old || e.last.CompareAndSwap(old, last) {
			return true
		}
	}
}

// Inserts is Stats().Inserts alone, cheap enough to poll: the fast path
// watches it to put a new flow into the kernel at once.
func (t *Table) Inserts() uint64 { return t.inserts.Load() }
