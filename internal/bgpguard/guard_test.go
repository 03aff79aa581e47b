package bgpguard

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpReceive runs, in this goroutine and under recover, what GoBGP
// v3.37.0 does with a message it receives on an established session
// (fsm.go recvMessageWithError, table.ProcessMessage) and then with the
// paths (the API marshalling that ListPath and WatchEvent do, this
// package's decoding): it returns where it panicked, or "".
func gobgpReceive(typ uint8, body []byte, rfs map[bgp.RouteFamily]bgp.BGPAddPathMode, opt *bgp.MarshallingOption) (site string) {
	stage := "parse"
	defer func() {
		if r := recover(); r != nil {
			site = fmt.Sprintf("[%s] %v @ %s", stage, r, gobgpFrames())
		}
	}()
	var opts []*bgp.MarshallingOption
	if opt != nil {
		opts = append(opts, opt)
	}
	hd := &bgp.BGPHeader{Type: typ, Len: uint16(19 + len(body))}
	m, err := bgp.ParseBGPBody(hd, body, opts...)
	if m == nil {
		return ""
	}
	stage = "validate"
	bgp.ValidateBGPMessage(m)
	switch b := m.Body.(type) {
	case *bgp.BGPUpdate:
		if err != nil {
			me, ok := err.(*bgp.MessageError)
			if !ok {
				return ""
			}
			switch me.ErrorHandling {
			case bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW:
				stage = "treat-as-withdraw"
				b = bgp.TreatAsWithdraw(b)
			case bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD:
			default:
				return ""
			}
		}
		stage = "validate"
		if ok, err := bgp.ValidateUpdateMsg(b, rfs, false, false, true); !ok {
			me, isME := err.(*bgp.MessageError)
			if !isME || me.ErrorHandling != bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW {
				return ""
			}
			stage = "treat-as-withdraw"
			b = bgp.TreatAsWithdraw(b)
		}
		var nlris []bgp.AddrPrefixInterface
		var attrs []bgp.PathAttributeInterface
		for _, a := range b.PathAttributes {
			stage = "attribute " + a.GetType().String()
			a.Serialize() // table.ProcessMessage hashes them
			_ = a.String()
			apiutil.MarshalPathAttributes([]bgp.PathAttributeInterface{a})
			switch v := a.(type) {
			case *bgp.PathAttributeMpReachNLRI:
				for _, n := range v.Value {
					stage = "ProcessMessage MP_REACH rebuild"
					x := bgp.NewPathAttributeMpReachNLRI(v.Nexthop.String(), []bgp.AddrPrefixInterface{n})
					x.Serialize()
				}
				nlris = append(nlris, v.Value...)
			case *bgp.PathAttributeMpUnreachNLRI:
				nlris = append(nlris, v.Value...)
			default:
				attrs = append(attrs, a)
			}
		}
		for _, n := range b.NLRI {
			nlris = append(nlris, n)
		}
		for _, n := range b.WithdrawnRoutes {
			nlris = append(nlris, n)
		}
		for _, n := range nlris {
			stage = "NLRI"
			_ = n.String()
			n.Serialize()
			apiutil.MarshalNLRI(n)
			stage = "API path"
			for _, w := range []bool{false, true} {
				if p, err := apiutil.NewPath(n, w, b.PathAttributes, time.Time{}); err == nil {
					// What a consumer of the path (the agent's codec)
					// has GoBGP decode.
					stage = "GetNativeNlri"
					apiutil.GetNativeNlri(p)
					stage = "GetNativePathAttributes"
					apiutil.GetNativePathAttributes(p)
				}
			}
		}
		stage = "end-of-rib"
		b.IsEndOfRib()
	case *bgp.BGPOpen:
		stage = "open"
		bgp.ValidateOpenMsg(b, 0, 1, []byte{1, 2, 3, 4})
		for _, p := range b.OptParams {
			if c, ok := p.(*bgp.OptionParameterCapability); ok {
				for _, cp := range c.Capability {
					cp.Serialize()
					apiutil.MarshalCapabilities([]bgp.ParameterCapabilityInterface{cp})
					// open2Cap's type assertions.
					switch cp.Code() {
					case bgp.BGP_CAP_ADD_PATH:
						_ = cp.(*bgp.CapAddPath).Tuples
					case bgp.BGP_CAP_MULTIPROTOCOL:
						_ = cp.(*bgp.CapMultiProtocol).CapValue
					case bgp.BGP_CAP_GRACEFUL_RESTART:
						_ = cp.(*bgp.CapGracefulRestart).Tuples
					case bgp.BGP_CAP_LONG_LIVED_GRACEFUL_RESTART:
						_ = cp.(*bgp.CapLongLivedGracefulRestart).Tuples
					}
				}
			}
		}
	}
	return ""
}

func gobgpFrames() string {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(4, pcs)
	fr := runtime.CallersFrames(pcs[:n])
	var sites []string
	for len(sites) < 3 {
		f, more := fr.Next()
		if strings.Contains(f.File, "gobgp") {
			sites = append(sites, fmt.Sprintf("%s:%d", f.File[strings.LastIndex(f.File, "/")+1:], f.Line))
		}
		if !more {
			break
		}
	}
	return strings.Join(sites, " < ")
}

// Sessions the guard is tested on: Weft's (five families, no ADD-PATH),
// and one with every family the guard knows, all with ADD-PATH.
func weftCaps() *sessionCaps {
	s := &sessionCaps{families: map[bgp.RouteFamily]bool{}}
	for _, f := range []bgp.RouteFamily{bgp.RF_IPv4_VPN, bgp.RF_IPv6_VPN, bgp.RF_EVPN, bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		s.families[f] = false
	}
	return s
}

func wideCaps() *sessionCaps {
	s := &sessionCaps{families: map[bgp.RouteFamily]bool{}, addPath: &bgp.MarshallingOption{AddPath: map[bgp.RouteFamily]bgp.BGPAddPathMode{}}}
	for f := range nlriKinds {
		s.families[f] = true
		s.addPath.AddPath[f] = bgp.BGP_ADD_PATH_RECEIVE
	}
	return s
}

func (s *sessionCaps) rfs() map[bgp.RouteFamily]bgp.BGPAddPathMode {
	m := make(map[bgp.RouteFamily]bgp.BGPAddPathMode)
	for f := range s.families {
		m[f] = bgp.BGP_ADD_PATH_NONE
	}
	return m
}

// guardRules is the guard without its canary: the rules alone.
func guardRules(s *sessionCaps, msg []byte) (out []byte, gerr *guardError) {
	if len(msg) < 19 {
		return nil, refuse(1, 2, nil, "short")
	}
	if gerr := checkHeader(msg[:19], s.maxLen()); gerr != nil {
		return nil, gerr
	}
	msg = bytes.Clone(msg)
	if msg[18] != bgp.BGP_MSG_UPDATE {
		return msg, nil
	}
	if _, gerr := s.checkUpdate(msg[19:]); gerr != nil {
		return nil, gerr
	}
	return msg, nil
}

// guardAll is the guard as the relay runs it: out is what GoBGP gets
// (nil with gerr nil: nothing), ev what RFC 7606 handling was applied.
func guardAll(s *sessionCaps, msg []byte) ([]byte, *Event, *guardError) {
	if len(msg) < 19 {
		return nil, nil, refuse(1, 2, nil, "short")
	}
	if gerr := checkHeader(msg[:19], s.maxLen()); gerr != nil {
		return nil, nil, gerr
	}
	msg = bytes.Clone(msg)
	if msg[18] != bgp.BGP_MSG_UPDATE {
		return msg, nil, canary(s, msg[18], msg[19:])
	}
	out, ev, _, gerr := s.guardUpdate(msg[19:])
	if gerr != nil || out == nil {
		return nil, ev, gerr
	}
	return frame(bgp.BGP_MSG_UPDATE, out), ev, nil
}

// canaryOnly are the GoBGP decoders the rules do not model, on purpose:
// the canary (GoBGP's parser under recover) covers them.
var canaryOnly = []string{"prefix_sid.go"}

// checkGuardProperty: the guard never panics; what it passes does not
// panic GoBGP; and the rules alone (without the canary) cover every
// panic but those of canaryOnly.
func checkGuardProperty(t *testing.T, s *sessionCaps, body []byte) {
	t.Helper()
	msg := frame(bgp.BGP_MSG_UPDATE, body)
	if len(msg) > bgpMaxLen {
		return
	}
	out, _, gerr := guardAll(s, msg)
	if gerr == nil && out != nil {
		if site := gobgpReceive(out[18], out[19:], s.rfs(), s.addPath); site != "" {
			t.Fatalf("the guard passed an UPDATE that panics GoBGP: %s\nbody %x", site, body)
		}
	}
	if out, gerr := guardRules(s, msg); gerr == nil {
		if site := gobgpReceive(out[18], out[19:], s.rfs(), s.addPath); site != "" {
			for _, c := range canaryOnly {
				if strings.Contains(site, c) {
					return
				}
			}
			t.Fatalf("the guard's rules pass an UPDATE that panics GoBGP (the canary caught it): %s\nbody %x", site, body)
		}
	}
}

// FuzzGuard: see checkGuardProperty, on both test sessions. Seeds: valid
// UPDATEs of every family, and every GoBGP panic of
// testdata/gobgp-panics.txt.
func FuzzGuard(f *testing.F) {
	for _, b := range validUpdates(f) {
		f.Add(b)
	}
	for _, p := range knownPanics(f) {
		if p.typ == bgp.BGP_MSG_UPDATE {
			f.Add(p.body)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkGuardProperty(t, weftCaps(), body)
		checkGuardProperty(t, wideCaps(), body)
	})
}

// TestGuardRandomUpdates: checkGuardProperty on structured random
// UPDATEs (attributes of every type with random values, MP_REACH and
// MP_UNREACH of GoBGP's families with random next hops and NLRI); the
// generator found most of testdata/gobgp-panics.txt. WEFT_GUARD_ROUNDS
// runs more.
func TestGuardRandomUpdates(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	if v := os.Getenv("WEFT_GUARD_ROUNDS"); v != "" {
		fmt.Sscan(v, &n)
	}
	r := mrand.New(mrand.NewSource(1))
	weft, wide := weftCaps(), wideCaps()
	refused := 0
	t0 := time.Now()
	for range n {
		body := randomUpdate(r)
		checkGuardProperty(t, weft, body)
		checkGuardProperty(t, wide, body)
		if _, _, gerr := guardAll(wide, frame(bgp.BGP_MSG_UPDATE, body)); gerr != nil {
			refused++
		}
	}
	t.Logf("%d random UPDATEs in %v, %d refused on the wide session", n, time.Since(t0).Round(time.Millisecond), refused)
}

// randomUpdate makes an UPDATE with an ORIGIN and AS_PATH, up to three
// attributes of random types and values, often an MP_REACH or
// MP_UNREACH of one of GoBGP's families, sometimes a NEXT_HOP and IPv4
// NLRI; lengths are usually right, values often not.
func randomUpdate(r *mrand.Rand) []byte {
	fams := [][2]int{{1, 1}, {2, 1}, {1, 2}, {2, 2}, {1, 4}, {2, 4}, {1, 128}, {2, 128}, {1, 129}, {2, 129}, {25, 65}, {25, 70}, {1, 132}, {1, 7}, {2, 7}, {1, 133}, {1, 134}, {2, 133}, {2, 134}, {25, 134}, {16397, 241}, {16388, 71}, {1, 73}, {2, 73}, {1, 85}, {2, 85}}
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			switch r.Intn(4) {
			case 0:
			case 1:
				b[i] = byte(r.Intn(8))
			default:
				b[i] = byte(r.Intn(256))
			}
		}
		return b
	}
	attr := func(typ byte, v []byte) []byte {
		fl := byte(0x40)
		switch typ {
		case 4, 9, 10, 14, 15, 26, 28:
			fl = 0x80
		default:
			if typ > 7 {
				fl = 0xc0
			}
		}
		if r.Intn(8) == 0 {
			fl = byte(r.Intn(256)) &^ attrFlagExtended
		}
		if len(v) > 255 {
			return append([]byte{fl | attrFlagExtended, typ, byte(len(v) >> 8), byte(len(v))}, v...)
		}
		return append([]byte{fl, typ, byte(len(v))}, v...)
	}
	var attrs []byte
	attrs = append(attrs, attr(1, []byte{0})...)
	attrs = append(attrs, attr(2, []byte{2, 1, 0xfc, 0})...)
	for range r.Intn(3) {
		typ := byte(r.Intn(42))
		if r.Intn(3) == 0 {
			typ = []byte{2, 3, 7, 8, 16, 17, 18, 22, 23, 25, 26, 29, 32, 40}[r.Intn(14)]
		}
		attrs = append(attrs, attr(typ, rnd(r.Intn(48)))...)
	}
	if r.Intn(4) != 0 {
		f := fams[r.Intn(len(fams))]
		v := []byte{byte(f[0] >> 8), byte(f[0]), byte(f[1])}
		typ := byte(attrMPReach)
		if r.Intn(3) == 0 {
			typ = attrMPUnreach
		} else {
			nh := []int{0, 4, 12, 16, 24, 32, 48, r.Intn(50)}[r.Intn(8)]
			v = append(v, byte(nh))
			v = append(v, rnd(nh)...)
			v = append(v, 0)
		}
		for range r.Intn(3) + 1 {
			nl := rnd(r.Intn(80))
			if len(nl) > 0 && r.Intn(2) == 0 {
				nl[0] = byte(8*(len(nl)-1) - r.Intn(9))
			}
			if f[1] == 70 && len(nl) > 2 && r.Intn(2) == 0 {
				nl[0], nl[1] = byte(r.Intn(6)+1), byte(len(nl)-2)
			}
			v = append(v, nl...)
		}
		if r.Intn(6) == 0 {
			v = v[:r.Intn(len(v)+1)]
		}
		attrs = append(attrs, attr(typ, v)...)
	}
	var nlri []byte
	if r.Intn(5) == 0 {
		attrs = append(attrs, attr(attrNextHop, rnd([]int{4, 16, r.Intn(20)}[r.Intn(3)]))...)
		nlri = rnd(r.Intn(10))
	}
	body := binary.BigEndian.AppendUint16(nil, 0)
	body = binary.BigEndian.AppendUint16(body, uint16(len(attrs)))
	return append(append(body, attrs...), nlri...)
}

type knownPanic struct {
	where   string
	typ     uint8
	addPath bool
	body    []byte
}

func knownPanics(t testing.TB) []knownPanic {
	out, err := readKnownPanics()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readKnownPanics() ([]knownPanic, error) {
	f, err := os.Open("testdata/gobgp-panics.txt")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []knownPanic
	var where string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "# ") {
			where = l[2:]
			continue
		}
		var typ uint8
		var mode, h string
		if _, err := fmt.Sscan(l, &typ, &mode, &h); err != nil {
			return nil, fmt.Errorf("testdata/gobgp-panics.txt: %q: %v", l, err)
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("testdata/gobgp-panics.txt: %q: %v", l, err)
		}
		out = append(out, knownPanic{where, typ, mode == "addpath", b})
	}
	return out, sc.Err()
}

// TestGuardRefusesGoBGPPanics: every UPDATE of testdata/gobgp-panics.txt
// still panics GoBGP (with the families it was found with: all of
// GoBGP's), and the guard refuses it on both test sessions.
func TestGuardRefusesGoBGPPanics(t *testing.T) {
	all := map[bgp.RouteFamily]bgp.BGPAddPathMode{}
	addPath := &bgp.MarshallingOption{AddPath: map[bgp.RouteFamily]bgp.BGPAddPathMode{}}
	for rf := range bgp.AddressFamilyNameMap {
		all[rf] = bgp.BGP_ADD_PATH_NONE
		addPath.AddPath[rf] = bgp.BGP_ADD_PATH_BOTH
	}
	sites := map[string]int{}
	reasons := map[string]int{}
	for _, p := range knownPanics(t) {
		var opt *bgp.MarshallingOption
		s := weftCaps()
		if p.addPath {
			opt, s = addPath, wideCaps()
		}
		site := gobgpReceive(p.typ, p.body, all, opt)
		if site == "" {
			t.Errorf("%s: GoBGP no longer panics on %x: drop it from testdata/gobgp-panics.txt (or GoBGP changed)", p.where, p.body)
			continue
		}
		sites[site[strings.Index(site, "@ ")+2:]]++
		for _, s := range []*sessionCaps{s, wideCaps()} {
			out, ev, gerr := guardAll(s, frame(p.typ, p.body))
			if gerr == nil {
				// RFC 7606 handling instead of a reset: what GoBGP
				// gets must not panic it.
				if ev == nil {
					t.Errorf("%s: the guard passes %x unchanged, which panics GoBGP: %s", p.where, p.body, site)
					continue
				}
				if out != nil {
					if site := gobgpReceive(out[18], out[19:], s.rfs(), s.addPath); site != "" {
						t.Errorf("%s: the guard's %v of %x panics GoBGP: %s", p.where, ev.Action, p.body, site)
					}
				}
				reasons[ev.Action.String()]++
				continue
			}
			r := gerr.reason
			if i := strings.IndexAny(r, "0123456789("); i > 0 {
				r = r[:i]
			}
			reasons[r]++
		}
	}
	t.Logf("%d GoBGP panic sites, all refused or handled per RFC 7606; reasons:", len(sites))
	for r, n := range reasons {
		t.Logf("  %4d  %s", n, r)
	}
}

// validUpdates are well-formed UPDATEs of every family the guard knows,
// as GoBGP itself writes them.
func validUpdates(t testing.TB) [][]byte {
	rd := bgp.NewRouteDistinguisherIPAddressAS("192.0.2.1", 7)
	rd0 := bgp.NewRouteDistinguisherTwoOctetAS(64512, 5)
	esi := bgp.EthernetSegmentIdentifier{Type: bgp.ESI_ARBITRARY, Value: make([]byte, 9)}
	nlris := [][]bgp.AddrPrefixInterface{
		{bgp.NewLabeledVPNIPAddrPrefix(24, "10.1.0.0", *bgp.NewMPLSLabelStack(100), rd), bgp.NewLabeledVPNIPAddrPrefix(32, "10.1.0.1", *bgp.NewMPLSLabelStack(1048575), rd0)},
		{bgp.NewLabeledVPNIPv6AddrPrefix(64, "2001:db8::", *bgp.NewMPLSLabelStack(100, 200), rd)},
		{bgp.NewLabeledVPNIPAddrPrefix(0, "0.0.0.0", *bgp.NewMPLSLabelStack(16), rd)},
		{bgp.NewIPv6AddrPrefix(64, "2001:db8::"), bgp.NewIPv6AddrPrefix(0, "::")},
		{bgp.NewEVPNEthernetAutoDiscoveryRoute(rd, esi, 1, 100)},
		{bgp.NewEVPNMacIPAdvertisementRoute(rd, esi, 1, "02:00:00:00:00:01", "10.0.0.1", []uint32{100, 200})},
		{bgp.NewEVPNMacIPAdvertisementRoute(rd, esi, 1, "02:00:00:00:00:01", "2001:db8::1", []uint32{100})},
		{bgp.NewEVPNMacIPAdvertisementRoute(rd, esi, 1, "02:00:00:00:00:01", "", []uint32{100})},
		{bgp.NewEVPNMulticastEthernetTagRoute(rd, 1, "10.0.0.1")},
		{bgp.NewEVPNMulticastEthernetTagRoute(rd, 1, "2001:db8::1")},
		{bgp.NewEVPNEthernetSegmentRoute(rd, esi, "10.0.0.1")},
		{bgp.NewEVPNIPPrefixRoute(rd, esi, 0, 24, "10.5.0.0", "0.0.0.0", 5000)},
		{bgp.NewEVPNIPPrefixRoute(rd, esi, 0, 64, "2001:db8::", "::", 5000)},
		{bgp.NewRouteTargetMembershipNLRI(64512, bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 64512, 100, true)), bgp.NewRouteTargetMembershipNLRI(0, nil)},
	}
	base := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0),
		bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(2, []uint32{64512, 65000})}),
		bgp.NewPathAttributeLocalPref(100),
		bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
			bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 64512, 100, true), bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN),
		}),
		bgp.NewPathAttributeTunnelEncap([]*bgp.TunnelEncapTLV{bgp.NewTunnelEncapTLV(bgp.TUNNEL_TYPE_VXLAN, []bgp.TunnelEncapSubTLVInterface{bgp.NewTunnelEncapSubTLVEgressEndpoint("10.0.0.1"), bgp.NewTunnelEncapSubTLVUDPDestPort(4789)})}),
	}
	var out [][]byte
	ser := func(w []*bgp.IPAddrPrefix, attrs []bgp.PathAttributeInterface, nlri []*bgp.IPAddrPrefix) {
		b, err := bgp.NewBGPUpdateMessage(w, attrs, nlri).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b[19:])
	}
	for _, n := range nlris {
		nh := "10.0.0.1"
		if n[0].AFI() == bgp.AFI_IP6 {
			nh = "2001:db8::1"
		}
		ser(nil, append(append([]bgp.PathAttributeInterface{}, base...), bgp.NewPathAttributeMpReachNLRI(nh, n)), nil)
		ser(nil, []bgp.PathAttributeInterface{bgp.NewPathAttributeMpUnreachNLRI(n)}, nil)
	}
	ser([]*bgp.IPAddrPrefix{bgp.NewIPAddrPrefix(24, "10.2.0.0")}, append(append([]bgp.PathAttributeInterface{}, base...), bgp.NewPathAttributeNextHop("10.0.0.1")), []*bgp.IPAddrPrefix{bgp.NewIPAddrPrefix(24, "10.1.0.0"), bgp.NewIPAddrPrefix(32, "10.1.0.1")})
	ser(nil, nil, nil) // End-of-RIB, IPv4 unicast
	// Weft's own route encodings cross the guard in every test of
	// agent/bgp that runs two speakers.
	return out
}

// TestGuardPassesValid: valid UPDATEs of every family pass unchanged.
func TestGuardPassesValid(t *testing.T) {
	for _, b := range validUpdates(t) {
		msg := frame(bgp.BGP_MSG_UPDATE, b)
		out, _, gerr := guardAll(weftCaps(), msg)
		if gerr != nil {
			// Only the families Weft does not negotiate may be refused.
			if !strings.Contains(gerr.reason, "not negotiated") {
				t.Errorf("Weft's session refuses %x: %v", b, gerr)
			}
		} else if !bytes.Equal(out, msg) {
			t.Errorf("changed %x into %x", msg, out)
		}
		wide := &sessionCaps{families: map[bgp.RouteFamily]bool{}}
		for f := range wideCaps().families {
			wide.families[f] = false
		}
		if _, _, gerr := guardAll(wide, msg); gerr != nil {
			t.Errorf("refused %x: %v", b, gerr)
		}
	}
}

// TestGuardRules: each rule, on the smallest message that breaks it; for
// the ones guarding a GoBGP panic, GoBGP panics on it.
func TestGuardRules(t *testing.T) {
	origin := []byte{0x40, 1, 1, 0}
	asPath := []byte{0x40, 2, 0}
	mp := func(typ byte, v ...byte) []byte {
		return rawAttr(bgp.BGP_ATTR_FLAG_OPTIONAL, typ, v, -1)
	}
	update := func(attrs ...[]byte) []byte {
		a := append(append([]byte{}, origin...), asPath...)
		for _, x := range attrs {
			a = append(a, x...)
		}
		return rawUpdate(a, nil)
	}
	rd := []byte{0, 1, 192, 0, 2, 1, 0, 7}
	vpnNH := []byte{24 - 12, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1, 0}
	vpnReach := func(nlri ...byte) []byte {
		return mp(14, append(append([]byte{0, 1, 128}, vpnNH...), nlri...)...)
	}
	evpnReach := func(nlri ...byte) []byte {
		return mp(14, append([]byte{0, 25, 70, 4, 10, 0, 0, 1, 0}, nlri...)...)
	}
	label := []byte{0, 0x64, 0x01} // 6, bottom of stack
	noBoS := []byte{0, 0x64, 0x00} // 6, not bottom
	evpn5 := func(l byte, plen byte) []byte {
		b := []byte{5, l}
		b = append(b, rd...)
		b = append(b, make([]byte, 14)...) // ESI, tag
		b = append(b, plen, 10, 5, 0, 0, 0, 0, 0, 0, 0, 0x13, 0x88)
		return b[:2+int(l)]
	}
	cases := []struct {
		name   string
		msg    []byte
		sub    uint8  // NOTIFICATION code 3 subcode; 0xff: header error
		reason string // in the refusal
		panics bool   // GoBGP alone panics on it
		// handled: RFC 7606 handling instead of a reset (passes: the
		// UPDATE is rewritten without an error, nothing lost).
		handled Action
	}{
		{"marker not all ones", func() []byte { b := update(); b[3] = 0; return b }(), 0xff, "marker", false, 0},
		{"length beyond 4096", func() []byte { b := update(); binary.BigEndian.PutUint16(b[16:], 5000); return b }(), 0xff, "length 5000", false, 0},
		{"unknown message type", func() []byte { b := update(); b[18] = 9; return b }(), 0xff, "unknown type 9", false, 0},
		{"withdrawn prefix past its field", rawUpdateW([]byte{24, 10, 1}, nil), bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "withdrawn routes", false, 0},
		{"attribute past the attribute field", func() []byte {
			a := append(append([]byte{}, origin...), 0x40, 2, 8, 2, 1, 0xfc, 0) // AS_PATH claims 8, has 4 before the NLRI
			return rawUpdate(a, []byte{24, 10, 1, 0, 8})
		}(), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "overrunning the path attributes field", false, 0},
		{"attribute past the attribute field, NLRI fine (RFC 7606 4)", func() []byte {
			a := append(append([]byte{}, origin...), 0x40, 2, 8, 2, 1, 0xfc, 0) // AS_PATH claims 8, has 4 before the NLRI
			return rawUpdate(a, []byte{24, 10, 1, 0})
		}(), bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "overruns the path attributes field", false, TreatAsWithdraw},
		{"MP_REACH_NLRI of AFI and SAFI only", update(mp(14, 0, 1, 128)), bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, "without a next-hop length", true, 0},
		{"MP_REACH_NLRI of a family not negotiated (flowspec)", update(mp(14, 0, 1, 133, 0, 0, 3, 1, 24)), bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, "not negotiated", false, 0},
		{"VPN next hop of 4 bytes", update(mp(14, 0, 1, 128, 4, 10, 0, 0, 1, 0)), bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, "next-hop length 4", false, 0},
		{"VPN prefix too short for its RD (the original crash)", update(vpnReach(append([]byte{112}, append(label, 0, 1)...)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "route distinguisher", true, 0},
		{"VPN withdrawal too short for its RD", update(mp(15, append([]byte{0, 1, 128, 112}, append(label, 0, 1)...)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "route distinguisher", true, 0},
		{"VPN label stack without bottom of stack", update(vpnReach(append(append([]byte{64 + 24}, noBoS...), 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "bottom-of-stack", true, 0},
		{"VPN prefix of 40 bits", update(vpnReach(append(append([]byte{24 + 64 + 40}, label...), append(rd, 10, 1, 0, 0, 0)...)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "beyond 32", false, 0},
		{"EVPN Ethernet A-D route of 4 bytes", update(evpnReach(append([]byte{1, 4}, rd[:4]...)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "A-D route of length 4", true, 0},
		{"EVPN MAC/IP route of 20 bytes", update(evpnReach(append(append([]byte{2, 20}, rd...), make([]byte, 12)...)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "MAC/IP route of length 20", true, 0},
		{"EVPN multicast route of 12 bytes", update(evpnReach(append(append([]byte{3, 12}, rd...), 0, 0, 0, 1)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "inclusive multicast", true, 0},
		{"EVPN Ethernet segment route of 8 bytes", update(evpnReach(append([]byte{4, 8}, rd...)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "Ethernet segment route", true, 0},
		{"EVPN IP prefix route of 33 bytes", update(evpnReach(evpn5(33, 24)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "IP prefix route of length 33", false, 0},
		{"EVPN IPv4 prefix of 40 bits", update(evpnReach(evpn5(34, 40)...)), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "prefix length 40", false, 0},
		{"IPv4 NLRI of /33", rawUpdate(append(append(append([]byte{}, origin...), asPath...), 0x40, 3, 4, 10, 0, 0, 1), []byte{33, 10, 0, 0, 0, 0}), bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "beyond 32 bits", false, 0},
		{"AS4_PATH before AS_PATH", rawUpdate(append([]byte{0x40, 1, 1, 0, 0xc0, 17, 6, 2, 1, 0, 0, 0xfc, 0}, 0x40, 2, 4, 2, 1, 0xfc, 0), nil), bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "AS4_PATH", false, passes},
		{"PREFIX_SID with a TLV past its end (the canary)", update([]byte{0xc0, 40, 6, 6, 0, 0, 0xc1, 0, 0}), bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "makes GoBGP panic", true, AttributeDiscard},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := weftCaps()
			out, ev, gerr := guardAll(s, c.msg)
			if c.handled != 0 {
				checkHandled(t, s, c.msg, c.reason, c.panics, c.handled, out, ev, gerr)
				return
			}
			if gerr == nil {
				t.Fatalf("passed %x", c.msg)
			}
			if c.sub == 0xff {
				if gerr.code != bgp.BGP_ERROR_MESSAGE_HEADER_ERROR {
					t.Errorf("NOTIFICATION %v, want a header error", bgp.NewNotificationErrorCode(gerr.code, gerr.subcode))
				}
			} else if gerr.code != bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR || gerr.subcode != c.sub {
				t.Errorf("NOTIFICATION %v, want %v", bgp.NewNotificationErrorCode(gerr.code, gerr.subcode), bgp.NewNotificationErrorCode(3, c.sub))
			}
			if !strings.Contains(gerr.reason, c.reason) {
				t.Errorf("reason %q, want it to mention %q", gerr.reason, c.reason)
			}
			all := map[bgp.RouteFamily]bgp.BGPAddPathMode{}
			for rf := range bgp.AddressFamilyNameMap {
				all[rf] = bgp.BGP_ADD_PATH_NONE
			}
			site := ""
			if len(c.msg) >= 19 && c.msg[18] == bgp.BGP_MSG_UPDATE && gerr.code != bgp.BGP_ERROR_MESSAGE_HEADER_ERROR {
				site = gobgpReceive(bgp.BGP_MSG_UPDATE, c.msg[19:], all, nil)
			}
			if (site != "") != c.panics {
				t.Errorf("GoBGP alone: panic %q, want a panic: %v", site, c.panics)
			}
			t.Logf("%v: %s; GoBGP alone: %s", bgp.NewNotificationErrorCode(gerr.code, gerr.subcode), gerr.reason, cmpOr(site, "no panic"))
		})
	}
}

// passes: a TestGuardRules case the guard rewrites without an error.
const passes Action = 255

// checkHandled: the guard applied RFC 7606 (or a harmless rewrite)
// instead of a reset, says why, and what GoBGP gets does not panic it.
func checkHandled(t *testing.T, s *sessionCaps, msg []byte, reason string, panics bool, want Action, out []byte, ev *Event, gerr *guardError) {
	t.Helper()
	if gerr != nil {
		t.Fatalf("refused (%v), want %v", gerr, want)
	}
	// The rule fires: the rules alone refuse it.
	if _, rerr := guardRules(s, msg); (rerr == nil) == (want != AttributeDiscard) && want != AttributeDiscard {
		t.Errorf("the rules alone pass it")
	} else if rerr != nil && !strings.Contains(rerr.reason, reason) {
		t.Errorf("rule's reason %q, want it to mention %q", rerr.reason, reason)
	}
	switch {
	case want == passes:
		if ev != nil {
			t.Errorf("event %+v, want none", ev)
		}
	case ev == nil || ev.Action != want:
		t.Errorf("event %+v, want %v", ev, want)
	case !strings.Contains(ev.Reason, reason):
		t.Errorf("event reason %q, want it to mention %q", ev.Reason, reason)
	}
	if out == nil {
		t.Fatalf("nothing for GoBGP")
	}
	if site := gobgpReceive(out[18], out[19:], s.rfs(), s.addPath); site != "" {
		t.Errorf("what GoBGP gets panics it: %s", site)
	}
	all := map[bgp.RouteFamily]bgp.BGPAddPathMode{}
	for rf := range bgp.AddressFamilyNameMap {
		all[rf] = bgp.BGP_ADD_PATH_NONE
	}
	if site := gobgpReceive(bgp.BGP_MSG_UPDATE, msg[19:], all, nil); (site != "") != panics {
		t.Errorf("GoBGP alone: panic %q, want a panic: %v", site, panics)
	}
	m, err := bgp.ParseBGPMessage(out)
	if err != nil {
		t.Fatalf("GoBGP gets %x, which does not parse: %v", out, err)
	}
	u := m.Body.(*bgp.BGPUpdate)
	if want == TreatAsWithdraw && (len(u.NLRI) != 0 || len(u.PathAttributes) != 0 || len(u.WithdrawnRoutes) == 0) {
		t.Errorf("treat-as-withdraw: GoBGP gets %v, want a withdrawal only", u)
	}
	t.Logf("%v: GoBGP gets %v", want, u)
}

func cmpOr(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// rawUpdateW frames an UPDATE with withdrawn routes and attributes.
func rawUpdateW(withdrawn, attrs []byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(len(withdrawn)-1)) // one byte short: the last prefix overruns
	body = append(body, withdrawn...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(attrs)))
	return frame(bgp.BGP_MSG_UPDATE, append(body, attrs...))
}

// TestGuardLoopbackNextHop: behind the guard GoBGP always sees a
// loopback session, which would make it accept a loopback NEXT_HOP it
// refuses from a real peer; the guard keeps GoBGP's refusal.
func TestGuardLoopbackNextHop(t *testing.T) {
	a := append([]byte{0x40, 1, 1, 0, 0x40, 2, 0}, 0x40, 3, 4, 127, 0, 0, 1)
	msg := rawUpdate(a, []byte{24, 10, 1, 0})
	for _, real := range []bool{false, true} {
		s := weftCaps()
		s.loopbackNextHopBlocked = !real // GoBGP's side is loopback
		out, _, gerr := guardAll(s, msg)
		if gerr != nil {
			t.Fatal(gerr)
		}
		changed := !bytes.Equal(out, msg)
		if changed == real {
			t.Errorf("real session loopback %v: changed %v", real, changed)
		}
		hd := &bgp.BGPHeader{Type: bgp.BGP_MSG_UPDATE, Len: uint16(len(out))}
		m, _ := bgp.ParseBGPBody(hd, out[19:])
		ok, err := bgp.ValidateUpdateMsg(m.Body.(*bgp.BGPUpdate), s.rfs(), false, false, true)
		if ok == !real {
			t.Errorf("real session loopback %v: GoBGP behind the guard accepts the NEXT_HOP: %v (%v)", real, ok, err)
		}
	}
}

// TestNegotiate: the guard's view of a session is GoBGP's: families both
// sides offer, ADD-PATH only where one sends and the other receives.
func TestNegotiate(t *testing.T) {
	open := func(caps ...bgp.ParameterCapabilityInterface) openCaps {
		b, err := bgp.NewBGPOpenMessage(64512, 90, "192.0.2.1", []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		c, gerr := parseOpen(b[19:])
		if gerr != nil {
			t.Fatal(gerr)
		}
		return c
	}
	local := open(bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN), bgp.NewCapMultiProtocol(bgp.RF_EVPN), bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapAddPath([]*bgp.CapAddPathTuple{bgp.NewCapAddPathTuple(bgp.RF_IPv4_VPN, bgp.BGP_ADD_PATH_RECEIVE)}))
	remote := open(bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN), bgp.NewCapMultiProtocol(bgp.RF_EVPN), bgp.NewCapMultiProtocol(bgp.RF_FS_IPv4_UC),
		bgp.NewCapAddPath([]*bgp.CapAddPathTuple{bgp.NewCapAddPathTuple(bgp.RF_IPv4_VPN, bgp.BGP_ADD_PATH_SEND), bgp.NewCapAddPathTuple(bgp.RF_EVPN, bgp.BGP_ADD_PATH_BOTH)}))
	s := negotiate(local, remote, false)
	want := map[bgp.RouteFamily]bool{bgp.RF_IPv4_VPN: true, bgp.RF_EVPN: false}
	if fmt.Sprint(s.families) != fmt.Sprint(want) {
		t.Errorf("families %v, want %v", s.families, want)
	}
	if s.addPath == nil || s.maxLen() != bgpMaxLen {
		t.Errorf("add-path option %v, max length %d", s.addPath, s.maxLen())
	}
	// No capabilities at all: IPv4 unicast.
	none := open()
	if s := negotiate(local, none, false); fmt.Sprint(s.families) != fmt.Sprint(map[bgp.RouteFamily]bool{bgp.RF_IPv4_UC: false}) {
		t.Errorf("without capabilities: %v", s.families)
	}
}

// BenchmarkGuard: the guard's cost per UPDATE, rules and canary, against
// GoBGP's own parse of the same message (which GoBGP does anyway).
func BenchmarkGuard(b *testing.B) {
	var msgs [][]byte
	for _, u := range validUpdates(b) {
		msgs = append(msgs, frame(bgp.BGP_MSG_UPDATE, u))
	}
	// A full-size VPNv4 UPDATE: as many /32s as fit.
	var nl []bgp.AddrPrefixInterface
	for i := range 150 {
		nl = append(nl, bgp.NewLabeledVPNIPAddrPrefix(32, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String(), *bgp.NewMPLSLabelStack(uint32(16 + i)), bgp.NewRouteDistinguisherIPAddressAS("192.0.2.1", 1)))
	}
	big, err := bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil), bgp.NewPathAttributeMpReachNLRI("10.0.0.1", nl)}, nil).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	s := weftCaps()
	for _, c := range []struct {
		name string
		msgs [][]byte
	}{{"mixed", msgs}, {"vpnv4-150", [][]byte{big}}} {
		b.Run(c.name+"/rules", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				m := c.msgs[i%len(c.msgs)]
				s.checkUpdate(m[19:])
			}
		})
		b.Run(c.name+"/rules+canary", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				m := c.msgs[i%len(c.msgs)]
				s.checkUpdate(m[19:])
				canary(s, m[18], m[19:])
			}
		})
		b.Run(c.name+"/gobgp-parse", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				m := c.msgs[i%len(c.msgs)]
				bgp.ParseBGPMessage(m)
			}
		})
	}
	b.Logf("the full-size VPNv4 UPDATE: %d bytes", len(big))
}

// regenPanicCorpus rewrites testdata/gobgp-panics.txt (about a minute;
// WEFT_GUARD_REGEN=1 go test ./agent/bgp runs it from TestMain instead of
// the tests): the entries that still panic GoBGP, and what 3 million
// random UPDATEs find, one body per panic site. Run it when GoBGP is
// upgraded, then the tests (TestGuardRefusesGoBGPPanics).
func regenPanicCorpus() error {
	known, err := readKnownPanics()
	if err != nil {
		return err
	}
	all := map[bgp.RouteFamily]bgp.BGPAddPathMode{}
	addPath := &bgp.MarshallingOption{AddPath: map[bgp.RouteFamily]bgp.BGPAddPathMode{}}
	for rf := range bgp.AddressFamilyNameMap {
		all[rf] = bgp.BGP_ADD_PATH_NONE
		addPath.AddPath[rf] = bgp.BGP_ADD_PATH_BOTH
	}
	type ent struct {
		site string
		ap   bool
		body []byte
	}
	found := map[string]ent{}
	add := func(ap bool, body []byte) {
		var opt *bgp.MarshallingOption
		if ap {
			opt = addPath
		}
		site := gobgpReceive(2, body, all, opt)
		if site == "" {
			return
		}
		stage := site[1:strings.Index(site, "]")]
		frames := site[strings.Index(site, "@ ")+2:]
		key := fmt.Sprint(ap, " [", strings.Fields(stage)[0], "] ", frames)
		if e, ok := found[key]; !ok || len(body) < len(e.body) {
			found[key] = ent{fmt.Sprintf("%s[%s] %s", map[bool]string{true: "addpath ", false: ""}[ap], stage, frames), ap, append([]byte{}, body...)}
		}
	}
	for _, p := range known {
		add(p.addPath, p.body)
	}
	r := mrand.New(mrand.NewSource(7))
	for range 3_000_000 {
		b := randomUpdate(r)
		add(false, b)
		add(true, b)
	}
	var keys []string
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteString("# UPDATE bodies on which GoBGP v3.37.0 panics, found by fuzzing its receive\n# path (gobgpReceive in guard_test.go) with every family it knows\n# negotiated: one per panic site. The comment names the stage and the\n# frames; the line gives the message type, whether ADD-PATH was on for\n# every family, and the body in hex. TestGuardRefusesGoBGPPanics checks\n# that each still panics GoBGP and that the guard refuses it.\n")
	for _, k := range keys {
		e := found[k]
		mode := "plain"
		if e.ap {
			mode = "addpath"
		}
		fmt.Fprintf(&sb, "# %s\n2 %s %s\n", e.site, mode, hex.EncodeToString(e.body))
	}
	if err := os.WriteFile("testdata/gobgp-panics.txt", []byte(sb.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("testdata/gobgp-panics.txt: %d sites\n", len(keys))
	return nil
}
