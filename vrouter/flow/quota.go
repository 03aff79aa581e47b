package flow

import "sync/atomic"

// Per-VRF quotas: one tenant's flows must not fill the table for all. Each
// VRF may hold Config.VRFQuota entries; its new flows beyond are decided
// and not cached, like those of a full table, and counted on the VRF. The
// VRF's count is read and written on inserts and removals only, never on a
// cached decision.

// vrfUse is one VRF's share of the table.
type vrfUse struct {
	n         atomic.Int64  // entries
	quotaHits atomic.Uint64 // decisions not cached because n was at the quota
}

// use returns vrf's share, creating it on first sight.
func (t *Table) use(vrf uint32) *vrfUse {
	if u := (*t.vrfs.Load())[vrf]; u != nil {
		return u
	}
	t.vrfMu.Lock()
	defer t.vrfMu.Unlock()
	m := *t.vrfs.Load()
	if u := m[vrf]; u != nil {
		return u
	}
	nm := make(map[uint32]*vrfUse, len(m)+1)
	for k, v := range m {
		nm[k] = v
	}
	u := new(vrfUse)
	nm[vrf] = u
	t.vrfs.Store(&nm)
	return u
}

// take reserves n entries of vrf's quota and of the table's budget (and,
// for an entry that stands alone, of the peerless share), or counts why it
// could not (Stats.QuotaHits, Stats.Full). The quota comes first: a VRF at
// its quota is refused whether or not the table has room. Concurrent
// reservations in other shards may make it refuse a little before the
// table is exactly full.
func (t *Table) take(vrf uint32, n int64, peerless bool) bool {
	u := t.use(vrf)
	if u.n.Add(n) > t.quota {
		u.n.Add(-n)
		u.quotaHits.Add(1)
		return false
	}
	if peerless && t.peerless.Add(1) > t.maxPeerless {
		t.peerless.Add(-1)
		u.n.Add(-n)
		t.full.Add(1)
		return false
	}
	if t.n.Add(n) > t.max {
		t.n.Add(-n)
		if peerless {
			t.peerless.Add(-1)
		}
		u.n.Add(-n)
		t.full.Add(1)
		return false
	}
	return true
}

// VRFStats is one VRF's share of the table.
type VRFStats struct {
	Entries   int
	QuotaHits uint64
}
