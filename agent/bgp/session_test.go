package bgp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// TestECMP: three nodes announce the same prefix, each with its own RD; the
// fourth sees three best paths (three keys), one per next hop.
func TestECMP(t *testing.T) {
	testenv.SkipIfShort(t)
	for _, kind := range []bgpd.Kind{bgpd.FRR, bgpd.GoBGPd, bgpd.BIRD} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, kind, labOpts{nodes: 4})
			var ss []*Speaker
			for i := range 4 {
				ss = append(ss, startSpeaker(t, l.speakerConfig(l.node(i))))
			}
			waitAllUp(t, time.Now(), 30*time.Second, ss...)
			D := ss[3]
			rec := record(D)
			vip := netip.MustParsePrefix("10.9.0.0/24")
			for i := range 3 {
				n := l.node(i)
				if err := ss[i].Announce(Route{Family: VPNv4, RD: NewRD(n, 1), Prefix: vip, Label: 100 + uint32(i), NextHop: n,
					RouteTargets: []RouteTarget{as2RT(64512, 100)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}}); err != nil {
					t.Fatal(err)
				}
			}
			rec.wait(t, 10*time.Second, "three paths", func() bool {
				n := 0
				for k := range rec.table {
					if k.Prefix == vip {
						n++
					}
				}
				return n == 3
			})
			got := map[netip.Addr]uint32{}
			for _, r := range D.Received(VPNv4) {
				if r.Prefix == vip {
					got[r.NextHop] = r.Label
				}
			}
			for i := range 3 {
				if got[l.node(i)] != 100+uint32(i) {
					t.Errorf("Received: next hops/labels %v, want %v with label %d", got, l.node(i), 100+i)
				}
			}
			t.Logf("%v: D has %d paths for %v: %v", kind, len(got), vip, got)
		})
	}
}

// TestMD5: the right password establishes; a wrong one, or none where the
// reflector wants one, never does, and PeerStatus says why.
func TestMD5(t *testing.T) {
	testenv.SkipIfShort(t)
	// The reflector wants "s3cret" from all three nodes.
	var o labOpts
	o.nodes = 3
	o.rr.Clients = make([]bgpd.Client, 3)
	l := newLabWith(t, bgpd.FRR, o, func(l *lab, c *bgpd.Config) {
		for i := range c.Clients {
			c.Clients[i] = bgpd.Client{Address: l.node(i), Password: "s3cret"}
		}
	})
	passwords := []string{"s3cret", "wrong", ""}
	var ss []*Speaker
	t0 := time.Now()
	for i, pw := range passwords {
		cfg := l.speakerConfig(l.node(i))
		cfg.Peers[0].Password = pw
		ss = append(ss, startSpeaker(t, cfg))
	}
	up := waitAllUp(t, t0, 30*time.Second, ss[0])
	t.Logf("right password: established after %v", up[0].Round(time.Millisecond))
	// The others never establish (GoBGP and FRR retry every second).
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
		for i, s := range ss[1:] {
			if p := s.Peers()[0]; p.State == StateEstablished {
				t.Fatalf("%q password: established: %v", passwords[i+1], p)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, s := range ss[1:] {
		p := s.Peers()[0]
		t.Logf("%q password: %v", passwords[i+1], p)
		if !strings.Contains(p.LastError, "MD5") {
			t.Errorf("%q password: PeerStatus.LastError %q does not point at TCP MD5", passwords[i+1], p.LastError)
		}
		if p.Flaps != 0 {
			t.Errorf("%q password: %d flaps", passwords[i+1], p.Flaps)
		}
	}
	// Still a working speaker.
	n := l.node(1)
	if err := ss[1].Announce(Route{Family: VPNv4, RD: NewRD(n, 1), Prefix: netip.MustParsePrefix("10.8.0.0/24"), Label: 16, NextHop: n}); err != nil {
		t.Errorf("Announce on the unauthenticated speaker: %v", err)
	}
	if p := ss[0].Peers()[0]; p.State != StateEstablished {
		t.Errorf("right password: %v", p)
	}
}

// TestMD5RefusesMPTCP: a listener that cannot take MD5 keys (Go's MPTCP
// default) fails Start instead of running unprotected. The internal hop is
// locked with a key before any peer's is set, so either may be the one
// named.
func TestMD5RefusesMPTCP(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err != nil || strings.TrimSpace(string(b)) != "1" {
		// Without MPTCP Go falls back to TCP and MD5 works: nothing to refuse.
		testenv.Unavailable(t, "a kernel with MPTCP enabled (net.mptcp.enabled=1)")
	}
	t.Setenv("GODEBUG", "multipathtcp=2") // Go 1.24's default: MPTCP listeners
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s, err := Start(context.Background(), Config{
		RouterID: netip.MustParseAddr("192.0.2.1"), ASN: testASN,
		ListenPort: port, ListenAddresses: []string{"127.0.0.1"},
		Peers:  []Peer{{Address: netip.MustParseAddr("127.0.0.9"), Password: "x", Passive: true}},
		Logger: testLogger(t, "mptcp"),
	})
	if err == nil {
		s.Stop()
		t.Fatal("Start with an MPTCP listener and a password: no error")
	}
	if !strings.Contains(err.Error(), "multipathtcp=0") || !(strings.Contains(err.Error(), "peers[0]") || strings.Contains(err.Error(), "hop ")) {
		t.Errorf("error does not say what to do: %v", err)
	}
	t.Log(err)
}

// TestUpdatePeers: peers come and go without restarting the speaker, and
// an unchanged peer keeps its session.
func TestUpdatePeers(t *testing.T) {
	testenv.SkipIfShort(t)
	l := newLab(t, bgpd.FRR, labOpts{nodes: 1})
	cfg := l.speakerConfig(l.node(0))
	want := cfg.Peers
	cfg.Peers = nil
	s := startSpeaker(t, cfg)
	if ps := s.Peers(); len(ps) != 0 {
		t.Fatalf("peers before UpdatePeers: %v", ps)
	}
	if err := s.UpdatePeers(want); err != nil {
		t.Fatal(err)
	}
	waitUp(t, s, 30*time.Second)
	up := s.Peers()[0].Uptime
	// The same again: nothing changes.
	if err := s.UpdatePeers(want); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if p := s.Peers()[0]; p.State != StateEstablished || p.Uptime < up {
		t.Errorf("unchanged peer was reset: %v", p)
	}
	// A bad one is refused, naming the field.
	bad := append([]Peer{}, want...)
	bad = append(bad, Peer{Address: want[0].Address})
	if err := s.UpdatePeers(bad); err == nil || !strings.Contains(err.Error(), "peers[1]") {
		t.Errorf("duplicate peer: %v", err)
	}
	if err := s.UpdatePeers(nil); err != nil {
		t.Fatal(err)
	}
	if ps := s.Peers(); len(ps) != 0 {
		t.Errorf("peers after removing all: %v", ps)
	}
	if _, err := Start(context.Background(), Config{RouterID: netip.MustParseAddr("192.0.2.1"), ASN: 1, Peers: []Peer{{Address: netip.MustParseAddr("192.0.2.2"), HoldTime: time.Second}}}); err == nil || !(strings.Contains(err.Error(), "peers[0]") || strings.Contains(err.Error(), "hop ")) || !strings.Contains(err.Error(), "hold time") {
		t.Errorf("Start with a 1 s hold time: %v", err)
	}
}
