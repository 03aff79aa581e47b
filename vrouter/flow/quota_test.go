package flow

import (
	"testing"
	"time"
)

// A VRF at its quota gets its new flows decided, not cached: its allowed
// flows pass, their replies (with no reverse entry) are decided as flows of
// their own and denied; another VRF's new flows are cached and their
// replies pass, and nothing of the other VRF is evicted. Ageing gives the
// VRF its room back.
func TestVRFQuota(t *testing.T) {
	tab := newTable(t, Config{Max: 64, VRFQuota: 8}, scenario())
	flow := func(vrf uint32, i int) Key {
		return Key{VRF: vrf, Tuple: tcpT("10.0.30.5", uint16(40000+i), "10.0.10.5", 8000)}
	}
	reply := func(k Key) Key { return Key{VRF: k.VRF, Tuple: k.Tuple.Reverse()} }
	deny := func(vrf uint32, i int) Key {
		return Key{VRF: vrf, Tuple: tcpT("10.0.10.5", uint16(40000+i), "10.0.30.5", 80)}
	}
	a, r := tab.Decide(flow(2, 0), netNginx, netLeonardo, 0, 60, t0)
	expect(t, "VRF 2's first flow", a, r, true, 10)

	for i := range 10 {
		a, r := tab.Decide(flow(1, i), netNginx, netLeonardo, 0, 60, t0)
		expect(t, "VRF 1's flow", a, r, true, 10) // cached or not: allowed
	}
	a, r = tab.Decide(deny(1, 0), netLeonardo, netNginx, 0, 60, t0)
	expect(t, "VRF 1's denied flow at its quota", a, r, false, 0)
	st := tab.Stats()
	if v := st.VRFs[1]; v.Entries != 8 || v.QuotaHits != 7 || st.Full != 0 || st.Evictions != 0 {
		t.Fatalf("VRF 1 at its quota of 8: %+v; stats %+v", v, st)
	}
	a, r = tab.Decide(reply(flow(1, 3)), netLeonardo, netNginx, 0, 60, t0)
	expect(t, "the reply of VRF 1's cached flow", a, r, true, 10)
	a, r = tab.Decide(reply(flow(1, 4)), netLeonardo, netNginx, 0, 60, t0)
	expect(t, "the reply of VRF 1's flow beyond its quota (no reverse entry: safe)", a, r, false, 0)

	// VRF 2 is untouched by VRF 1's quota: new flows cached, replies pass.
	for i := range 3 {
		a, r := tab.Decide(flow(2, i), netNginx, netLeonardo, 0, 60, t0)
		expect(t, "VRF 2's flow", a, r, true, 10)
		a, r = tab.Decide(reply(flow(2, i)), netLeonardo, netNginx, 0, 60, t0)
		expect(t, "VRF 2's reply", a, r, true, 10)
	}
	st = tab.Stats()
	if v := st.VRFs[2]; v.Entries != 6 || v.QuotaHits != 0 {
		t.Errorf("VRF 2: %+v, want 3 flows cached, no quota hit", v)
	}
	checkBooks(t, tab, 0)

	// Ageing frees VRF 1's share.
	tab.Sweep(t0 + time.Hour.Nanoseconds())
	tab.Decide(flow(1, 9), netNginx, netLeonardo, 0, 60, t0+time.Hour.Nanoseconds())
	a, r = tab.Decide(reply(flow(1, 9)), netLeonardo, netNginx, 0, 60, t0+time.Hour.Nanoseconds())
	expect(t, "VRF 1's reply after ageing", a, r, true, 10)
	if v := tab.Stats().VRFs[1]; v.Entries != 2 {
		t.Errorf("VRF 1 after ageing and one flow: %+v", v)
	}
	checkBooks(t, tab, 0)
}

// The default quota is an eighth of the table.
func TestVRFQuotaDefault(t *testing.T) {
	if q := NewTable(Config{}).Stats().VRFQuota; q != DefaultMax/DefaultVRFShare {
		t.Errorf("default quota %d, want %d", q, DefaultMax/DefaultVRFShare)
	}
	if q := NewTable(Config{Max: 1000, VRFQuota: -1}).Stats().VRFQuota; q != 125 {
		t.Errorf("quota of a 1000-entry table %d, want 125", q)
	}
}
