package bgp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/bgpguard"
	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/packet"
)

// fakePeer is a minimal BGP speaker written for the test: it accepts the
// speaker's connection, exchanges OPEN and KEEPALIVE, then sends whatever
// bytes the test gives it.
type fakePeer struct {
	t    *testing.T
	ln   net.Listener
	addr netip.Addr
	conn net.Conn
	// notifications are the NOTIFICATION bodies the speaker sent.
	notifications chan []byte
}

func newFakePeer(t *testing.T, addr netip.Addr) *fakePeer {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakePeer{t: t, ln: ln, addr: addr, notifications: make(chan []byte, 16)}
}

func (f *fakePeer) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func readMsg(c net.Conn) (byte, []byte, error) {
	h := make([]byte, 19)
	if _, err := io.ReadFull(c, h); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[16:18]))
	if n < 19 {
		return 0, nil, fmt.Errorf("bad length %d", n)
	}
	body := make([]byte, n-19)
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, nil, err
	}
	return h[18], body, nil
}

// accept waits for the speaker and brings the session to Established.
func (f *fakePeer) accept(timeout time.Duration) {
	f.t.Helper()
	if f.conn != nil {
		f.conn.Close()
	}
	f.ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
	c, err := f.ln.Accept()
	if err != nil {
		f.t.Fatalf("fake peer: accept: %v", err)
	}
	f.conn = c
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if typ, _, err := readMsg(c); err != nil || typ != bgp.BGP_MSG_OPEN {
		f.t.Fatalf("fake peer: want OPEN, got type %d, %v", typ, err)
	}
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN),
		bgp.NewCapMultiProtocol(bgp.RF_IPv6_VPN),
		bgp.NewCapMultiProtocol(bgp.RF_EVPN),
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapFourOctetASNumber(testASN),
	}
	open := bgp.NewBGPOpenMessage(testASN, 90, f.addr.String(), []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	f.sendMsg(open)
	f.sendMsg(bgp.NewBGPKeepAliveMessage())
	for {
		typ, _, err := readMsg(c)
		if err != nil {
			f.t.Fatalf("fake peer: waiting for KEEPALIVE: %v", err)
		}
		if typ == bgp.BGP_MSG_KEEPALIVE {
			break
		}
	}
	c.SetDeadline(time.Time{})
	// Drain what the speaker sends (keepalives, End-of-RIB) from now on,
	// keeping the NOTIFICATIONs.
	go func() {
		for {
			typ, body, err := readMsg(c)
			if err != nil {
				return
			}
			if typ == bgp.BGP_MSG_NOTIFICATION {
				select {
				case f.notifications <- body:
				default:
				}
			}
		}
	}()
}

func (f *fakePeer) sendMsg(m *bgp.BGPMessage) {
	f.t.Helper()
	b, err := m.Serialize()
	if err != nil {
		f.t.Fatal(err)
	}
	f.send(b)
}

func (f *fakePeer) send(b []byte) {
	f.t.Helper()
	if _, err := f.conn.Write(b); err != nil {
		f.t.Logf("fake peer: write: %v", err)
	}
}

// rawUpdate frames an UPDATE from raw path attribute bytes and IPv4 NLRI.
func rawUpdate(attrs, nlri []byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, 0) // no withdrawn routes
	body = binary.BigEndian.AppendUint16(body, uint16(len(attrs)))
	body = append(body, attrs...)
	body = append(body, nlri...)
	return frame(bgp.BGP_MSG_UPDATE, body)
}

func frame(typ byte, body []byte) []byte {
	b := make([]byte, 19, 19+len(body))
	for i := range 16 {
		b[i] = 0xff
	}
	binary.BigEndian.PutUint16(b[16:], uint16(19+len(body)))
	b[18] = typ
	return append(b, body...)
}

// rawAttr encodes one path attribute (flags given, length as given by
// value unless lenOverride >= 0).
func rawAttr(fl bgp.BGPAttrFlag, typ byte, value []byte, lenOverride int) []byte {
	flags := byte(fl)
	n := len(value)
	if lenOverride >= 0 {
		n = lenOverride
	}
	if n > 255 {
		flags |= byte(bgp.BGP_ATTR_FLAG_EXTENDED_LENGTH)
		return append(binary.BigEndian.AppendUint16([]byte{flags, typ}, uint16(n)), value...)
	}
	return append([]byte{flags, typ, byte(n)}, value...)
}

func serialize(t *testing.T, as ...bgp.PathAttributeInterface) []byte {
	var b []byte
	for _, a := range as {
		s, err := a.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, s...)
	}
	return b
}

// vpnAttrs is the valid attribute list announcing r, minus ORIGIN; the
// tests put a good or a broken ORIGIN in front.
func vpnAttrs(t *testing.T, r Route) (origin, rest []byte) {
	attrs, err := r.attributes(encoding{asn: testASN, tunnelEncap: TunnelEncapAll})
	if err != nil {
		t.Fatal(err)
	}
	attrs = append(attrs[1:], bgp.NewPathAttributeAsPath(nil),
		bgp.NewPathAttributeMpReachNLRI(r.NextHop.String(), []bgp.AddrPrefixInterface{r.nlri()}))
	if r.LocalPref == 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(100))
	}
	return serialize(t, bgp.NewPathAttributeOrigin(0)), serialize(t, attrs...)
}

// TestMalformedUpdates: a peer that sends garbage cannot crash the speaker
// or get a bogus route to a subscriber; PeerStatus counts what it refused.
// Each case's outcome is stated as the speaker behaves today (GoBGP
// v3.37.0's RFC 7606 handling behind the guard): the session kept (a
// probe on it gets through) or reset with a given NOTIFICATION, and the
// UPDATE's route absent, withdrawn or installed without the attribute
// that was discarded.
func TestMalformedUpdates(t *testing.T) {
	testenv.SkipIfShort(t)
	self(t)
	local, remote := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	fake := newFakePeer(t, remote)
	s := startSpeaker(t, Config{
		RouterID: local, ASN: testASN, ListenPort: -1,
		Peers:  []Peer{{Address: remote, Port: fake.port(), LocalAddress: local, ConnectRetry: time.Second}},
		Logger: testLogger(t, "S"),
	})
	rec := record(s)
	fake.accept(15 * time.Second)

	route := func(i int) Route {
		return Route{Family: VPNv4, RD: NewRD(remote, 1), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, byte(i), 0}), 24),
			Label: 100 + uint32(i), NextHop: remote, RouteTargets: []RouteTarget{as2RT(64512, 100)},
			Encaps: []packet.Encap{packet.EncapMPLSoUDP}, OriginVN: 7, LocalPref: 100}
	}
	sent := map[Key]Route{}
	announce := func(r Route) {
		origin, rest := vpnAttrs(t, r)
		sent[r.Key()] = r
		fake.send(rawUpdate(append(origin, rest...), nil))
	}
	probes := 0
	// probe sends a valid route and waits for it: the UPDATEs before it
	// have been processed.
	probe := func(what string) {
		t.Helper()
		probes++
		r := route(100 + probes)
		announce(r)
		rec.wait(t, 15*time.Second, "probe after "+what, func() bool { _, ok := rec.table[r.Key()]; return ok })
	}

	r1 := route(1)
	announce(r1)
	rec.wait(t, 10*time.Second, "a valid route", func() bool { _, ok := rec.table[r1.Key()]; return ok })

	peerState := func() PeerStatus { return s.Peers()[0] }
	// What happens to the route an UPDATE carries.
	type effect int
	const (
		absent    effect = iota // it never arrives
		withdrawn               // it was installed and is withdrawn (treat-as-withdraw)
		installed               // it arrives without the broken optional attribute (attribute discard)
	)
	cases := []struct {
		name  string
		build func() []byte
		// reset: the guard refuses the UPDATE with a NOTIFICATION of
		// this code and subcode, and the session is reset; otherwise
		// the session is kept and a probe on it gets through.
		reset         bool
		code, subcode byte
		input         string // in LastInputError (kept) or LastError (reset)
		route         Route  // the route the UPDATE names; zero: none
		effect        effect
		// counted: the RFC 7606 counter the case adds to (none for a
		// family disabled).
		counted bgpguard.Action
	}{
		{name: "ORIGIN of length 2 (attribute length error)", build: func() []byte {
			_, rest := vpnAttrs(t, route(2))
			return rawUpdate(append(rawAttr(bgp.BGP_ATTR_FLAG_TRANSITIVE, 1, []byte{0, 0}, -1), rest...), nil)
		}, input: "treated as withdraw: Origin attribute length is incorrect", route: route(2), effect: absent, counted: bgpguard.TreatAsWithdraw},
		{name: "extended communities of length 7", build: func() []byte {
			origin, rest := vpnAttrs(t, route(3))
			return rawUpdate(append(append(origin, rest...), rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 16, make([]byte, 7), -1)...), nil)
		}, input: "treated as withdraw: extendedcommunities length isn't correct", route: route(3), effect: absent, counted: bgpguard.TreatAsWithdraw},
		{name: "the valid route again, with a broken ORIGIN", build: func() []byte {
			_, rest := vpnAttrs(t, r1)
			return rawUpdate(append(rawAttr(bgp.BGP_ATTR_FLAG_TRANSITIVE, 1, []byte{7}, -1), rest...), nil)
		}, input: "treated as withdraw: invalid origin attribute. value : 7", route: r1, effect: withdrawn, counted: bgpguard.TreatAsWithdraw},
		{name: "tunnel encapsulation TLV longer than the attribute", build: func() []byte {
			r := route(4)
			r.Encaps = nil // no encapsulation community: the broken attribute is the only one
			origin, rest := vpnAttrs(t, r)
			tlv := []byte{0, 13, 0, 40, 6, 10, 0, 0, 0, 0, 0, 1, 127, 0, 0, 3}
			return rawUpdate(append(append(origin, rest...), rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 23, tlv, -1)...), nil)
		}, input: "attributes discarded: Not all TunnelEncapTLV bytes available",
			route: func() Route { r := route(4); r.Encaps = nil; return r }(), effect: installed, counted: bgpguard.AttributeDiscard},
		{name: "MP_REACH of an unknown AFI/SAFI", build: func() []byte {
			origin, _ := vpnAttrs(t, route(5))
			mp := []byte{0x42, 0x42, 0x42, 4, 127, 0, 0, 3, 0, 24, 10, 0, 0}
			rest := serialize(t, bgp.NewPathAttributeAsPath(nil), bgp.NewPathAttributeLocalPref(100))
			return rawUpdate(append(append(origin, rest...), rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL, 14, mp, -1)...), nil)
		}, input: "family disabled after a malformed UPDATE: unknown route family. AFI: 16962, SAFI: 66", effect: absent},
		{name: "IPv4 NLRI of /40", build: func() []byte {
			origin, _ := vpnAttrs(t, route(6))
			attrs := append(origin, serialize(t, bgp.NewPathAttributeAsPath(nil), bgp.NewPathAttributeNextHop("127.0.0.3"), bgp.NewPathAttributeLocalPref(100))...)
			return rawUpdate(attrs, []byte{40, 10, 0, 0, 0, 0})
		}, reset: true, code: bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, subcode: bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			input:  "refused by the BGP guard, session reset: notification sent: code 3(update) subcode 10(invalid network field): NLRI: NLRI 0 (280a00000000): prefix length 40 beyond 32 bits",
			effect: absent, counted: bgpguard.Reset},
		{name: "attribute length beyond the message", build: func() []byte {
			origin, rest := vpnAttrs(t, route(8))
			return rawUpdate(append(append(origin, rest...), rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 16, make([]byte, 8), 200)...), nil)
		}, input: "treated as withdraw: attribute value length is short", route: route(8), effect: absent, counted: bgpguard.TreatAsWithdraw},
		{name: "an attribute overrunning the attribute field into the NLRI (RFC 7606 4: the guard treats it as withdraw)", build: func() []byte {
			// The route announced, then the same route with a large
			// community claiming the 4 bytes of NLRI after it.
			origin, rest := vpnAttrs(t, route(9))
			valid := rawUpdate(append(origin, rest...), nil)
			sent[route(9).Key()] = route(9)
			bad := append(append(append([]byte{}, origin...), rest...), rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 32, make([]byte, 12), 16)...)
			return append(valid, rawUpdate(bad, []byte{24, 10, 99, 0})...)
		}, input: "treated as withdraw by the BGP guard: path attribute 6 (type 32, 16 bytes) overruns the path attributes field", route: route(9), effect: absent, counted: bgpguard.TreatAsWithdraw},
		{name: "a PREFIX_SID with a TLV past its end (RFC 8669: the guard discards it)", build: func() []byte {
			origin, rest := vpnAttrs(t, route(10))
			return rawUpdate(append(append(origin, rest...), 0xc0, 40, 6, 6, 0, 0, 0xc1, 0, 0), nil)
		}, input: "attributes discarded by the BGP guard: malformed PREFIX_SID discarded", route: route(10), effect: installed, counted: bgpguard.AttributeDiscard},
		{name: "message length field shorter than the header", build: func() []byte {
			b := frame(bgp.BGP_MSG_UPDATE, []byte{0, 0, 0, 0})
			binary.BigEndian.PutUint16(b[16:], 10)
			return b
		}, reset: true, code: bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, subcode: bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH,
			input:  "refused by the BGP guard, session reset: notification sent: code 1(header) subcode 2(bad message length): message header: length 10 outside 19..4096",
			effect: absent, counted: bgpguard.Reset},
	}
	for _, c := range cases {
		before := peerState()
		wasInstalled := false
		if c.route.Prefix.IsValid() {
			_, wasInstalled = rec.get(c.route.Key())
		}
		fake.send(c.build())
		if c.reset {
			select {
			case n := <-fake.notifications:
				if len(n) < 2 || n[0] != c.code || n[1] != c.subcode {
					t.Errorf("%s: NOTIFICATION %x, want code %d subcode %d", c.name, n, c.code, c.subcode)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no NOTIFICATION within 10s: the session was kept (%v), want a reset", c.name, peerState())
			}
			// The speaker comes back on its own.
			fake.accept(20 * time.Second)
		} else {
			for deadline := time.Now().Add(10 * time.Second); peerState().MalformedUpdates == before.MalformedUpdates; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not counted as malformed within 10s: %v", c.name, peerState())
				}
			}
		}
		// A probe on the (kept or new) session: everything before it was
		// processed. On a session that was reset unasked, it never arrives.
		probe(c.name)
		select {
		case n := <-fake.notifications:
			t.Errorf("%s: NOTIFICATION %x, want the session kept", c.name, n)
		default:
		}
		p := peerState()
		if p.State != StateEstablished {
			t.Errorf("%s: session %s after the probe", c.name, p.State)
		}
		got := p.LastInputError
		if c.reset {
			got = p.LastError
		}
		if !strings.Contains(got, c.input) {
			t.Errorf("%s: PeerStatus says %q, want %q", c.name, got, c.input)
		}
		if p.MalformedUpdates <= before.MalformedUpdates {
			t.Errorf("%s: malformed updates %d -> %d, want it counted", c.name, before.MalformedUpdates, p.MalformedUpdates)
		}
		counters := func(p PeerStatus) [3]uint64 {
			return [3]uint64{p.TreatAsWithdraw, p.AttributeDiscards, p.MalformedResets}
		}
		wantDelta := [3]uint64{}
		if c.counted != 0 {
			wantDelta[c.counted-1] = 1
		}
		if a, b := counters(before), counters(p); [3]uint64{b[0] - a[0], b[1] - a[1], b[2] - a[2]} != wantDelta {
			t.Errorf("%s: treat-as-withdraw/discard/reset counters %v -> %v, want +%v", c.name, a, b, wantDelta)
		}
		if !c.route.Prefix.IsValid() {
			continue
		}
		r, ok := rec.get(c.route.Key())
		switch c.effect {
		case absent:
			if ok {
				t.Errorf("%s: %s was installed: %v", c.name, c.route.Prefix, r)
			}
		case withdrawn:
			if !wasInstalled {
				t.Errorf("%s: %s was not installed before the case", c.name, c.route.Prefix)
			}
			if ok {
				t.Errorf("%s: the re-announced route kept its old attributes: %v", c.name, r)
			}
			delete(sent, c.route.Key())
		case installed:
			if !ok {
				t.Errorf("%s: %s never arrived (want it without the broken attribute)", c.name, c.route.Prefix)
			} else if !r.Equal(c.route) {
				t.Errorf("%s: delivered\n %v\nwant\n %v", c.name, r, c.route)
			}
			sent[c.route.Key()] = c.route
		}
	}

	// Nothing bogus: every route delivered is one the fake peer sent,
	// attribute for attribute.
	for _, e := range rec.eventsSince(time.Time{}) {
		if e.Kind != RouteAdded {
			continue
		}
		want, ok := sent[e.Route.Key()]
		if !ok {
			if e.Route.Key() == r1.Key() {
				continue // delivered before it was broken
			}
			t.Errorf("delivered a route nobody sent: %v", e.Route)
			continue
		}
		if !e.Route.Equal(want) {
			t.Errorf("delivered\n %v\nsent\n %v", e.Route, want)
		}
	}
	p := peerState()
	t.Logf("after the garbage: %v", p)
	if p.MalformedUpdates == 0 || !strings.Contains(p.LastInputError, "malformed") {
		t.Errorf("PeerStatus did not record the malformed updates: %v", p)
	}
}

// shortVPNPrefixUpdate is the UPDATE that kills GoBGP v3.37.0: AFI 1 SAFI
// 128, next hop RD+IPv4, then a labelled VPN prefix claiming 112 bits of
// which 5 bytes are there: label, then 2 bytes where the 8-byte RD should
// be.
func shortVPNPrefixUpdate(t *testing.T, nh netip.Addr) []byte {
	origin, _ := vpnAttrs(t, Route{Family: VPNv4, RD: NewRD(nh, 1), Prefix: netip.MustParsePrefix("10.7.9.0/24"), Label: 16, NextHop: nh})
	a := nh.As4()
	mp := []byte{0, 1, 128, 12, 0, 0, 0, 0, 0, 0, 0, 0, a[0], a[1], a[2], a[3], 0, 112, 0, 6, 0x41, 0, 1}
	attrs := append(origin, serialize(t, bgp.NewPathAttributeAsPath(nil), bgp.NewPathAttributeLocalPref(100))...)
	return rawUpdate(append(attrs, rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL, 14, mp, -1)...), nil)
}

// TestGoBGPPanicsOnShortVPNPrefix documents a crash of GoBGP v3.37.0 that
// no caller can catch: a labelled VPN prefix with fewer than 8 bytes left
// for its RD makes bgp.GetRouteDistinguisher slice out of range in the
// session's receive goroutine, which kills the whole process. It runs
// GoBGP alone (no guard) in a child process and expects it to die; when
// GoBGP is fixed the test fails, and the guard's rule for it can go.
// TestGuardSurvivesShortVPNPrefix sends the speaker the same bytes.
func TestGoBGPPanicsOnShortVPNPrefix(t *testing.T) {
	testenv.SkipIfShort(t)
	self(t)
	local, remote := netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5")
	fake := newFakePeer(t, remote)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(childSpec{RawGoBGP: true, Config: Config{
		RouterID: local, ASN: testASN, ListenPort: -1,
		Peers: []Peer{{Address: remote, Port: fake.port(), LocalAddress: local, ConnectRetry: time.Second}},
	}})
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+string(spec))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("the child's output:\n%s", stderr.String())
		}
	})
	fake.accept(15 * time.Second)

	fake.send(shortVPNPrefixUpdate(t, remote))

	select {
	case err := <-done:
		if !strings.Contains(stderr.String(), "GetRouteDistinguisher") {
			t.Fatalf("the child died (%v), but not of the known GoBGP bug:\n%s", err, stderr.String())
		}
		t.Logf("known GoBGP v3.37.0 bug reproduced: the speaker process died (%v) of a panic in bgp.GetRouteDistinguisher on a 5-byte VPN prefix", err)
	case <-time.After(5 * time.Second):
		t.Errorf("the speaker survived a VPN prefix too short for its RD: GoBGP is fixed, move this case into TestMalformedUpdates")
	}
}

// TestGuardSurvivesShortVPNPrefix: the bytes that kill GoBGP alone (see
// TestGoBGPPanicsOnShortVPNPrefix) reach a speaker from a fake peer while
// it also peers with a real reflector. The process lives on (it is this
// test's), the peer gets a NOTIFICATION, PeerStatus names the refused
// UPDATE, the fake peer's session comes back by itself, and routes
// through the reflector keep flowing, its session untouched.
func TestGuardSurvivesShortVPNPrefix(t *testing.T) {
	testenv.SkipIfShort(t)
	l := newLab(t, bgpd.FRR, labOpts{nodes: 2})
	local, remote := netip.MustParseAddr("127.0.0.6"), netip.MustParseAddr("127.0.0.7")
	fake := newFakePeer(t, remote)
	cfg := l.speakerConfig(l.node(0))
	cfg.Peers = append(cfg.Peers, Peer{Address: remote, Port: fake.port(), LocalAddress: local, ConnectRetry: time.Second})
	S := startSpeaker(t, cfg)
	A := startSpeaker(t, l.speakerConfig(l.node(1)))
	rec := record(S)
	fake.accept(15 * time.Second)
	waitAllUp(t, time.Now(), 30*time.Second, S, A)
	// GoBGP sees the sessions on loopback, but takes (for next hop self
	// toward eBGP peers, for its checks, in ListPeer) the real local
	// addresses.
	S.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		if la := p.Transport.GetLocalAddress(); la != local.String() && la != l.node(0).String() {
			t.Errorf("GoBGP's local address for %s: %q", p.Conf.GetNeighborAddress(), la)
		}
	})
	peer := func(a netip.Addr) PeerStatus {
		for _, p := range S.Peers() {
			if p.Address == a {
				return p
			}
		}
		t.Fatalf("no peer %v in %v", a, S.Peers())
		return PeerStatus{}
	}
	viaRR := func(i int) Route {
		n := l.node(1)
		return Route{Family: VPNv4, RD: NewRD(n, 1), Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 20, byte(i), 0}), 24), Label: 200 + uint32(i), NextHop: n,
			RouteTargets: []RouteTarget{as2RT(64512, 100)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}}
	}
	fromFake := Route{Family: VPNv4, RD: NewRD(remote, 1), Prefix: netip.MustParsePrefix("10.21.0.0/24"), Label: 300, NextHop: remote,
		RouteTargets: []RouteTarget{as2RT(64512, 100)}, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, LocalPref: 100}
	announceFake := func() {
		origin, rest := vpnAttrs(t, fromFake)
		fake.send(rawUpdate(append(origin, rest...), nil))
	}
	has := func(k Key) func() bool { return func() bool { _, ok := rec.table[k]; return ok } }

	r0 := viaRR(0)
	if err := A.Announce(r0); err != nil {
		t.Fatal(err)
	}
	announceFake()
	rec.wait(t, 10*time.Second, "the reflector's route", has(r0.Key()))
	rec.wait(t, 10*time.Second, "the fake peer's route", has(fromFake.Key()))
	rrBefore := peer(l.rrAddr())

	tBad := time.Now()
	fake.send(shortVPNPrefixUpdate(t, remote))
	select {
	case n := <-fake.notifications:
		if len(n) < 2 || n[0] != bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR || n[1] != bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD {
			t.Errorf("NOTIFICATION %x, want code 3 (UPDATE message error) subcode 10 (invalid network field)", n)
		}
		t.Logf("the fake peer got NOTIFICATION %v after %v", bgp.NewNotificationErrorCode(n[0], n[1]), time.Since(tBad).Round(time.Microsecond))
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFICATION to the peer that sent the short VPN prefix")
	}
	p := peer(remote)
	t.Logf("the fake peer: %v", p)
	if p.MalformedUpdates != 1 || !strings.Contains(p.LastInputError, "route distinguisher") || !strings.Contains(p.LastError, "refused by the BGP guard") {
		t.Errorf("PeerStatus does not name the refused UPDATE: %v", p)
	}
	// The fake peer's routes go with its session (a NOTIFICATION: no
	// graceful restart); the reflector's stay, and new ones arrive.
	rec.wait(t, 5*time.Second, "the fake peer's route withdrawn", func() bool { return !has(fromFake.Key())() })
	r1 := viaRR(1)
	t1 := time.Now()
	if err := A.Announce(r1); err != nil {
		t.Fatal(err)
	}
	d := rec.wait(t, 5*time.Second, "a new route through the reflector while the fake peer is down", has(r1.Key()))
	t.Logf("a route through the reflector, announced %v after the refusal, arrived in %v", t1.Sub(tBad).Round(time.Millisecond), d.Round(time.Microsecond))
	if _, ok := rec.get(r0.Key()); !ok {
		t.Error("the reflector's first route went away")
	}

	fake.accept(20 * time.Second)
	t.Logf("the fake peer's session came back %v after the refusal", time.Since(tBad).Round(time.Millisecond))
	announceFake()
	rec.wait(t, 10*time.Second, "the fake peer's route again", has(fromFake.Key()))
	rr := peer(l.rrAddr())
	if rr.State != StateEstablished || rr.Flaps != rrBefore.Flaps || rr.Uptime < time.Since(tBad) {
		t.Errorf("the reflector's session was disturbed: before %v, now %v", rrBefore, rr)
	}
	if p := peer(remote); p.State != StateEstablished {
		t.Errorf("the fake peer: %v", p)
	}
}

// TestHopLocked (issue 9, finding 6): GoBGP's loopback hop takes no
// connection but the relays': every message of the guard's panic corpus,
// sent straight to it from another local socket (from 127.0.0.1 and from
// the peer's own hop name), never gets past the handshake, and the
// speaker and its session stay up.
func TestHopLocked(t *testing.T) {
	testenv.SkipIfShort(t)
	self(t)
	local, remote := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	fake := newFakePeer(t, remote)
	s := startSpeaker(t, Config{
		RouterID: local, ASN: testASN, ListenPort: -1,
		Peers:  []Peer{{Address: remote, Port: fake.port(), LocalAddress: local, ConnectRetry: time.Second}},
		Logger: testLogger(t, "S"),
	})
	fake.accept(15 * time.Second)
	corpus, err := os.ReadFile("../../internal/bgpguard/testdata/gobgp-panics.txt")
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for _, l := range strings.Split(string(corpus), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || strings.HasPrefix(l, "#") {
			continue
		}
		body, err := hex.DecodeString(f[2])
		if err != nil {
			t.Fatal(err)
		}
		typ, _ := strconv.Atoi(f[0])
		msgs = append(msgs, frame(byte(typ), body))
	}
	var wg sync.WaitGroup
	var accepted atomic.Int32
	for i, m := range msgs {
		for _, src := range []string{"127.0.0.1", "127.66.0.2"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				c, err := d.Dial("tcp4", s.hop.Addr.String())
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Write(m)
				c.Close()
				t.Errorf("message %d: a connection from %s straight to GoBGP's hop %v was accepted", i, src, s.hop.Addr)
			}()
		}
	}
	wg.Wait()
	t.Logf("%d connections straight to the hop, %d completed", 2*len(msgs), accepted.Load())
	if p := s.Peers()[0]; p.State != StateEstablished {
		t.Errorf("session %v after the attempts", p)
	}
}
