package flow

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

// benchKeys returns n distinct flows from nginx to leonardo port 8000.
func benchKeys(n int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{VRF: uint32(1 + i%4), Tuple: packet.FiveTuple{
			Src:     netip.AddrFrom4([4]byte{10, 0, 30, byte(i % 251)}),
			Dst:     netip.AddrFrom4([4]byte{10, 0, 10, byte(i / 251 % 251)}),
			SrcPort: uint16(1024 + i/63001), DstPort: 8000, Proto: packet.ProtoTCP,
		}}
	}
	return keys
}

// packets is what a hit benchmark looks up: both directions of every
// flow, in an order unrelated to the order the flows were created in (so
// memory is not walked in allocation order, which real traffic never does).
type benchPacket struct {
	k        Key
	src, dst uint32
}

func benchPackets(keys []Key) []benchPacket {
	ps := make([]benchPacket, 0, 2*len(keys))
	for _, k := range keys {
		ps = append(ps, benchPacket{k, netNginx, netLeonardo}, benchPacket{Key{VRF: k.VRF, Tuple: k.Tuple.Reverse()}, netLeonardo, netNginx})
	}
	r := rand.New(rand.NewPCG(7, 8))
	r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	return ps
}

// benchConfig lets the benchmarks' one VRF hold the whole table: the
// quota is checked on every insert but never reached, so the figures are
// the table's own, comparable across the quota's introduction.
var benchConfig = Config{VRFQuota: DefaultMax}

func benchFilled(b *testing.B, n int) (*Table, []benchPacket) {
	tab := newTable(b, benchConfig, scenario())
	keys := benchKeys(n)
	for _, k := range keys {
		if a, _ := tab.Decide(k, netNginx, netLeonardo, 0, 100, t0); !a {
			b.Fatal("bench flow denied")
		}
	}
	if tab.Len() != 2*n {
		b.Fatalf("%d flows cached as %d entries, want %d: the benchmark would measure uncached decisions", n, tab.Len(), 2*n)
	}
	return tab, benchPackets(keys)
}

func reportPackets(b *testing.B) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns, "ns/packet")
	b.ReportMetric(1e3/ns, "Mpps")
}

var flowCounts = []int{1000, 100000}

func BenchmarkDecideHit(b *testing.B) {
	for _, n := range flowCounts {
		b.Run("flows="+strconv.Itoa(n), func(b *testing.B) {
			tab, ps := benchFilled(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := &ps[i%len(ps)]
				tab.Decide(p.k, p.src, p.dst, packet.TCPFlagACK, 1500, t0)
			}
			reportPackets(b)
			if st := tab.Stats(); st.Misses != uint64(n) {
				b.Fatalf("%d misses in a hit benchmark", st.Misses-uint64(n))
			}
		})
	}
}

// BenchmarkDecideHitParallel: one goroutine per core, each on its own
// share of the flows, as ports and tunnel sockets are. ns/packet is wall time per packet
// across all goroutines (so 2 cores ideally halve it).
func BenchmarkDecideHitParallel(b *testing.B) {
	for _, n := range flowCounts {
		b.Run("flows="+strconv.Itoa(n), func(b *testing.B) {
			tab, all := benchFilled(b, n)
			parts := runtime.GOMAXPROCS(0)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				part := int(next.Add(1)-1) % parts
				ps := all[part*len(all)/parts : (part+1)*len(all)/parts]
				for i := 0; pb.Next(); i++ {
					p := &ps[i%len(ps)]
					tab.Decide(p.k, p.src, p.dst, packet.TCPFlagACK, 1500, t0)
				}
			})
			reportPackets(b)
		})
	}
}

// BenchmarkDecideMiss: every packet is a new allowed flow: lookup, lock,
// Evaluate, allocation and insertion of both directions.
func BenchmarkDecideMiss(b *testing.B) {
	const batch = 200000
	keys := benchKeys(batch)
	var tab *Table
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			b.StopTimer()
			tab = newTable(b, benchConfig, scenario())
			b.StartTimer()
		}
		tab.Decide(keys[i%batch], netNginx, netLeonardo, packet.TCPFlagSYN, 60, t0)
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns, "ns/flow")
	b.ReportMetric(1e9/ns, "flows/s")
}

// policy100 is 100 rules between 10 networks, with prefixes and ports, in
// the shape an agent generates from per-application policies.
func policy100(b *testing.B, anySource bool) *Policy {
	var rules []Rule
	for i := 0; len(rules) < 100; i++ {
		src, dst := uint32(1+i%10), uint32(1+(i/10+i)%10)
		if src == dst {
			continue
		}
		if anySource {
			src = 0
		}
		rules = append(rules, Rule{
			ID: uint32(len(rules) + 1), SrcNetwork: src, DstNetwork: dst,
			DstPrefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(dst), byte(i), 0}), 24)},
			Proto:       packet.ProtoTCP,
			DstPorts:    []PortRange{{uint16(1000 + i), uint16(1000 + i)}, {8000, 8000}},
		})
	}
	return mustCompile(b, rules)
}

func BenchmarkEvaluate(b *testing.B) {
	for _, shape := range []struct {
		name string
		any  bool
	}{{"by-network", false}, {"any-source", true}} {
		p := policy100(b, shape.any)
		last := p.rules[len(p.rules)-1]
		first := p.rules[0]
		src := func(r Rule) uint32 {
			if r.SrcNetwork == 0 {
				return 99 // a network no rule names
			}
			return r.SrcNetwork
		}
		tuple := func(r Rule, port uint16) packet.FiveTuple {
			return packet.FiveTuple{Src: netip.MustParseAddr("10.99.0.1"), Dst: r.DstPrefixes[0].Addr().Next(), SrcPort: 40000, DstPort: port, Proto: packet.ProtoTCP}
		}
		for _, tc := range []struct {
			name     string
			src, dst uint32
			t        packet.FiveTuple
			allowed  bool
		}{
			{"first-rule", src(first), first.DstNetwork, tuple(first, first.DstPorts[0].First), true},
			{"last-rule", src(last), last.DstNetwork, tuple(last, last.DstPorts[0].First), true},
			{"no-match", src(last), last.DstNetwork, tuple(last, 9), false},
		} {
			b.Run("rules=100/"+shape.name+"/"+tc.name, func(b *testing.B) {
				if a, _ := p.Evaluate(tc.src, tc.dst, tc.t); a != tc.allowed {
					b.Fatalf("allowed %v, want %v", a, tc.allowed)
				}
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					p.Evaluate(tc.src, tc.dst, tc.t)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/eval")
			})
			// Baseline: the plain linear scan of the tests' reference.
			b.Run("rules=100/"+shape.name+"/"+tc.name+"/reference", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					refEvaluate(p.rules, tc.src, tc.dst, tc.t)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/eval")
			})
		}
	}
}

// mapTable is the baseline the open-addressing table was measured
// against: the same sharding, each shard a Go map under a sync.RWMutex.
type mapTable struct {
	shards [nShards]struct {
		mu sync.RWMutex
		m  map[Key]*Entry
		_  [64]byte
	}
}

func (m *mapTable) decide(k Key, bytes int, now int64) bool {
	s := &m.shards[k.Tuple.Hash()>>(64-shardBits)]
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	if e == nil {
		return false
	}
	e.account(bytes, now, packet.TCPFlagACK)
	return e.dec.Load().allowed
}

func BenchmarkBaselineMapRWMutexHit(b *testing.B) {
	for _, n := range flowCounts {
		m := &mapTable{}
		for i := range m.shards {
			m.shards[i].m = make(map[Key]*Entry)
		}
		keys := benchKeys(n)
		for _, k := range keys {
			for _, k := range []Key{k, {VRF: k.VRF, Tuple: k.Tuple.Reverse()}} {
				e := &Entry{vrf: k.VRF, tuple: k.Tuple, d0: decision{allowed: true}}
				e.dec.Store(&e.d0)
				m.shards[k.Tuple.Hash()>>(64-shardBits)].m[k] = e
			}
		}
		all := benchPackets(keys)
		b.Run("flows="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				m.decide(all[i%len(all)].k, 1500, t0)
			}
			reportPackets(b)
		})
		b.Run("parallel/flows="+strconv.Itoa(n), func(b *testing.B) {
			parts := runtime.GOMAXPROCS(0)
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				part := int(next.Add(1)-1) % parts
				ps := all[part*len(all)/parts : (part+1)*len(all)/parts]
				for i := 0; pb.Next(); i++ {
					m.decide(ps[i%len(ps)].k, 1500, t0)
				}
			})
			reportPackets(b)
		})
	}
}
