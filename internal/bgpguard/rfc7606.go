package bgpguard

import (
	"encoding/binary"
	"fmt"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// RFC 7606 in the guard: an UPDATE whose prefixes can be located but one
// of whose attributes is malformed is not a reason to reset the session.
// The guard hands GoBGP what the RFC asks for instead:
//
//   - treat-as-withdraw (RFC 7606 2, 4): an attribute overrunning the
//     path attributes field, or an attribute on whose decoding GoBGP
//     panics (the canary): the UPDATE becomes the withdrawal of every
//     prefix it carries, IPv4 NLRI into the withdrawn routes field and
//     each MP_REACH_NLRI into an MP_UNREACH_NLRI of its prefixes;
//   - attribute discard (RFC 8669 6): a malformed PREFIX_SID is dropped
//     and the rest of the UPDATE goes on;
//   - AS4_PATH before AS_PATH is no error at all (RFC 4271 5); GoBGP's
//     AS4 merge cannot take that order, so AS4_PATH moves last.
//
// A session is reset only where the RFC says: a bad header, withdrawn
// routes or attribute lengths that overrun the message, NLRI that cannot
// be parsed (RFC 7606 5.3, MP_REACH_NLRI and MP_UNREACH_NLRI included,
// 3 j), and what stays unsafe after a rewrite.

// Action is what the guard did with a malformed message.
type Action uint8

const (
	// TreatAsWithdraw: the UPDATE's prefixes were withdrawn (RFC 7606).
	TreatAsWithdraw Action = iota + 1
	// AttributeDiscard: a malformed attribute was dropped (RFC 7606).
	AttributeDiscard
	// Reset: the session was reset with a NOTIFICATION.
	Reset
)

func (a Action) String() string {
	switch a {
	case TreatAsWithdraw:
		return "treat-as-withdraw"
	case AttributeDiscard:
		return "attribute discard"
	case Reset:
		return "session reset"
	}
	return "none"
}

// Event is one malformed message and what the guard did with it.
type Event struct {
	Action Action
	// Code and Subcode: the NOTIFICATION sent, for Reset.
	Code, Subcode uint8
	Reason        string
}

// maxRewrites bounds the rounds of guardUpdate: each rewrite removes
// attributes, a withdrawal is rewritten no further.
const maxRewrites = 4

// guardUpdate runs the guard's rules and its canary on an UPDATE body
// and applies RFC 7606: out is what GoBGP gets (body itself, or a
// rewrite; nil when nothing is left to tell it), ev what was done.
func (s *sessionCaps) guardUpdate(body []byte) (out []byte, ev *Event, note string, gerr *guardError) {
	withdrawn := false
	for range maxRewrites {
		n, gerr := s.checkUpdate(body)
		if gerr != nil {
			switch gerr.handling {
			case handleWithdraw:
				if withdrawn {
					return nil, nil, "", gerr
				}
				body, withdrawn = treatAsWithdraw(body), true
				ev = &Event{Action: TreatAsWithdraw, Reason: gerr.reason}
				continue
			case handleReorder:
				body = as4PathLast(body)
				note = "AS4_PATH moved after AS_PATH"
				continue
			}
			return nil, nil, "", gerr
		}
		if n != "" {
			note = n
		}
		cg := canary(s, bgp.BGP_MSG_UPDATE, body)
		if cg == nil {
			if withdrawn && emptyUpdate(body) {
				// Nothing to withdraw; an empty UPDATE would be
				// IPv4's End-of-RIB.
				return nil, ev, note, nil
			}
			return body, ev, note, nil
		}
		if withdrawn {
			return nil, nil, "", cg
		}
		typ, found := culprit(body)
		if found && typ == attrPrefixSID && ev == nil {
			body = withoutAttr(body, attrPrefixSID)
			ev = &Event{Action: AttributeDiscard, Reason: "malformed PREFIX_SID discarded: " + cg.reason}
			continue
		}
		body, withdrawn = treatAsWithdraw(body), true
		reason := cg.reason
		if found {
			reason = fmt.Sprintf("attribute type %d: %s", typ, cg.reason)
		}
		ev = &Event{Action: TreatAsWithdraw, Reason: reason}
	}
	return nil, nil, "", updateErr(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, nil, "UPDATE still malformed after %d rewrites", maxRewrites)
}

// attr is one path attribute of a body: its type and where it lies.
type attr struct {
	typ        byte
	start, end int // the whole attribute, offsets in the attributes field
	value      []byte
}

// splitUpdate cuts a body whose lengths the rules checked: withdrawn
// routes, the attributes that lie wholly in their field (up to the
// first that does not), and the NLRI the Total Attribute Length points
// at.
func splitUpdate(body []byte) (withdrawn []byte, attrs []attr, field, nlri []byte) {
	wlen := int(binary.BigEndian.Uint16(body))
	withdrawn = body[2 : 2+wlen]
	rest := body[2+wlen:]
	alen := int(binary.BigEndian.Uint16(rest))
	field, nlri = rest[2:2+alen], rest[2+alen:]
	for off := 0; off+3 <= len(field); {
		hl := 3
		if field[off]&attrFlagExtended != 0 {
			hl = 4
		}
		if off+hl > len(field) {
			break
		}
		vl := int(field[off+2])
		if hl == 4 {
			vl = int(binary.BigEndian.Uint16(field[off+2:]))
		}
		if off+hl+vl > len(field) {
			break
		}
		attrs = append(attrs, attr{typ: field[off+1], start: off, end: off + hl + vl, value: field[off+hl : off+hl+vl]})
		off += hl + vl
	}
	return withdrawn, attrs, field, nlri
}

func buildUpdate(withdrawn []byte, attrs [][]byte, nlri []byte) []byte {
	out := binary.BigEndian.AppendUint16(nil, uint16(len(withdrawn)))
	out = append(out, withdrawn...)
	alen := 0
	for _, a := range attrs {
		alen += len(a)
	}
	out = binary.BigEndian.AppendUint16(out, uint16(alen))
	for _, a := range attrs {
		out = append(out, a...)
	}
	return append(out, nlri...)
}

// treatAsWithdraw is the withdrawal of every prefix body announces or
// withdraws: its NLRI join the withdrawn routes, each MP_REACH_NLRI
// becomes an MP_UNREACH_NLRI of its prefixes (the checked ones: those
// before an attribute that overruns the field), every other attribute
// goes.
func treatAsWithdraw(body []byte) []byte {
	withdrawn, attrs, field, nlri := splitUpdate(body)
	w := append(append([]byte{}, withdrawn...), nlri...)
	var keep [][]byte
	for _, a := range attrs {
		switch a.typ {
		case attrMPUnreach:
			keep = append(keep, field[a.start:a.end])
		case attrMPReach:
			v := a.value
			if len(v) < 4 || 3+1+int(v[3])+1 > len(v) {
				continue // the rules refuse it before
			}
			un := append(append([]byte{}, v[:3]...), v[3+1+int(v[3])+1:]...)
			keep = append(keep, mpUnreach(un))
		}
	}
	return buildUpdate(w, keep, nil)
}

func mpUnreach(v []byte) []byte {
	if len(v) > 255 {
		return append(binary.BigEndian.AppendUint16([]byte{byte(bgp.BGP_ATTR_FLAG_OPTIONAL) | attrFlagExtended, attrMPUnreach}, uint16(len(v))), v...)
	}
	return append([]byte{byte(bgp.BGP_ATTR_FLAG_OPTIONAL), attrMPUnreach, byte(len(v))}, v...)
}

// emptyUpdate: no withdrawn routes, attributes or NLRI.
func emptyUpdate(body []byte) bool { return len(body) == 4 && body[0]|body[1]|body[2]|body[3] == 0 }

// as4PathLast moves the AS4_PATH attributes behind all the others.
func as4PathLast(body []byte) []byte {
	withdrawn, attrs, field, nlri := splitUpdate(body)
	var front, back [][]byte
	for _, a := range attrs {
		if a.typ == attrAs4Path {
			back = append(back, field[a.start:a.end])
		} else {
			front = append(front, field[a.start:a.end])
		}
	}
	return buildUpdate(withdrawn, append(front, back...), nlri)
}

// withoutAttr is body without the attributes of type t.
func withoutAttr(body []byte, t byte) []byte {
	withdrawn, attrs, field, nlri := splitUpdate(body)
	var keep [][]byte
	for _, a := range attrs {
		if a.typ != t {
			keep = append(keep, field[a.start:a.end])
		}
	}
	return buildUpdate(withdrawn, keep, nlri)
}

// culprit finds the attribute on whose decoding GoBGP panics, decoding
// each (but the MP ones, which the rules cover) alone.
func culprit(body []byte) (typ byte, found bool) {
	_, attrs, field, _ := splitUpdate(body)
	for _, a := range attrs {
		if a.typ == attrMPReach || a.typ == attrMPUnreach {
			continue
		}
		if decodePanics(field[a.start:a.end]) {
			return a.typ, true
		}
	}
	return 0, false
}

func decodePanics(b []byte) (panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	pa, err := bgp.GetPathAttribute(b)
	if err != nil {
		return false
	}
	pa.DecodeFromBytes(b)
	return false
}
