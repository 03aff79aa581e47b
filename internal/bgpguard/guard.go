package bgpguard

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// The BGP guard: every message a peer sends passes its checks before GoBGP
// sees it (relaySession.peerToGobgp, relay_session.go). GoBGP v3.37.0 trusts lengths in its
// NLRI decoders and panics on a goroutine no caller can recover; the guard
// refuses, with a NOTIFICATION, exactly the inputs that reach those
// panics, and lets everything else through byte for byte, so that GoBGP's
// own RFC 7606 handling (treat-as-withdraw, attribute discard) still
// applies to the errors it survives.
//
// Rules, each with the GoBGP panic it prevents (bgp.go line numbers of
// v3.37.0):
//
//   - header: marker all ones, length 19..4096 (65535 with extended
//     messages on both sides), type 1..5. GoBGP checks none but the
//     minimum length; it would read up to 64 KiB for any length.
//   - UPDATE field lengths: withdrawn routes and path attributes within
//     the message, each withdrawn prefix within the withdrawn field. A
//     prefix overrunning the field makes GoBGP's uint16 counter wrap and
//     parse attributes as routes.
//   - each path attribute within the path attribute field (GoBGP's walk
//     would wrap its counter and decode the NLRI as attributes).
//   - MP_REACH_NLRI shorter than AFI+SAFI+next-hop length (1 byte past
//     its 3-byte check: index out of range, bgp.go:11504).
//   - MP_(UN)REACH_NLRI of a family GoBGP decodes but that was not
//     negotiated (flowspec, BGP-LS, SR policy, MUP, VPLS... whose
//     decoders panic on short input): GoBGP parses before it checks the
//     family, then resets the session anyway.
//   - next-hop length as GoBGP accepts it (4, 16, 32; +8 per address for
//     VPN).
//   - labelled prefixes (SAFI 4, 128): the label stack ends, within the
//     prefix's own length, at the bottom-of-stack bit (or at a first
//     label of 0x800000 or 0, GoBGP's withdrawal values); a stack GoBGP
//     would decode as empty panics when it serialises the path
//     (MPLSLabelStack.Serialize, bgp.go:1933) on the receive goroutine.
//   - VPN prefixes: 8 bytes of RD after the labels within the prefix's
//     length (GetRouteDistinguisher, bgp.go:1781-1788, the crash that
//     started this), then at most 32/128 prefix bits.
//   - EVPN: each route type of RFC 7432/9136 at its exact length (types
//     1-4 slice without checks, bgp.go:2665-3031).
//   - AS4_PATH before AS_PATH: GoBGP's AS4 merge
//     (table.UpdatePathAttrs4ByteAs) writes AS_PATH back at a stale index
//     and runs off the attribute list.
//   - then GoBGP's own parser runs on the message under recover (the
//     canary), less its MP attributes: whatever panics there (PREFIX_SID
//     TLVs, prefix_sid.go:388, 646, 662, and any attribute decoder the
//     rules above do not model) is refused too.
//
// The OPENs and the header are checked in guard_open.go, the UPDATE and its
// MP attributes here, each family's prefixes in guard_nlri.go.

// guardError is why the guard refused a message: the NOTIFICATION it
// sends the peer (and GoBGP) and what PeerStatus shows.
type guardError struct {
	code, subcode uint8
	data          []byte
	reason        string
	refused       []byte // the message, for the log
	// handling is what RFC 7606 asks for; the zero value is a session
	// reset. The others are done by guardUpdate (rfc7606.go).
	handling handling
}

type handling uint8

const (
	handleReset    handling = iota
	handleWithdraw          // treat-as-withdraw: the UPDATE's prefixes are withdrawn
	handleReorder           // AS4_PATH moved after AS_PATH, nothing lost
)

func (e *guardError) Error() string {
	return fmt.Sprintf("%s (%s)", e.reason, bgp.NewNotificationErrorCode(e.code, e.subcode))
}

func refuse(code, subcode uint8, data []byte, format string, args ...any) *guardError {
	return &guardError{code: code, subcode: subcode, data: data, reason: fmt.Sprintf(format, args...)}
}

const (
	attrFlagExtended = 0x10
	attrNextHop      = 3
	attrAsPath       = 2
	attrMPReach      = 14
	attrMPUnreach    = 15
	attrAs4Path      = 17
	attrPrefixSID    = 40
)

func updateErr(sub uint8, data []byte, format string, args ...any) *guardError {
	return refuse(bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, sub, data, format, args...)
}

// excerpt is a short hex dump of bytes for a refusal's reason.
func excerpt(b []byte) string {
	if len(b) > 24 {
		return hex.EncodeToString(b[:24]) + "..."
	}
	return hex.EncodeToString(b)
}

// checkUpdate checks an UPDATE body. It may rewrite one byte in place (a
// loopback NEXT_HOP, see below) and says so in rewrote.
func (s *sessionCaps) checkUpdate(body []byte) (rewrote string, gerr *guardError) {
	if len(body) < 4 {
		return "", updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "UPDATE of %d bytes: shorter than its two length fields", len(body))
	}
	wlen := int(binary.BigEndian.Uint16(body))
	if 2+wlen+2 > len(body) {
		return "", updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "withdrawn routes length %d overruns the UPDATE (%d bytes)", wlen, len(body))
	}
	v4AddPath := s.families[bgp.RF_IPv4_UC]
	if err := checkPrefixes(body[2:2+wlen], plainPrefix(32), v4AddPath, false); err != nil {
		return "", updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "withdrawn routes: %v", err)
	}
	rest := body[2+wlen:]
	alen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if alen > len(rest) {
		return "", updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "path attributes length %d overruns the UPDATE (%d bytes left)", alen, len(rest))
	}
	// GoBGP notes which attribute types are present by walking the
	// attributes AND the NLRI field after them (GetBGPUpdateAttributes);
	// PREFIX_SID among them changes how it reads label stacks.
	prefixSID := attrTypePresent(rest, attrPrefixSID)

	var (
		seen         [256]bool
		asPathFirst  = -1
		as4PathFirst = -1
		nextHopAt    = -1 // offset in rest of the first NEXT_HOP's value
		idx          int
	)
	for off := 0; off < alen; idx++ {
		if alen-off < 3 {
			break // GoBGP: treat-as-withdraw, no decoding
		}
		flags, typ := rest[off], rest[off+1]
		hl := 3
		if flags&attrFlagExtended != 0 {
			hl = 4
		}
		if off+hl > len(rest) {
			break // GoBGP: a clean error on the header
		}
		var vl int
		if hl == 4 {
			vl = int(binary.BigEndian.Uint16(rest[off+2:]))
		} else {
			vl = int(rest[off+2])
		}
		if off+hl+vl > len(rest) {
			// Beyond the message: GoBGP refuses the attribute
			// (treat-as-withdraw) and stops; what came before was
			// checked.
			break
		}
		if off+hl+vl > alen {
			// RFC 7606 4: treat-as-withdraw, the Total Attribute
			// Length locating the NLRI, which must then parse (5.3).
			if err := checkPrefixes(rest[alen:], plainPrefix(32), v4AddPath, false); err != nil {
				return "", updateErr(bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, nil, "NLRI after path attribute %d (type %d, %d bytes) overrunning the path attributes field: %v", idx, typ, vl, err)
			}
			gerr := updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "path attribute %d (type %d, %d bytes) overruns the path attributes field (%d bytes)", idx, typ, vl, alen)
			gerr.handling = handleWithdraw
			return "", gerr
		}
		value := rest[off+hl : off+hl+vl]
		first := !seen[typ]
		seen[typ] = true
		switch typ {
		case attrMPReach, attrMPUnreach:
			if err := s.checkMP(typ == attrMPReach, value, prefixSID); err != nil {
				err.data = rest[off : off+hl+vl]
				return "", err
			}
		case attrAsPath:
			if first {
				asPathFirst = idx
			}
		case attrAs4Path:
			if first {
				as4PathFirst = idx
			}
		case attrNextHop:
			if first && vl == 4 {
				nextHopAt = off + hl
			}
		}
		off += hl + vl
	}
	if as4PathFirst >= 0 && asPathFirst > as4PathFirst {
		// Not an error (RFC 4271 5: any order), but GoBGP's AS4
		// merge cannot take it: the guard moves AS4_PATH last.
		gerr := updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "AS4_PATH (attribute %d) before AS_PATH (attribute %d): GoBGP's AS4 merge cannot take that order", as4PathFirst, asPathFirst)
		gerr.handling = handleReorder
		return "", gerr
	}
	if err := checkPrefixes(rest[alen:], plainPrefix(32), v4AddPath, false); err != nil {
		return "", updateErr(bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, nil, "NLRI: %v", err)
	}
	// GoBGP accepts a loopback NEXT_HOP when its own session is loopback
	// to loopback, which behind the guard it may be where the real one
	// is not. So that the real peer still gets the treat-as-withdraw
	// GoBGP gives a loopback next hop, the guard turns 127/8 into 0/8,
	// which GoBGP refuses the same way: the one byte the guard ever
	// changes.
	if s.loopbackNextHopBlocked && nextHopAt >= 0 && rest[nextHopAt] == 127 {
		rest[nextHopAt] = 0
		return "loopback NEXT_HOP: treated as withdraw", nil
	}
	return "", nil
}

// attrTypePresent walks b as GoBGP's GetBGPUpdateAttributes does (past
// the path attributes, into the NLRI) and reports whether an attribute
// of type t is seen.
func attrTypePresent(b []byte, t byte) bool {
	for p := 0; p < len(b); {
		flags := b[p]
		p++
		if p >= len(b) {
			return false
		}
		if b[p] == t {
			return true
		}
		p++
		var l int
		if flags&attrFlagExtended != 0 {
			if p+2 > len(b) {
				return false
			}
			l = int(binary.BigEndian.Uint16(b[p:]))
			p += 2
		} else {
			if p >= len(b) {
				return false
			}
			l = int(b[p])
			p++
		}
		p += l
	}
	return false
}

// checkMP checks an MP_REACH_NLRI (reach) or MP_UNREACH_NLRI value.
func (s *sessionCaps) checkMP(reach bool, v []byte, prefixSID bool) *guardError {
	name := "MP_UNREACH_NLRI"
	if reach {
		name = "MP_REACH_NLRI"
	}
	if len(v) < 3 {
		return updateErr(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, nil, "%s of %d bytes, shorter than AFI and SAFI", name, len(v))
	}
	afi, safi := binary.BigEndian.Uint16(v), v[2]
	rf := bgp.AfiSafiToRouteFamily(afi, safi)
	if !knownToGoBGP(afi, safi) {
		return nil // GoBGP refuses it cleanly before any NLRI
	}
	addPath, negotiated := s.families[rf]
	if !negotiated {
		return updateErr(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, nil, "%s of %s, a family not negotiated on this session", name, rf)
	}
	kind, ok := nlriKinds[rf]
	if !ok {
		return updateErr(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, nil, "%s of %s, a family the guard does not check", name, rf)
	}
	v = v[3:]
	if reach {
		if len(v) < 1 {
			return updateErr(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, nil, "%s of %s without a next-hop length", name, rf)
		}
		nh := int(v[0])
		off := 0
		if kind.nhVPN {
			off = 8
		}
		if nh != off+4 && nh != off+16 && nh != 2*(off+16) {
			return updateErr(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, nil, "%s of %s: next-hop length %d, want %d, %d or %d", name, rf, nh, off+4, off+16, 2*(off+16))
		}
		if 1+nh+1 > len(v) {
			return updateErr(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, nil, "%s of %s: %d bytes, too short for a %d-byte next hop and the reserved byte", name, rf, len(v)+3, nh)
		}
		v = v[1+nh+1:]
	}
	if err := checkPrefixes(v, kind.prefix, addPath, prefixSID); err != nil {
		return updateErr(bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, nil, "%s of %s: %v", name, rf, err)
	}
	return nil
}

// withoutMP is an UPDATE body without its MP_REACH_NLRI and
// MP_UNREACH_NLRI attributes, for the canary: the rules check those
// completely (FuzzGuard and TestGuardRandomUpdates hold them to it), and
// parsing their NLRI again is what would make the canary cost as much as
// GoBGP's own parse. ok is false when there is nothing to take out or
// the attributes do not walk cleanly (then the canary takes it all).
func withoutMP(body []byte) (out []byte, ok bool) {
	if len(body) < 4 {
		return nil, false
	}
	wlen := int(binary.BigEndian.Uint16(body))
	if 2+wlen+2 > len(body) {
		return nil, false
	}
	attrs := body[2+wlen+2:]
	alen := int(binary.BigEndian.Uint16(body[2+wlen:]))
	if alen > len(attrs) {
		return nil, false
	}
	var keep [][2]int
	cut := false
	for off := 0; off < alen; {
		if alen-off < 3 {
			return nil, false
		}
		hl := 3
		if attrs[off]&attrFlagExtended != 0 {
			hl = 4
		}
		if off+hl > alen {
			return nil, false
		}
		vl := int(attrs[off+2])
		if hl == 4 {
			vl = int(binary.BigEndian.Uint16(attrs[off+2:]))
		}
		end := off + hl + vl
		if end > alen {
			return nil, false
		}
		if t := attrs[off+1]; t == attrMPReach || t == attrMPUnreach {
			cut = true
		} else {
			keep = append(keep, [2]int{off, end})
		}
		off = end
	}
	if !cut {
		return nil, false
	}
	out = make([]byte, 0, len(body))
	out = append(out, body[:2+wlen]...)
	out = append(out, 0, 0)
	for _, k := range keep {
		out = append(out, attrs[k[0]:k[1]]...)
	}
	binary.BigEndian.PutUint16(out[2+wlen:], uint16(len(out)-2-wlen-2))
	return append(out, attrs[alen:]...), true
}

// canary runs GoBGP's own receive path on a message that passed the
// rules above (the parse, the RFC 7606 handling, validation, and the
// per-prefix serialisation of table.ProcessMessage), under recover: a
// panic there is a case the rules miss, or a decoder they do not model
// (such as PREFIX_SID's), and the message is refused rather than handed
// to a GoBGP goroutine that cannot recover. The MP attributes, which the
// rules cover, are left out (see withoutMP). s is nil before the OPENs.
func canary(s *sessionCaps, typ uint8, body []byte) (gerr *guardError) {
	defer func() {
		if r := recover(); r != nil {
			code := uint8(bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR)
			sub := uint8(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST)
			if typ != bgp.BGP_MSG_UPDATE {
				code, sub = bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, 0
			}
			gerr = refuse(code, sub, nil, "message (type %d) that makes GoBGP panic: %v at %s", typ, r, panicFrame())
		}
	}()
	if typ == bgp.BGP_MSG_UPDATE {
		if b, ok := withoutMP(body); ok {
			body = b
		}
	}
	hd := &bgp.BGPHeader{Type: typ, Len: uint16(bgp.BGP_HEADER_LENGTH + len(body))}
	var opts []*bgp.MarshallingOption
	if s != nil && s.addPath != nil {
		opts = append(opts, s.addPath)
	}
	m, err := bgp.ParseBGPBody(hd, body, opts...)
	if m == nil || s == nil {
		return nil
	}
	u, ok := m.Body.(*bgp.BGPUpdate)
	if !ok {
		return nil
	}
	if err != nil {
		me, ok := err.(*bgp.MessageError)
		if !ok {
			return nil
		}
		switch me.ErrorHandling {
		case bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW:
			u = bgp.TreatAsWithdraw(u)
		case bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD:
		default:
			return nil // GoBGP drops the message or the session
		}
	}
	rfs := make(map[bgp.RouteFamily]bgp.BGPAddPathMode, len(s.families))
	for f := range s.families {
		rfs[f] = bgp.BGP_ADD_PATH_NONE
	}
	if ok, err := bgp.ValidateUpdateMsg(u, rfs, false, false, true); !ok {
		me, isME := err.(*bgp.MessageError)
		if !isME || me.ErrorHandling != bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW {
			return nil
		}
		u = bgp.TreatAsWithdraw(u)
	}
	// table.ProcessMessage rebuilds MP_REACH_NLRI for each prefix, which
	// serialises it.
	for _, a := range u.PathAttributes {
		switch mp := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			for _, n := range mp.Value {
				n.Serialize()
			}
		case *bgp.PathAttributeMpUnreachNLRI:
			for _, n := range mp.Value {
				n.Serialize()
			}
		}
	}
	return nil
}

// panicFrame names the GoBGP function that panicked, for the log.
func panicFrame() string {
	for _, l := range strings.Split(string(debug.Stack()), "\n") {
		l = strings.TrimSpace(l)
		if strings.Contains(l, "gobgp/v3/pkg/packet/bgp.") {
			return l
		}
	}
	return "unknown"
}
