package fib

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// linear is the reference: a list of routes, longest match by scanning.
type linear map[netip.Prefix]NextHopID

func (l linear) lookup(a netip.Addr) (NextHopID, bool) {
	best, bits := NextHopID(0), -1
	for p, nh := range l {
		if p.Bits() > bits && p.Contains(a) {
			best, bits = nh, p.Bits()
		}
	}
	return best, bits >= 0
}

func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		// Stay in a few /8s so that prefixes overlap and nest.
		b[0] = 0x20 | byte(r.IntN(2))
		return netip.AddrFrom16(b)
	}
	var b [4]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] = 10 + byte(r.IntN(3))
	return netip.AddrFrom4(b)
}

func randPrefix(r *rand.Rand, v6 bool) netip.Prefix {
	max := 32
	if v6 {
		max = 128
	}
	l := r.IntN(max + 1)
	if r.IntN(4) == 0 { // favour the octet boundaries, where positions change
		l = 8 * r.IntN(max/8+1)
	}
	return netip.PrefixFrom(randAddr(r, v6), l).Masked()
}

// probes are addresses that test the edges of p: its first and last
// address and the ones just outside.
func probes(p netip.Prefix) []netip.Addr {
	first := p.Addr()
	last := first
	b := last.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ = netip.AddrFromSlice(b)
	out := []netip.Addr{first, last}
	if prev := first.Prev(); prev.IsValid() {
		out = append(out, prev)
	}
	if next := last.Next(); next.IsValid() {
		out = append(out, next)
	}
	return out
}

// invariants checks every node of the trie: bitmaps, ranks and slices
// agree, no node is empty, and no node other than the root holds a single
// route and nothing else (that must be a leaf in its parent).
func invariants(t *testing.T, n *node, depth int) {
	t.Helper()
	if n == nil {
		return
	}
	var np, nk, nl int
	for w := range n.pfx {
		if int(n.pfxRank[w]) != np {
			t.Fatalf("depth %d: pfxRank[%d] = %d, want %d", depth, w, n.pfxRank[w], np)
		}
		np += bits.OnesCount64(n.pfx[w])
	}
	for w := range n.kids {
		if int(n.kidRank[w]) != nk || int(n.lvsRank[w]) != nl {
			t.Fatalf("depth %d: ranks of word %d", depth, w)
		}
		if n.kids[w]&n.lvs[w] != 0 {
			t.Fatalf("depth %d: a slot with both a child and a leaf", depth)
		}
		nk += bits.OnesCount64(n.kids[w])
		nl += bits.OnesCount64(n.lvs[w])
	}
	if np != len(n.nhs) || nk != len(n.child) || nl != len(n.leaves) {
		t.Fatalf("depth %d: bitmaps say %d/%d/%d, slices hold %d/%d/%d", depth, np, nk, nl, len(n.nhs), len(n.child), len(n.leaves))
	}
	if n.pfx[0]&1 != 0 {
		t.Fatalf("depth %d: ART index 0 used", depth)
	}
	if depth > 0 && (n.empty() || (nk == 0 && np+nl == 1)) {
		t.Fatalf("depth %d: node with %d routes, %d leaves, %d children", depth, np, nl, nk)
	}
	for _, c := range n.child {
		invariants(t, c, depth+1)
	}
}

func check(t *testing.T, tab *Table, ref linear, r *rand.Rand, v6 bool) {
	t.Helper()
	invariants(t, tab.cur.Load().root4, 0)
	invariants(t, tab.cur.Load().root6, 0)
	var addrs []netip.Addr
	for i := 0; i < 500; i++ {
		addrs = append(addrs, randAddr(r, v6))
	}
	for p := range ref {
		addrs = append(addrs, probes(p)...)
	}
	for _, a := range addrs {
		got, gok := tab.Lookup(a)
		want, wok := ref.lookup(a)
		if got != want || gok != wok {
			t.Fatalf("Lookup(%v) = %d %v, linear LPM says %d %v", a, got, gok, want, wok)
		}
	}
	n := 0
	for p, nh := range tab.All() {
		n++
		if ref[p] != nh {
			t.Fatalf("All yields %v -> %d, reference has %d", p, nh, ref[p])
		}
		if got, ok := tab.Get(p); !ok || got != nh {
			t.Fatalf("Get(%v) = %d %v", p, got, ok)
		}
	}
	n4, n6 := tab.Len()
	if n != len(ref) || n4+n6 != len(ref) {
		t.Fatalf("All yields %d routes, Len %d+%d, reference %d", n, n4, n6, len(ref))
	}
}

// TestAgainstLinear applies random inserts, replacements and deletes, in
// single operations and in batches, and compares every lookup with a
// linear scan.
func TestAgainstLinear(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "ipv4", true: "ipv6"}[v6]
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(len(name))))
			tab := NewTable()
			ref := linear{}
			var known []netip.Prefix
			for round := 0; round < 40; round++ {
				op := func(tx *Txn) {
					if len(known) > 0 && r.IntN(3) == 0 {
						p := known[r.IntN(len(known))]
						had, err := tx.Delete(p)
						if err != nil {
							t.Fatal(err)
						}
						_, want := ref[p]
						if had != want {
							t.Fatalf("Delete(%v) = %v, reference has it: %v", p, had, want)
						}
						delete(ref, p)
						return
					}
					p := randPrefix(r, v6)
					nh := NextHopID(1 + r.IntN(1000))
					if err := tx.Insert(p, nh); err != nil {
						t.Fatal(err)
					}
					ref[p] = nh
					known = append(known, p)
				}
				if round%2 == 0 {
					for i := 0; i < 20; i++ {
						var tx *Txn
						if err := tab.Update(func(t *Txn) error { tx = t; op(t); return nil }); err != nil {
							t.Fatal(err)
						}
						if err := tx.Insert(netip.MustParsePrefix("10.0.0.0/8"), 1); err == nil {
							t.Fatal("Txn usable after Update")
						}
					}
				} else if err := tab.Update(func(tx *Txn) error {
					for i := 0; i < 50; i++ {
						op(tx)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				check(t, tab, ref, r, v6)
			}
			// Delete everything: the trie must prune to nothing.
			for p := range ref {
				if had, err := tab.Delete(p); err != nil || !had {
					t.Fatalf("Delete(%v) = %v %v", p, had, err)
				}
			}
			s := tab.cur.Load()
			if s.root4 != nil || s.root6 != nil || s.n4 != 0 || s.n6 != 0 {
				t.Fatal("empty table keeps nodes")
			}
		})
	}
}

// TestSnapshotsImmutable keeps an old snapshot and checks that later
// writes, batched or not, never change what it answers.
func TestSnapshotsImmutable(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	tab := NewTable()
	ref := linear{}
	for i := 0; i < 300; i++ {
		p := randPrefix(r, i%2 == 0)
		ref[p] = NextHopID(i + 1)
		if err := tab.Insert(p, NextHopID(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	old := &Table{}
	old.cur.Store(tab.cur.Load())
	for i := 0; i < 300; i++ {
		p := randPrefix(r, i%2 == 1)
		if err := tab.Update(func(tx *Txn) error {
			if err := tx.Insert(p, 5000); err != nil {
				return err
			}
			for q := range ref {
				if r.IntN(50) == 0 {
					if _, err := tx.Delete(q); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check(t, old, ref, r, false)
	check(t, old, ref, r, true)
}

func TestUpdateRollback(t *testing.T) {
	tab := NewTable()
	p := netip.MustParsePrefix("10.1.0.0/16")
	if err := tab.Insert(p, 7); err != nil {
		t.Fatal(err)
	}
	err := tab.Update(func(tx *Txn) error {
		if err := tx.Insert(netip.MustParsePrefix("10.1.2.0/24"), 8); err != nil {
			return err
		}
		if _, err := tx.Delete(p); err != nil {
			return err
		}
		if _, ok := tx.Get(p); ok {
			t.Error("Txn.Get sees a deleted route")
		}
		if nh, ok := tx.Get(netip.MustParsePrefix("10.1.2.0/24")); !ok || nh != 8 {
			t.Error("Txn.Get misses its own insert")
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatal(err)
	}
	if nh, ok := tab.Lookup(netip.MustParseAddr("10.1.2.3")); !ok || nh != 7 {
		t.Fatalf("after a failed Update: %d %v", nh, ok)
	}
	if n4, _ := tab.Len(); n4 != 1 {
		t.Fatalf("Len %d", n4)
	}
}

var errRollback = &rollback{}

type rollback struct{}

func (*rollback) Error() string { return "rollback" }

func TestEdges(t *testing.T) {
	tab := NewTable()
	if _, ok := tab.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("empty table matched")
	}
	if _, ok := tab.Lookup(netip.Addr{}); ok {
		t.Fatal("zero Addr matched")
	}
	routes := map[string]NextHopID{
		"0.0.0.0/0": 1, "10.0.0.0/8": 2, "10.0.0.0/9": 3, "10.0.0.0/16": 4, "10.0.0.0/24": 5, "10.0.0.0/25": 6,
		"10.0.0.128/25": 7, "10.0.0.255/32": 8, "10.0.0.0/32": 9, "::/0": 10, "2001:db8::/32": 11,
		"2001:db8::1/128": 12, "::ffff:10.0.0.0/104": 13, "2001:db8:0:1::/64": 14,
	}
	for p, nh := range routes {
		if err := tab.Insert(netip.MustParsePrefix(p), nh); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		addr string
		want NextHopID
	}{
		{"11.0.0.1", 1}, {"10.200.0.1", 2}, {"10.1.0.1", 3}, {"10.0.1.1", 4}, {"10.0.0.0", 9}, {"10.0.0.1", 6},
		{"10.0.0.127", 6}, {"10.0.0.128", 7}, {"10.0.0.254", 7}, {"10.0.0.255", 8}, {"::1", 10},
		{"2001:db8::1", 12}, {"2001:db8::2", 11}, {"::ffff:10.1.2.3", 13}, {"2001:db8:0:1:ffff::", 14},
	} {
		if got, ok := tab.Lookup(netip.MustParseAddr(tc.addr)); !ok || got != tc.want {
			t.Errorf("Lookup(%s) = %d %v, want %d", tc.addr, got, ok, tc.want)
		}
	}
	// Host bits are masked off.
	if nh, ok := tab.Get(netip.MustParsePrefix("10.0.0.77/24")); !ok || nh != 5 {
		t.Error("Get does not mask")
	}
	if err := tab.Insert(netip.MustParsePrefix("10.9.0.0/16"), 0); err == nil || !strings.Contains(err.Error(), "next hop 0") {
		t.Errorf("next hop 0: %v", err)
	}
	if err := tab.Insert(netip.Prefix{}, 3); err == nil {
		t.Error("invalid prefix accepted")
	}
	if had, err := tab.Delete(netip.MustParsePrefix("192.168.0.0/16")); had || err != nil {
		t.Error("deleting an absent route")
	}
	// Stop early in All.
	n := 0
	for range tab.All() {
		n++
		if n == 3 {
			break
		}
	}
}

func TestFIBVRFs(t *testing.T) {
	f := New()
	if f.VRF(0) != nil {
		t.Fatal("VRF before creation")
	}
	a, err := f.CreateVRF(1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.CreateVRF(5)
	if again, _ := f.CreateVRF(1); again != a {
		t.Fatal("CreateVRF replaced an existing VRF")
	}
	if _, err := f.CreateVRF(MaxVRF + 1); err == nil {
		t.Fatal("VRF beyond MaxVRF")
	}
	p := netip.MustParsePrefix("10.0.0.0/24")
	_ = a.Insert(p, 100)
	_ = b.Insert(p, 200)
	addr := netip.MustParseAddr("10.0.0.9")
	if nh, _ := f.Lookup(1, addr); nh != 100 {
		t.Fatal("vrf 1")
	}
	if nh, _ := f.Lookup(5, addr); nh != 200 {
		t.Fatal("vrf 5: the same prefix in another VRF")
	}
	if _, ok := f.Lookup(3, addr); ok {
		t.Fatal("absent VRF matched")
	}
	if ids := f.VRFs(); len(ids) != 2 || ids[0] != 1 || ids[1] != 5 {
		t.Fatal(ids)
	}
	f.DeleteVRF(5)
	f.DeleteVRF(42)
	if _, ok := f.Lookup(5, addr); ok || len(*f.vrfs.Load()) != 2 {
		t.Fatal("deleted VRF")
	}
}

func TestLookupAllocs(t *testing.T) {
	tab, a4, a6 := benchTable(t, 1000, 1)
	f := New()
	v, _ := f.CreateVRF(0)
	_ = v.Insert(netip.MustParsePrefix("10.0.0.0/8"), 1)
	i := 0
	var sink NextHopID
	if n := testing.AllocsPerRun(1000, func() {
		nh, _ := tab.Lookup(a4[i%len(a4)])
		nh6, _ := tab.Lookup(a6[i%len(a6)])
		nh7, _ := f.Lookup(0, a4[i%len(a4)])
		sink += nh + nh6 + nh7
		i++
	}); n != 0 {
		t.Fatalf("%v allocs per lookup", n)
	}
	_ = sink
}

// TestConcurrentReaders checks under -race that lookups running during
// writes see every route that no write touches.
func TestConcurrentReaders(t *testing.T) {
	tab := NewTable()
	stable := map[netip.Addr]NextHopID{}
	r := rand.New(rand.NewPCG(21, 22))
	for i := 0; i < 200; i++ {
		a := randAddr(r, i%2 == 0)
		stable[a] = NextHopID(i + 1)
		if err := tab.Insert(netip.PrefixFrom(a, a.BitLen()), NextHopID(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for a, want := range stable {
					if got, ok := tab.Lookup(a); !ok || got != want {
						t.Errorf("Lookup(%v) = %d %v during writes, want %d", a, got, ok, want)
						return
					}
				}
			}
		}()
	}
	w := rand.New(rand.NewPCG(23, 24))
	for i := 0; i < 3000; i++ {
		p := randPrefix(w, i%2 == 0)
		if p.Bits() == p.Addr().BitLen() {
			continue // a host route could shadow a stable one
		}
		if err := tab.Insert(p, 9999); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := tab.Delete(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}

// FuzzTable reads the input as a program of inserts and deletes over a
// small address space (so prefixes collide and nest) and checks every
// lookup against the linear reference and the trie's invariants.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 10, 0, 0, 0, 8, 1, 0, 10, 1, 0, 0, 16, 2, 1, 10, 0, 0, 0, 8})
	f.Add([]byte{2, 0x20, 1, 0, 0, 64, 3, 2, 0x20, 1, 0, 1, 128, 4, 3, 0x20, 1, 0, 1, 128})
	f.Fuzz(func(t *testing.T, prog []byte) {
		tab := NewTable()
		ref := linear{}
		var probe []netip.Addr
		for len(prog) >= 6 {
			op, a0, a1, a2, a3, l := prog[0], prog[1], prog[2], prog[3], prog[4], prog[5]
			prog = prog[6:]
			var p netip.Prefix
			if op&2 == 0 {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{a0 & 0x0f, a1, a2, a3}), int(l)%33)
			} else {
				var b [16]byte
				b[0], b[1], b[7], b[15] = a0&0x0f, a1, a2, a3
				p = netip.PrefixFrom(netip.AddrFrom16(b), int(l)%129)
			}
			p = p.Masked()
			probe = append(probe, probes(p)...)
			if op&1 == 0 {
				nh := NextHopID(l) + 1
				if err := tab.Insert(p, nh); err != nil {
					t.Fatal(err)
				}
				ref[p] = nh
			} else {
				had, err := tab.Delete(p)
				_, want := ref[p]
				if err != nil || had != want {
					t.Fatalf("Delete(%v) = %v %v, reference %v", p, had, err, want)
				}
				delete(ref, p)
			}
		}
		invariants(t, tab.cur.Load().root4, 0)
		invariants(t, tab.cur.Load().root6, 0)
		for _, a := range probe {
			got, gok := tab.Lookup(a)
			want, wok := ref.lookup(a)
			if got != want || gok != wok {
				t.Fatalf("Lookup(%v) = %d %v, linear LPM says %d %v", a, got, gok, want, wok)
			}
		}
		n := 0
		for p, nh := range tab.All() {
			n++
			if ref[p] != nh {
				t.Fatalf("All yields %v -> %d, reference %d", p, nh, ref[p])
			}
		}
		if n != len(ref) {
			t.Fatalf("All yields %d, reference %d", n, len(ref))
		}
	})
}
