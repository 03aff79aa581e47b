package nexthop

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

var (
	gwMAC  = packet.MAC{0x02, 0, 0, 0, 0, 1}
	vmMAC  = packet.MAC{0x52, 0x54, 0, 0, 0, 1}
	remote = netip.MustParseAddr("192.0.2.2")
)

func tunnel(id ID, under string, label uint32) NextHop {
	return NextHop{ID: id, Kind: Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: netip.MustParseAddr(under), Label: label}
}

// flows returns the hashes of n distinct TCP flows.
func flows(n int) []uint64 {
	h := make([]uint64, n)
	for i := range h {
		ft := packet.FiveTuple{
			Src:     netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 2)}),
			Dst:     netip.MustParseAddr("203.0.113.10"),
			SrcPort: uint16(40000 + i), DstPort: 80, Proto: packet.ProtoTCP,
		}
		h[i] = ft.Hash()
	}
	return h
}

func TestValidate(t *testing.T) {
	tests := []struct {
		nh   NextHop
		want string
	}{
		{NextHop{ID: 0, Kind: Discard}, "nexthop 0: id out of range"},
		{NextHop{ID: MaxID + 1, Kind: Discard}, "id out of range"},
		{NextHop{ID: 1}, "nexthop 1: kind invalid not supported"},
		{NextHop{ID: 1, Kind: Discard, Members: []ID{2}}, "discard with members"},
		{NextHop{ID: 1, Kind: Receive, Underlay: remote}, "receive with tunnel fields"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapVXLAN, Underlay: remote, Port: 3}, "tunnel with port fields"},
		{NextHop{ID: 1, Kind: Port, Port: 1, SrcMAC: gwMAC}, "port: dst mac 00:00:00:00:00:00 must be unicast"},
		{NextHop{ID: 1, Kind: Port, Port: 1, DstMAC: packet.BroadcastMAC, SrcMAC: gwMAC}, "must be unicast"},
		{NextHop{ID: 1, Kind: Port, Port: 1, DstMAC: vmMAC}, "port: src mac"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapMPLSoUDP, Label: 100}, "underlay invalid IP must be a unicast"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: netip.MustParseAddr("224.0.0.1"), Label: 100}, "must be a unicast"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: netip.MustParseAddr("::ffff:192.0.2.2"), Label: 100}, "must be a unicast"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapMPLSoGRE, Underlay: remote, Label: 3}, "mplsogre label 3 out of range 16..1048575"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: remote, Label: 1 << 20}, "out of range"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapMPLSoUDP, Underlay: remote, Label: 100, VNI: 5}, "mplsoudp with vxlan fields"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapVXLAN, Underlay: remote, VNI: 1 << 24}, "vni 16777216 exceeds 24 bits"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapVXLAN, Underlay: remote, VNI: 5, Label: 100}, "vxlan with a label"},
		{NextHop{ID: 1, Kind: Tunnel, Encap: packet.EncapVXLAN, Underlay: remote, VNI: 5, RouterMAC: packet.BroadcastMAC}, "router mac"},
		{NextHop{ID: 1, Kind: Tunnel, Underlay: remote}, "encapsulation none not supported"},
		{NextHop{ID: 1, Kind: Composite}, "composite: 0 members, want 1..64"},
		{NextHop{ID: 1, Kind: Composite, Members: []ID{2, 1}}, "members[1] is itself"},
		{NextHop{ID: 1, Kind: Composite, Members: []ID{2, 3, 2}}, "members[2] repeats member 2"},
		{NextHop{ID: 1, Kind: Composite, Members: make([]ID, 65)}, "65 members"},
	}
	tab := NewTable()
	for _, tc := range tests {
		if err := tab.Set(tc.nh); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.nh, err, tc.want)
		}
	}
	for _, ok := range []NextHop{
		{ID: 1, Kind: Discard},
		{ID: 2, Kind: Receive},
		{ID: 3, Kind: Port, Port: 7, DstMAC: vmMAC, SrcMAC: gwMAC},
		tunnel(4, "192.0.2.2", 16),
		{ID: 5, Kind: Tunnel, Encap: packet.EncapVXLAN, Underlay: netip.MustParseAddr("2001:db8::2"), VNI: 0, RouterMAC: gwMAC},
		{ID: MaxID, Kind: Tunnel, Encap: packet.EncapMPLSoGRE, Underlay: remote, Label: packet.MaxMPLSLabel},
	} {
		if err := tab.Set(ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	if tab.Len() != 6 {
		t.Fatalf("Len %d", tab.Len())
	}
	if Tunnel.String() != "tunnel" || Kind(42).String() != "kind(42)" {
		t.Error("Kind.String")
	}
}

func TestTable(t *testing.T) {
	tab := NewTable()
	if tab.Get(1) != nil || tab.Resolve(1, 0) != nil || tab.Get(MaxID) != nil || tab.Len() != 0 {
		t.Fatal("empty table")
	}
	for _, nh := range []NextHop{tunnel(1, "192.0.2.1", 100), tunnel(2, "192.0.2.2", 100), tunnel(300, "192.0.2.3", 100)} {
		if err := tab.Set(nh); err != nil {
			t.Fatal(err)
		}
	}
	members := []ID{1, 2, 300}
	if err := tab.Set(NextHop{ID: 10, Kind: Composite, Members: members}); err != nil {
		t.Fatal(err)
	}
	members[0] = 99 // the table keeps its own copy
	if got := tab.Get(10); got == nil || got.Members[0] != 1 || got.Kind != Composite {
		t.Fatalf("Get(10) = %+v", got)
	}
	if r := tab.Resolve(300, 12345); r == nil || r.ID != 300 {
		t.Fatal("Resolve of a plain next hop")
	}
	if r := tab.Resolve(10, 12345); r == nil || r.Kind != Tunnel {
		t.Fatalf("Resolve(10) = %+v", r)
	}
	// Referential integrity.
	if err := tab.Delete(2); err == nil || !strings.Contains(err.Error(), "nexthop 2: member of 1 composite next hops (first 10)") {
		t.Fatalf("delete of a member: %v", err)
	}
	if err := tab.Set(NextHop{ID: 11, Kind: Composite, Members: []ID{1, 10}}); err == nil || !strings.Contains(err.Error(), "members[1]: nexthop 10 is a composite") {
		t.Fatalf("nested composite: %v", err)
	}
	if err := tab.Set(NextHop{ID: 11, Kind: Composite, Members: []ID{1, 77}}); err == nil || !strings.Contains(err.Error(), "members[1]: nexthop 77 does not exist") {
		t.Fatalf("missing member: %v", err)
	}
	if err := tab.Set(NextHop{ID: 1, Kind: Composite, Members: []ID{2}}); err == nil || !strings.Contains(err.Error(), "composite 10 names it") {
		t.Fatalf("member turned composite: %v", err)
	}
	// A member can be changed in place (a new label), and a composite
	// replaced with fewer members frees the others.
	if err := tab.Set(tunnel(2, "192.0.2.2", 200)); err != nil {
		t.Fatal(err)
	}
	if err := tab.Set(NextHop{ID: 10, Kind: Composite, Members: []ID{1, 300}}); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete(2); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete(10); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete(1); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete(1); err != nil {
		t.Fatal("deleting an absent next hop:", err)
	}
	var ids []ID
	for nh := range tab.All() {
		ids = append(ids, nh.ID)
	}
	if len(ids) != 1 || ids[0] != 300 || tab.Len() != 1 {
		t.Fatalf("All = %v, Len %d", ids, tab.Len())
	}
	if err := tab.Delete(300); err != nil || tab.Len() != 0 || len(tab.cur.Load().chunks) != 0 {
		t.Fatalf("empty again: %v, chunks %d", err, len(tab.cur.Load().chunks))
	}
}

func TestECMPSpread(t *testing.T) {
	nh := &NextHop{ID: 10, Kind: Composite, Members: []ID{1, 2, 3}}
	tab := NewTable()
	for _, m := range nh.Members {
		if err := tab.Set(tunnel(m, "192.0.2.1", 100+uint32(m))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tab.Set(*nh); err != nil {
		t.Fatal(err)
	}
	hs := flows(300)
	count := map[ID]int{}
	before := make([]ID, len(hs))
	for i, h := range hs {
		before[i] = tab.Resolve(10, h).ID
		count[before[i]]++
	}
	for _, m := range []ID{1, 2, 3} {
		if count[m] < 60 {
			t.Errorf("member %d got %d of 300 flows, want at least 20%%", m, count[m])
		}
	}
	t.Logf("300 flows over 3 members: %v", count)

	// Remove member 2: exactly its flows move, to the survivors.
	if err := tab.Set(NextHop{ID: 10, Kind: Composite, Members: []ID{3, 1}}); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for i, h := range hs {
		after := tab.Resolve(10, h).ID
		switch {
		case before[i] == 2 && after == 2:
			t.Fatalf("flow %d still on the removed member", i)
		case before[i] == 2:
			moved++
		case after != before[i]:
			t.Fatalf("flow %d moved from %d to %d though its member stayed", i, before[i], after)
		}
	}
	if moved != count[2] {
		t.Fatalf("%d flows moved, member 2 had %d", moved, count[2])
	}
	// Bring it back: the same flows return, nothing else moves.
	if err := tab.Set(NextHop{ID: 10, Kind: Composite, Members: []ID{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if got := tab.Resolve(10, h).ID; got != before[i] {
			t.Fatalf("flow %d on %d after re-adding, was %d", i, got, before[i])
		}
	}
}

// TestECMPProperties checks the rendezvous guarantees over many member
// sets: order does not matter, a removal moves exactly the removed
// member's flows, an addition moves flows only to the new member, and the
// spread is even.
func TestECMPProperties(t *testing.T) {
	hs := flows(20000)
	mk := func(ms ...ID) *NextHop {
		nh := &NextHop{ID: 1000, Kind: Composite, Members: ms, seeds: make([]uint64, len(ms))}
		for i, m := range ms {
			nh.seeds[i] = memberSeed(m)
		}
		return nh
	}
	for k := 2; k <= 16; k++ {
		ms := make([]ID, k)
		for i := range ms {
			ms[i] = ID(17*i + k)
		}
		full := mk(ms...)
		rev := mk(append([]ID(nil), ms...)...)
		for i, j := 0, len(rev.Members)-1; i < j; i, j = i+1, j-1 {
			rev.Members[i], rev.Members[j] = rev.Members[j], rev.Members[i]
			rev.seeds[i], rev.seeds[j] = rev.seeds[j], rev.seeds[i]
		}
		gone := ms[k/2]
		less := mk(append(append([]ID(nil), ms[:k/2]...), ms[k/2+1:]...)...)
		count := map[ID]int{}
		for _, h := range hs {
			a := full.Select(h)
			count[a]++
			if rev.Select(h) != a {
				t.Fatalf("k=%d: member order changed the choice", k)
			}
			b := less.Select(h)
			if (a == gone) == (b == a) || (a != gone && b != a) {
				t.Fatalf("k=%d: flow moved %d -> %d removing %d", k, a, b, gone)
			}
			if a != gone && less.Select(h) != a {
				t.Fatalf("k=%d: adding %d moved a flow elsewhere", k, gone)
			}
		}
		want := len(hs) / k
		for _, m := range ms {
			if c := count[m]; c < want*85/100 || c > want*115/100 {
				t.Errorf("k=%d: member %d got %d flows, want about %d", k, m, c, want)
			}
		}
	}
	if (&NextHop{Kind: Tunnel}).Select(1) != 0 {
		t.Error("Select on a tunnel")
	}
}

func TestAllocs(t *testing.T) {
	tab := NewTable()
	for m := ID(1); m <= 8; m++ {
		if err := tab.Set(tunnel(m, "192.0.2.1", 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tab.Set(NextHop{ID: 9, Kind: Composite, Members: []ID{1, 2, 3, 4, 5, 6, 7, 8}}); err != nil {
		t.Fatal(err)
	}
	hs := flows(64)
	i := 0
	var sink ID
	if a := testing.AllocsPerRun(1000, func() {
		sink += tab.Resolve(9, hs[i%len(hs)]).ID + tab.Get(ID(i%9+1)).ID
		i++
	}); a != 0 {
		t.Fatalf("%v allocs per Resolve", a)
	}
	_ = sink
}

// TestConcurrentReaders runs readers against a writer that keeps
// replacing and deleting next hops; run under -race. A reader must always
// see a whole next hop: the stable ones never change, the churned one is
// either absent or complete.
func TestConcurrentReaders(t *testing.T) {
	tab := NewTable()
	for m := ID(1); m <= 3; m++ {
		if err := tab.Set(tunnel(m, "192.0.2.1", 100+uint32(m))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tab.Set(NextHop{ID: 4, Kind: Composite, Members: []ID{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	hs := flows(100)
	want := make([]ID, len(hs))
	for i, h := range hs {
		want[i] = tab.Resolve(4, h).ID
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := n % len(hs)
				if got := tab.Resolve(4, hs[i]); got == nil || got.ID != want[i] {
					t.Errorf("flow %d resolved to %+v, want %d", i, got, want[i])
					return
				}
				if nh := tab.Get(ID(500 + n%50)); nh != nil && (nh.Kind != Tunnel || nh.Label != uint32(nh.ID)) {
					t.Errorf("torn next hop %+v", nh)
					return
				}
			}
		}()
	}
	for n := 0; n < 5000; n++ {
		id := ID(500 + n%50)
		if n%3 == 2 {
			if err := tab.Delete(id); err != nil {
				t.Fatal(err)
			}
		} else if err := tab.Set(tunnel(id, "192.0.2.9", uint32(id))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkResolve(b *testing.B) {
	for _, k := range []int{1, 3, 16} {
		b.Run("members="+itoa(k), func(b *testing.B) {
			tab := NewTable()
			ms := make([]ID, k)
			for i := range ms {
				ms[i] = ID(i + 1)
				if err := tab.Set(tunnel(ms[i], "192.0.2.1", 100)); err != nil {
					b.Fatal(err)
				}
			}
			if err := tab.Set(NextHop{ID: 100, Kind: Composite, Members: ms}); err != nil {
				b.Fatal(err)
			}
			hs := flows(1024)
			b.ReportAllocs()
			b.ResetTimer()
			var sink ID
			for i := 0; i < b.N; i++ {
				sink += tab.Resolve(100, hs[i&1023]).ID
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/resolve")
			_ = sink
		})
	}
}

func BenchmarkSet(b *testing.B) {
	tab := NewTable()
	for i := 1; i <= 100000; i++ {
		if err := tab.Set(tunnel(ID(i), "192.0.2.1", 100)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tab.Set(tunnel(ID(i%100000+1), "192.0.2.1", 200)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/set")
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
