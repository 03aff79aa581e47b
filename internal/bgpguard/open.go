package bgpguard

import (
	"encoding/binary"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// What the OPENs negotiated, as the guard needs it to read the peer's
// UPDATEs the way GoBGP will, and the header check every message passes.

const (
	bgpMaxLen         = 4096
	bgpMaxExtendedLen = 65535
	capExtendedMsg    = 6 // RFC 8654
)

// sessionCaps is what the two OPENs negotiated, as GoBGP sees it: the
// guard must decode the peer's UPDATEs the way GoBGP will.
type sessionCaps struct {
	// families negotiated (both OPENs), each with whether the peer
	// sends ADD-PATH identifiers for it.
	families map[bgp.RouteFamily]bool
	// addPath is GoBGP's marshalling option for the session (nil when
	// the peer's OPEN had no ADD-PATH capability), for the canary.
	addPath         *bgp.MarshallingOption
	extendedMessage bool
	// loopbackNextHopBlocked: GoBGP sees a loopback session where the
	// real one is not, so it would accept a loopback NEXT_HOP it must
	// refuse (see checkUpdate).
	loopbackNextHopBlocked bool
}

// openCaps is what one OPEN offers.
type openCaps struct {
	families map[bgp.RouteFamily]bgp.BGPAddPathMode
	addPath  bool // an ADD-PATH capability is present
	extended bool
}

// parseOpen decodes an OPEN body with GoBGP's own parser, so that the
// guard's view of the capabilities is GoBGP's (open2Cap in its fsm.go).
func parseOpen(body []byte) (c openCaps, gerr *guardError) {
	defer func() {
		if r := recover(); r != nil {
			gerr = refuse(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, 0, nil, "OPEN that makes GoBGP's parser panic (%v)", r)
		}
	}()
	hd := &bgp.BGPHeader{Type: bgp.BGP_MSG_OPEN, Len: uint16(bgp.BGP_HEADER_LENGTH + len(body))}
	m, err := bgp.ParseBGPBody(hd, body)
	if err != nil || m == nil {
		// GoBGP refuses it itself, with the right NOTIFICATION.
		return openCaps{}, nil
	}
	open, ok := m.Body.(*bgp.BGPOpen)
	if !ok {
		return openCaps{}, nil
	}
	c.families = make(map[bgp.RouteFamily]bgp.BGPAddPathMode)
	modes := make(map[bgp.RouteFamily]bgp.BGPAddPathMode)
	sawMP := false
	for _, p := range open.OptParams {
		pc, ok := p.(*bgp.OptionParameterCapability)
		if !ok {
			continue
		}
		for _, cp := range pc.Capability {
			switch v := cp.(type) {
			case *bgp.CapMultiProtocol:
				sawMP = true
				c.families[v.CapValue] = bgp.BGP_ADD_PATH_NONE
			case *bgp.CapAddPath:
				c.addPath = true
				for _, t := range v.Tuples {
					modes[t.RouteFamily] = t.Mode
				}
			default:
				if cp.Code() == capExtendedMsg {
					c.extended = true
				}
			}
		}
	}
	if !sawMP {
		// RFC 4760: no capability means IPv4 unicast only.
		c.families[bgp.RF_IPv4_UC] = bgp.BGP_ADD_PATH_NONE
	}
	for f := range c.families {
		c.families[f] = modes[f]
	}
	return c, nil
}

// negotiate combines GoBGP's OPEN (local) and the peer's (remote);
// blockLoopbackNH, see sessionCaps.
func negotiate(local, remote openCaps, blockLoopbackNH bool) *sessionCaps {
	s := &sessionCaps{
		families:               make(map[bgp.RouteFamily]bool),
		extendedMessage:        local.extended && remote.extended,
		loopbackNextHopBlocked: blockLoopbackNH,
	}
	rfMap := make(map[bgp.RouteFamily]bgp.BGPAddPathMode)
	for f, lm := range local.families {
		rm, ok := remote.families[f]
		if !ok {
			continue
		}
		var mode bgp.BGPAddPathMode
		if lm&bgp.BGP_ADD_PATH_SEND != 0 && rm&bgp.BGP_ADD_PATH_RECEIVE != 0 {
			mode |= bgp.BGP_ADD_PATH_SEND
		}
		if lm&bgp.BGP_ADD_PATH_RECEIVE != 0 && rm&bgp.BGP_ADD_PATH_SEND != 0 {
			mode |= bgp.BGP_ADD_PATH_RECEIVE
		}
		rfMap[f] = mode
		s.families[f] = mode&bgp.BGP_ADD_PATH_RECEIVE != 0
	}
	if remote.addPath {
		s.addPath = &bgp.MarshallingOption{AddPath: rfMap}
	}
	return s
}

// maxLen is the longest message the peer may send.
func (s *sessionCaps) maxLen() int {
	if s != nil && s.extendedMessage {
		return bgpMaxExtendedLen
	}
	return bgpMaxLen
}

// checkHeader checks a message header (19 bytes) against the negotiated
// maximum length.
func checkHeader(h []byte, maxLen int) *guardError {
	for _, b := range h[:16] {
		if b != 0xff {
			return refuse(bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED, nil, "message header: marker is not all ones")
		}
	}
	n := int(binary.BigEndian.Uint16(h[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > maxLen {
		return refuse(bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, h[16:18], "message header: length %d outside %d..%d", n, bgp.BGP_HEADER_LENGTH, maxLen)
	}
	if t := h[18]; t < bgp.BGP_MSG_OPEN || t > bgp.BGP_MSG_ROUTE_REFRESH {
		return refuse(bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, h[18:19], "message header: unknown type %d", t)
	}
	return nil
}
