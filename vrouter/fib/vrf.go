package fib

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// VRFID names a VRF (one virtual network's routing instance).
type VRFID uint32

// MaxVRF is the largest VRF ID: IDs index a slice, so allocate them densely
// from 0.
const MaxVRF = 1<<16 - 1

// FIB is the set of per-VRF tables, indexed by VRF ID. VRF and Lookup are
// lock-free and allocation-free; creating or deleting a VRF copies the
// index (one pointer per VRF ID up to the largest in use).
type FIB struct {
	vrfs atomic.Pointer[[]*Table]
	mu   sync.Mutex
}

// New returns a FIB without VRFs.
func New() *FIB {
	f := &FIB{}
	f.vrfs.Store(new([]*Table))
	return f
}

// VRF returns the table of VRF id, or nil.
func (f *FIB) VRF(id VRFID) *Table {
	v := *f.vrfs.Load()
	if int(id) >= len(v) {
		return nil
	}
	return v[id]
}

// Lookup is VRF(vrf).Lookup(a), false when the VRF does not exist.
func (f *FIB) Lookup(vrf VRFID, a netip.Addr) (NextHopID, bool) {
	t := f.VRF(vrf)
	if t == nil {
		return 0, false
	}
	return t.Lookup(a)
}

// CreateVRF adds an empty table for VRF id, or returns the one it has (so
// that a reconcile may call it again).
func (f *FIB) CreateVRF(id VRFID) (*Table, error) {
	if id > MaxVRF {
		return nil, fmt.Errorf("fib: vrf %d exceeds %d", id, MaxVRF)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := *f.vrfs.Load()
	if int(id) < len(v) && v[id] != nil {
		return v[id], nil
	}
	n := slices.Clone(v)
	if int(id) >= len(n) {
		n = append(n, make([]*Table, int(id)+1-len(n))...)
	}
	t := NewTable()
	n[id] = t
	f.vrfs.Store(&n)
	return t, nil
}

// DeleteVRF drops VRF id and all its routes; lookups in it miss from then
// on. Deleting an absent VRF is not an error.
func (f *FIB) DeleteVRF(id VRFID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := *f.vrfs.Load()
	if int(id) >= len(v) || v[id] == nil {
		return
	}
	n := slices.Clone(v)
	n[id] = nil
	for len(n) > 0 && n[len(n)-1] == nil {
		n = n[:len(n)-1]
	}
	f.vrfs.Store(&n)
}

// VRFs lists the VRF IDs in use, ascending.
func (f *FIB) VRFs() []VRFID {
	var ids []VRFID
	for i, t := range *f.vrfs.Load() {
		if t != nil {
			ids = append(ids, VRFID(i))
		}
	}
	return ids
}
