package bgp

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// TestReflectors: node A announces VPNv4, VPNv6 and EVPN type 5 routes
// through a real reflector; node B receives them with every attribute
// intact (the RFC 9012 attribute byte for byte as the reflector
// re-advertised it), the reflector's own CLI shows RD, label, route
// targets and encapsulations, and a withdrawal reaches both (within 5 s:
// the speed is BenchmarkWithdrawal's figure, not a pass mark here).
func TestReflectors(t *testing.T) {
	testenv.SkipIfShort(t)
	for _, kind := range []bgpd.Kind{bgpd.FRR, bgpd.GoBGPd, bgpd.BIRD} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			testReflector(t, kind)
		})
	}
}

func testRoutes(a netip.Addr, t *testing.T) []Route {
	rts := []RouteTarget{as2RT(64512, 100), ipv4RT("192.0.2.1", 7)}
	return []Route{{
		Family: VPNv4, RD: NewRD(a, 1), Prefix: netip.MustParsePrefix("10.1.1.0/24"),
		Label: 1001, NextHop: a, RouteTargets: rts, Encaps: []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN},
		OriginVN: 100, LocalPref: 200, MED: 10,
	}, {
		Family: VPNv6, RD: NewRD(a, 1), Prefix: netip.MustParsePrefix("2001:db8:1::/64"),
		Label: 1002, NextHop: a, RouteTargets: rts, Encaps: []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN},
		OriginVN: 100, LocalPref: 200, MED: 10,
	}, {
		Family: EVPN, RD: NewRD(a, 2), Prefix: netip.MustParsePrefix("10.5.0.0/24"),
		Label: 5000, NextHop: a, RouteTargets: []RouteTarget{as2RT(64512, 5000)}, Encaps: []packet.Encap{packet.EncapVXLAN},
		OriginVN: 5000, RouterMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}, LocalPref: 200,
	}, {
		// VIPs toward the fabric.
		Family: IPv4Unicast, Prefix: netip.MustParsePrefix("203.0.113.10/32"), NextHop: a, LocalPref: 200, MED: 1,
	}, {
		Family: IPv6Unicast, Prefix: netip.MustParsePrefix("2001:db8:ff::10/128"), NextHop: a, LocalPref: 200, MED: 1,
	}}
}

// ribOf is the reflector's RIB of f; nil for the unicast families, which
// the reflector package does not read back.
func ribOf(rr *bgpd.Daemon, f Family) func() ([]bgpd.RIBEntry, error) {
	switch f {
	case VPNv4:
		return rr.VPNv4
	case VPNv6:
		return rr.VPNv6
	case EVPN:
		return rr.EVPN
	}
	return nil
}

func testReflector(t *testing.T, kind bgpd.Kind) {
	fams := []bgpd.Family{bgpd.VPNv4, bgpd.VPNv6, bgpd.EVPN, bgpd.IPv4Unicast, bgpd.IPv6Unicast}
	if kind == bgpd.BIRD {
		fams = slices.DeleteFunc(fams, func(f bgpd.Family) bool { return f == bgpd.EVPN })
	}
	l := newLab(t, kind, labOpts{nodes: 2, rr: bgpd.Config{Families: fams}})
	cfgA := l.speakerConfig(l.node(0))
	if kind != bgpd.FRR {
		cfgA.TunnelEncap = TunnelEncapAll
	}
	t0 := time.Now()
	A := startSpeaker(t, cfgA)
	B := startSpeaker(t, l.speakerConfig(l.node(1)))
	up := waitAllUp(t, t0, 30*time.Second, A, B)
	t.Logf("%v: Start to Established: A %v, B %v", kind, up[0].Round(time.Millisecond), up[1].Round(time.Millisecond))
	l.rr.WaitEstablished(t, 10*time.Second, l.node(0), l.node(1))
	rec := record(B)
	rec.wait(t, 5*time.Second, "initial table", func() bool { return rec.init })

	for _, want := range testRoutes(l.node(0), t) {
		if kind == bgpd.BIRD && want.Family == EVPN {
			continue // BIRD 2 has no EVPN: the family is not even negotiated
		}
		t.Run(want.Family.String(), func(t *testing.T) {
			k := want.Key()
			if err := A.Announce(want); err != nil {
				t.Fatal(err)
			}
			lat := rec.wait(t, 5*time.Second, "route at B", func() bool { _, ok := rec.table[k]; return ok })
			got, _ := rec.get(k)
			if !got.Equal(want) || got.Peer != l.rrAddr() || got.Stale {
				t.Errorf("B received\n %v\nwant\n %v from %v", got, want, l.rrAddr())
			}
			t.Logf("%v %v: A.Announce to B's event: %v", kind, want.Family, lat.Round(time.Microsecond))
			tlvs := want.Encaps
			if kind == bgpd.FRR && len(tlvs) > 1 {
				// TunnelEncapFirst: FRR 8.4 cannot parse more.
				tlvs = tlvs[:1]
			}
			checkTunnelAttr(t, B, want, tlvs)

			rib := ribOf(l.rr, want.Family)
			if rib == nil {
				rib = func() ([]bgpd.RIBEntry, error) { return nil, nil }
			}
			es, _ := pollRR(t, 5*time.Second, "route in RIB", rib, func(es []bgpd.RIBEntry) bool {
				_, ok := findRIB(es, want.RD.String(), want.Prefix)
				return ok || ribOf(l.rr, want.Family) == nil
			})
			if e, ok := findRIB(es, want.RD.String(), want.Prefix); ok {
				t.Logf("%v RIB: %v; communities %v", kind, e, e.ExtCommunities)
				checkRIBEntry(t, e, want)
			}

			// Announcing the same again sends nothing. A's counter settles
			// first: right after the session came up A may still be
			// sending (End-of-RIB markers), and GoBGP sends asynchronously,
			// so the count is read again after a while.
			sent := settledUpdatesSent(A)
			if err := A.Announce(want); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if n := updatesSent(A); n != sent {
				t.Errorf("re-announcing an unchanged route sent %d UPDATEs", n-sent)
			}

			t1 := time.Now()
			if err := A.Withdraw(want); err != nil {
				t.Fatal(err)
			}
			wB := rec.wait(t, 5*time.Second, "withdrawal at B", func() bool { _, ok := rec.table[k]; return !ok })
			pollRR(t, 5*time.Second, "withdrawal in RIB", rib, func(es []bgpd.RIBEntry) bool {
				_, ok := findRIB(es, want.RD.String(), want.Prefix)
				return !ok
			})
			wRR := time.Since(t1) // an upper bound: it includes the last CLI run
			t.Logf("%v %v: withdrawal seen at B after %v, gone from the reflector's RIB within %v (10 ms polls of its CLI)", kind, want.Family, wB.Round(time.Microsecond), wRR.Round(time.Millisecond))
		})
	}
}

// settledUpdatesSent is updatesSent once it has not changed for 300 ms
// (at most 5 s).
func settledUpdatesSent(s *Speaker) uint64 {
	n := updatesSent(s)
	for deadline, since := time.Now().Add(5*time.Second), time.Now(); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := updatesSent(s); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) >= 300*time.Millisecond {
			break
		}
	}
	return n
}

func updatesSent(s *Speaker) uint64 {
	var n uint64
	for _, p := range s.Peers() {
		n += p.UpdatesSent
	}
	return n
}

func checkRIBEntry(t *testing.T, e bgpd.RIBEntry, want Route) {
	t.Helper()
	if e.Label != want.Label {
		t.Errorf("reflector: label %d, want %d", e.Label, want.Label)
	}
	if e.NextHop != want.NextHop {
		t.Errorf("reflector: next hop %v, want %v", e.NextHop, want.NextHop)
	}
	for _, rt := range want.RouteTargets {
		if !slices.Contains(e.RouteTargets, rt.String()) {
			t.Errorf("reflector: route targets %v lack %v", e.RouteTargets, rt)
		}
	}
	var encaps []int
	for _, en := range want.Encaps {
		encaps = append(encaps, int(tunnelType(en)))
	}
	if got := slices.Sorted(slices.Values(e.Encaps)); !slices.Equal(got, slices.Sorted(slices.Values(encaps))) {
		t.Errorf("reflector: encapsulation communities %v, want %v", e.Encaps, encaps)
	}
	if e.TunnelEncapVisible && !slices.Equal(e.TunnelEncap, encaps) {
		t.Errorf("reflector: tunnel encapsulation attribute %v, want %v", e.TunnelEncap, encaps)
	}
	if want.RouterMAC != nil && e.RouterMAC != want.RouterMAC.String() {
		t.Errorf("reflector: router MAC %q, want %v", e.RouterMAC, want.RouterMAC)
	}
}

// checkTunnelAttr finds in B's GoBGP RIB the RFC 9012 attribute the
// reflector re-advertised, as raw bytes, and holds it byte for byte to
// the attribute RFC 9012 describes for tlvs (the RFCs' tunnel types and
// ports, A's address as egress endpoint): the proof it crossed the
// reflector intact (the decoded Route would look the same with
// communities alone). A reflector that does not know the attribute passes
// it on with the Partial flag set (RFC 4271 5), which is ignored.
func checkTunnelAttr(t *testing.T, s *Speaker, want Route, tlvs []packet.Encap) {
	t.Helper()
	var got [][]byte
	s.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: want.Family.apiFamily(), EnableOnlyBinary: true},
		func(d *api.Destination) {
			for _, p := range d.Paths {
				r, err := routeFromAPI(p)
				if err != nil || r.Key() != want.Key() {
					continue
				}
				for _, a := range p.PattrsBinary {
					if len(a) >= 3 && a[1] == 23 {
						got = append(got, slices.Clone(a))
					}
				}
			}
		})
	if len(tlvs) == 0 {
		if len(got) != 0 {
			t.Errorf("tunnel encapsulation attribute at the receiver %x, want none", got)
		}
		return
	}
	wantAttr := rfc9012Attr(t, want.NextHop, tlvs)
	if len(got) != 1 {
		t.Fatalf("%d tunnel encapsulation attributes at the receiver %x, want one:\n %x", len(got), got, wantAttr)
	}
	a := got[0]
	a[0] &^= 0x20 // Partial
	if !bytes.Equal(a, wantAttr) {
		t.Errorf("tunnel encapsulation attribute at the receiver\n %x\nwant (RFC 9012)\n %x", a, wantAttr)
	}
}
