package fib

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// benchTable fills a table with n random IPv4 prefixes (lengths uniform in
// /8../32) and n random IPv6 prefixes (/16../128), and returns addresses
// inside those prefixes to look up, so every lookup walks to a match.
func benchTable(tb testing.TB, n int, seed uint64) (*Table, []netip.Addr, []netip.Addr) {
	tb.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	tab := NewTable()
	var a4, a6 []netip.Addr
	if err := tab.Update(func(tx *Txn) error {
		for i := 0; i < n; i++ {
			var b4 [4]byte
			var b16 [16]byte
			for j := range b4 {
				b4[j] = byte(r.Uint32())
			}
			for j := range b16 {
				b16[j] = byte(r.Uint32())
			}
			b16[0] = 0x20
			p4 := netip.PrefixFrom(netip.AddrFrom4(b4), 8+r.IntN(25))
			p6 := netip.PrefixFrom(netip.AddrFrom16(b16), 16+r.IntN(113))
			if err := tx.Insert(p4, NextHopID(i+1)); err != nil {
				return err
			}
			if err := tx.Insert(p6, NextHopID(i+1)); err != nil {
				return err
			}
			if len(a4) < 1<<16 {
				a4 = append(a4, netip.AddrFrom4(b4))
				a6 = append(a6, netip.AddrFrom16(b16))
			}
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	r.Shuffle(len(a4), func(i, j int) { a4[i], a4[j] = a4[j], a4[i] })
	r.Shuffle(len(a6), func(i, j int) { a6[i], a6[j] = a6[j], a6[i] })
	return tab, a4, a6
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		tab, a4, a6 := benchTable(b, n, 1)
		for _, fam := range []struct {
			name  string
			addrs []netip.Addr
		}{{"ipv4", a4}, {"ipv6", a6}} {
			b.Run(fam.name+"/prefixes="+strconv.Itoa(n), func(b *testing.B) {
				addrs := fam.addrs
				mask := 1
				for mask*2 <= len(addrs) {
					mask *= 2
				}
				mask--
				b.ReportAllocs()
				b.ResetTimer()
				var sink NextHopID
				for i := 0; i < b.N; i++ {
					nh, _ := tab.Lookup(addrs[i&mask])
					sink += nh
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/lookup")
				_ = sink
			})
		}
	}
}

// BenchmarkInsert measures one published write (a path copy) into a table
// of 100k routes per family.
func BenchmarkInsert(b *testing.B) {
	tab, _, _ := benchTable(b, 100000, 2)
	r := rand.New(rand.NewPCG(3, 4))
	ps := make([]netip.Prefix, 4096)
	for i := range ps {
		ps[i] = randPrefix(r, i%2 == 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tab.Insert(ps[i&4095], NextHopID(i+1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/insert")
}

// BenchmarkBulkLoad measures loading 100k IPv4 and 100k IPv6 routes in one
// Update.
func BenchmarkBulkLoad(b *testing.B) {
	for i := 0; i < b.N; i++ {
		start := time.Now()
		benchTable(b, 100000, uint64(i))
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/200000, "ns/route")
	}
}
