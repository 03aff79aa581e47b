package bgp

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/vrouter/packet"
)

// BenchmarkRoutes: a speaker in a child process announces N routes (100k,
// or WEFT_BGP_BENCH_ROUTES) through FRR to a speaker in this process;
// reported are the end-to-end rate (from the sender's first Announce to the
// receiver's last event), the sender's Announce rate, and the receiver's
// heap per route (GoBGP's RIB and this package's bookkeeping). The sender
// runs apart so that its heap is not counted. ipv4-unicast is the baseline,
// measured in the same run.
//
//	go test ./agent/bgp -run '^$' -bench Routes -benchtime 1x
func BenchmarkRoutes(b *testing.B) {
	n := 100_000
	if s := os.Getenv("WEFT_BGP_BENCH_ROUTES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("WEFT_BGP_BENCH_ROUTES=%q", s)
		}
		n = v
	}
	for _, fam := range []Family{IPv4Unicast, VPNv4} {
		b.Run(fam.String(), func(b *testing.B) { benchRoutes(b, fam, n) })
	}
}

func benchRoutes(b *testing.B, fam Family, n int) {
	l := newLab(b, bgpd.FRR, labOpts{nodes: 1, children: 1, rr: bgpd.Config{Families: []bgpd.Family{bgpd.VPNv4, bgpd.IPv4Unicast}}})
	B := startSpeaker(b, l.speakerConfig(l.node(0)))
	waitUp(b, B, 30*time.Second)
	var count atomic.Int64
	B.Subscribe(func(e Event) {
		switch e.Kind {
		case RouteAdded:
			if e.Route.Family == fam {
				count.Add(1)
			}
		case RouteWithdrawn:
			if e.Route.Family == fam {
				count.Add(-1)
			}
		}
	})
	spec := childSpec{Config: l.speakerConfig(l.childAddr(0)), Generate: n, GenerateFamily: fam}
	var e2e, announce, perRoute float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()

		A := l.startChild(b, 0, spec)
		A.expect(b, "UP", 30*time.Second)
		t0 := time.Now()
		for count.Load() < int64(n) {
			if time.Since(t0) > 10*time.Minute {
				b.Fatalf("received %d of %d routes after 10 min", count.Load(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		d := time.Since(t0)
		line := A.expect(b, "ANNOUNCED", time.Minute)

		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		e2e = float64(n) / d.Seconds()
		if f := strings.Fields(line); len(f) == 3 {
			if s, err := strconv.ParseFloat(f[2], 64); err == nil && s > 0 {
				announce = float64(n) / s
			}
		}
		perRoute = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
		if got := len(B.Received(fam)); got != n {
			b.Errorf("Received(%v): %d routes, want %d", fam, got, n)
		}
		// Kill the sender (no graceful restart: the reflector withdraws
		// at once) and wait for the withdrawals, for the next round.
		A.kill()
		for count.Load() > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(e2e, "routes/s")
	b.ReportMetric(announce, "announce-routes/s")
	b.ReportMetric(perRoute, "heap-B/route")
	b.ReportMetric(0, "ns/op") // one op is N routes: the rates above say it better
}

// BenchmarkAnnounceLatency: one op is an Announce on speaker X and the
// route's arrival on speaker Y, X and Y peering directly over loopback.
// weft is this package's speakers (each session through its own guard
// relay, the event through Subscribe); gobgp is the baseline in the same
// run: two bare GoBGP servers, the same path added with AddPath and
// watched with WatchEvent, no relay. The difference is what the relays
// and the event plumbing add.
//
//	go test ./agent/bgp -run '^$' -bench AnnounceLatency -benchtime 2000x
func BenchmarkAnnounceLatency(b *testing.B) {
	self(b)
	b.Run("weft", benchAnnounceWeft)
	b.Run("gobgp", benchAnnounceGoBGP)
}

// latencyRoute is the i-th route BenchmarkAnnounceLatency announces from x.
func latencyRoute(x netip.Addr, i int) Route {
	return Route{Family: VPNv4, RD: NewRD(x, 1), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
		Label: 16 + uint32(i%1000), NextHop: netip.MustParseAddr("198.18.0.21"), Encaps: []packet.Encap{packet.EncapMPLSoUDP}}
}

// measureAnnounce runs the benchmark loop: announce route i, wait for its
// key on got; it reports the median and 99th percentile.
func measureAnnounce(b *testing.B, x netip.Addr, announce func(Route) error, got <-chan Key) {
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := latencyRoute(x, i)
		t0 := time.Now()
		if err := announce(r); err != nil {
			b.Fatal(err)
		}
		for k := range got {
			if k == r.Key() {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func benchAnnounceWeft(b *testing.B) {
	x, y := netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("127.0.0.22")
	Y := startSpeaker(b, Config{RouterID: y, ASN: testASN, ListenAddresses: []string{y.String()},
		Peers:  []Peer{{Address: x, Passive: true}},
		Logger: testLogger(b, "Y")})
	X := startSpeaker(b, Config{RouterID: x, ASN: testASN, ListenPort: -1,
		Peers:  []Peer{{Address: y, LocalAddress: x, ConnectRetry: time.Second}},
		Logger: testLogger(b, "X")})
	waitAllUp(b, time.Now(), 30*time.Second, X, Y)
	got := make(chan Key, 1024)
	Y.Subscribe(func(e Event) {
		if e.Kind == RouteAdded {
			got <- e.Route.Key()
		}
	})
	measureAnnounce(b, x, X.Announce, got)
}

func benchAnnounceGoBGP(b *testing.B) {
	x, y := netip.MustParseAddr("127.0.0.23"), netip.MustParseAddr("127.0.0.24")
	ctx := context.Background()
	start := func(id netip.Addr, listen int32, addrs []string, peer *api.Peer) *server.BgpServer {
		srv := server.NewBgpServer(server.LoggerOption(speakerLog(testLogger(b, "gobgp "+id.String()), newDiagnostics(), nil)))
		go srv.Serve()
		if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: testASN, RouterId: id.String(),
			ListenPort: listen, ListenAddresses: addrs}}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.StopBgp(ctx, &api.StopBgpRequest{}) })
		peer.AfiSafis = []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: VPNv4.apiFamily(), Enabled: true}}}
		peer.Timers = &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1}}
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
			b.Fatal(err)
		}
		return srv
	}
	Y := start(y, 179, []string{y.String()}, &api.Peer{Conf: &api.PeerConf{NeighborAddress: x.String(), PeerAsn: testASN},
		Transport: &api.Transport{PassiveMode: true}})
	X := start(x, -1, nil, &api.Peer{Conf: &api.PeerConf{NeighborAddress: y.String(), PeerAsn: testASN},
		Transport: &api.Transport{LocalAddress: x.String()}})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		up := false
		X.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			up = p.State != nil && p.State.SessionState == api.PeerState_ESTABLISHED
		})
		if up {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("bare GoBGP session not established in 30 s")
		}
	}
	got := make(chan Key, 1024)
	watch, stop := context.WithCancel(ctx)
	b.Cleanup(stop)
	err := Y.WatchEvent(watch, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}}}},
		func(r *api.WatchEventResponse) {
			for _, p := range r.GetTable().GetPaths() {
				if k, ok := keyOf(p); ok && !p.IsWithdraw {
					got <- k
				}
			}
		})
	if err != nil {
		b.Fatal(err)
	}
	enc := encoding{asn: testASN}
	measureAnnounce(b, x, func(r Route) error {
		p, err := r.apiPath(enc, false)
		if err != nil {
			return err
		}
		_, err = X.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
		return err
	}, got)
}

// BenchmarkWithdrawal: one op announces a VPNv4 route on A, waits for it
// at B through a real reflector, withdraws it and waits for the
// withdrawal at B. The figures are the withdrawal's median and slowest
// time, Withdraw to B's RouteWithdrawn (TestReflectors only requires it
// within 5 s). No baseline: compare the figure from run to run.
//
//	go test ./agent/bgp -run '^$' -bench Withdrawal -benchtime 50x
func BenchmarkWithdrawal(b *testing.B) {
	for _, kind := range []bgpd.Kind{bgpd.FRR, bgpd.GoBGPd, bgpd.BIRD} {
		b.Run(kind.String(), func(b *testing.B) {
			l := newLab(b, kind, labOpts{nodes: 2, rr: bgpd.Config{Families: []bgpd.Family{bgpd.VPNv4}}})
			A := startSpeaker(b, l.speakerConfig(l.node(0)))
			B := startSpeaker(b, l.speakerConfig(l.node(1)))
			waitAllUp(b, time.Now(), 30*time.Second, A, B)
			l.rr.WaitEstablished(b, 10*time.Second, l.node(0), l.node(1))
			rec := record(B)
			rec.wait(b, 5*time.Second, "initial table", func() bool { return rec.init })
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				r := latencyRoute(l.node(0), i)
				r.NextHop, r.RouteTargets = l.node(0), []RouteTarget{as2RT(64512, 100)}
				k := r.Key()
				if err := A.Announce(r); err != nil {
					b.Fatal(err)
				}
				rec.wait(b, 5*time.Second, "route at B", func() bool { _, ok := rec.table[k]; return ok })
				if err := A.Withdraw(r); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, rec.wait(b, 5*time.Second, "withdrawal at B", func() bool { _, ok := rec.table[k]; return !ok }))
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms-withdrawal")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms-withdrawal")
			}
		})
	}
}
