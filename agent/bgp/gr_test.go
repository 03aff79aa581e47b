package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// TestGracefulRestart: a speaker killed with SIGKILL (a child process), or
// abandoned in-process, leaves its routes stale at the reflector and
// present at the other nodes; restarted with Restarting it refreshes them
// with no withdrawal anywhere; left dead, its routes go when the restart
// time it announced runs out. A clean Stop withdraws at once.
func TestGracefulRestart(t *testing.T) {
	testenv.SkipIfShort(t)
	for _, kind := range []bgpd.Kind{bgpd.FRR, bgpd.GoBGPd} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			testGracefulRestart(t, kind)
		})
	}
}

// The restart time a speaker announces bounds how long its peers keep its
// routes. gobgpd takes ~8-11 s to accept a killed client again (it holds
// the session idle for 5 s, then waits for its connect timer), hence the
// margin; the last life announces a short one, to watch it run out.
const (
	grRestartTime     = 25 * time.Second
	grLastRestartTime = 8 * time.Second
)

func grConfig(l *lab, addr netip.Addr) Config {
	c := l.speakerConfig(addr)
	c.GracefulRestart, c.RestartTime = true, grRestartTime
	return c
}

// withdrawnSince reports the withdrawals of k that r saw since t0.
func withdrawnSince(r *recorder, k Key, t0 time.Time) []timedEvent {
	var out []timedEvent
	for _, e := range r.eventsSince(t0) {
		if e.Kind == RouteWithdrawn && e.Route.Key() == k {
			out = append(out, e)
		}
	}
	return out
}

func stale(r Route, want bool) func([]bgpd.RIBEntry) bool {
	return func(es []bgpd.RIBEntry) bool {
		e, ok := findRIB(es, r.RD.String(), r.Prefix)
		return ok && e.Stale == want
	}
}

func testGracefulRestart(t *testing.T, kind bgpd.Kind) {
	l := newLab(t, kind, labOpts{nodes: 2, children: 1})
	B := startSpeaker(t, grConfig(l, l.node(0)))
	rec := record(B)

	a := l.childAddr(0)
	vpn := Route{Family: VPNv4, RD: NewRD(a, 1), Prefix: netip.MustParsePrefix("10.2.0.0/24"), Label: 2001, NextHop: a,
		RouteTargets: []RouteTarget{as2RT(64512, 100)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}}
	evpn := Route{Family: EVPN, RD: NewRD(a, 2), Prefix: netip.MustParsePrefix("10.6.0.0/24"), Label: 6000, NextHop: a,
		RouteTargets: []RouteTarget{as2RT(64512, 6000)}, Encaps: []packet.Encap{packet.EncapVXLAN}}
	specA := childSpec{Config: grConfig(l, a)}
	specA.Config.Logger = nil
	specA.Config.Routes = []Route{vpn, evpn}

	A := l.startChild(t, 0, specA)
	A.expect(t, "UP", 30*time.Second)
	rec.wait(t, 10*time.Second, "A's routes at B", func() bool {
		_, ok1 := rec.table[vpn.Key()]
		_, ok2 := rec.table[evpn.Key()]
		return ok1 && ok2
	})

	// kill -9: no NOTIFICATION, the reflector keeps the routes stale.
	tKill := time.Now()
	A.kill()
	pollRR(t, 5*time.Second, "A's VPNv4 route stale", l.rr.VPNv4, stale(vpn, true))
	t.Logf("%v: A killed; its VPNv4 route stale at the reflector after %v", kind, time.Since(tKill).Round(time.Millisecond))
	evpnRIB, _ := l.rr.EVPN()
	e, kept := findRIB(evpnRIB, evpn.RD.String(), evpn.Prefix)
	t.Logf("%v: A's EVPN route at the reflector after the kill: kept %v stale %v", kind, kept, e.Stale)
	if kind == bgpd.GoBGPd && !(kept && e.Stale) {
		t.Errorf("gobgpd should keep A's EVPN route stale")
	}
	// Down for a while, well inside the restart time.
	time.Sleep(3 * time.Second)

	specA.Config.Restarting = true
	specA.Config.RestartTime = grLastRestartTime
	tRestart := time.Now()
	A2 := l.startChild(t, 0, specA)
	A2.expect(t, "UP", 30*time.Second)
	t.Logf("%v: restarted A established after %v", kind, time.Since(tRestart).Round(time.Millisecond))
	pollRR(t, 10*time.Second, "A's VPNv4 route fresh", l.rr.VPNv4, stale(vpn, false))
	t.Logf("%v: A's route fresh again %v after the restart, %v after the kill", kind, time.Since(tRestart).Round(time.Millisecond), time.Since(tKill).Round(time.Millisecond))
	rec.wait(t, 10*time.Second, "A's EVPN route at B", func() bool { _, ok := rec.table[evpn.Key()]; return ok })
	if w := withdrawnSince(rec, vpn.Key(), tKill); len(w) > 0 {
		t.Errorf("B saw A's VPNv4 route withdrawn during the restart: %v", w)
	}
	if w := withdrawnSince(rec, evpn.Key(), tKill); len(w) > 0 {
		if kind == bgpd.FRR {
			t.Logf("FRR withdrew A's EVPN route during the restart (an FRR 8.4 limitation): withdrawn %v after the kill", w[0].at.Sub(tKill).Round(time.Millisecond))
		} else {
			t.Errorf("B saw A's EVPN route withdrawn during the restart: %v", w)
		}
	}

	testAbandon(t, l, rec)

	// Dead for good: the routes go when the restart time runs out.
	tKill = time.Now()
	A2.kill()
	rec.wait(t, grLastRestartTime+15*time.Second, "A's VPNv4 route withdrawn at B", func() bool { _, ok := rec.table[vpn.Key()]; return !ok })
	gone := time.Since(tKill)
	t.Logf("%v: A killed for good: its route withdrawn at B after %v (restart time %v)", kind, gone.Round(time.Millisecond), grLastRestartTime)
	if gone < grLastRestartTime-time.Second {
		t.Errorf("withdrawn after %v, before the restart time %v", gone, grLastRestartTime)
	}
}

// testAbandon: Abandon in-process does to peers what the kill does.
func testAbandon(t *testing.T, l *lab, rec *recorder) {
	c := l.node(1)
	r := Route{Family: VPNv4, RD: NewRD(c, 1), Prefix: netip.MustParsePrefix("10.3.0.0/24"), Label: 3001, NextHop: c,
		RouteTargets: []RouteTarget{as2RT(64512, 100)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}}
	cfg := grConfig(l, c)
	cfg.Routes = []Route{r}
	C := startSpeaker(t, cfg)
	waitUp(t, C, 30*time.Second)
	rec.wait(t, 10*time.Second, "C's route at B", func() bool { _, ok := rec.table[r.Key()]; return ok })

	tAb := time.Now()
	C.Abandon()
	pollRR(t, 5*time.Second, "C's route stale", l.rr.VPNv4, stale(r, true))
	t.Logf("%v: C abandoned; its route stale at the reflector after %v", l.kind, time.Since(tAb).Round(time.Millisecond))
	if err := C.Announce(r); err != ErrStopped {
		t.Errorf("Announce after Abandon: %v, want ErrStopped", err)
	}
	time.Sleep(2 * time.Second) // down a while

	cfg.Restarting = true
	C2 := startSpeaker(t, cfg)
	waitUp(t, C2, 30*time.Second)
	pollRR(t, 10*time.Second, "C's route fresh", l.rr.VPNv4, stale(r, false))
	t.Logf("%v: C restarted; route fresh %v after the abandon", l.kind, time.Since(tAb).Round(time.Millisecond))
	if w := withdrawnSince(rec, r.Key(), tAb); len(w) > 0 {
		t.Errorf("B saw C's route withdrawn across Abandon and restart: %v", w)
	}

	// Stop, by contrast, sends Cease: the route goes at once.
	C2.Stop()
	d := rec.wait(t, 5*time.Second, "C's route withdrawn after Stop", func() bool { _, ok := rec.table[r.Key()]; return !ok })
	t.Logf("%v: C stopped cleanly: route withdrawn at B after %v", l.kind, d.Round(time.Millisecond))
	if d > 2*time.Second {
		t.Errorf("withdrawal after Stop took %v", d)
	}
}
