package bgpguard

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// A session as a relay carries it: messages framed in both directions,
// the peer's through the guard (guard.go, rfc7606.go), GoBGP's as they
// are but for the corrections of Options.RewriteOpen and the End-of-RIB
// filter (unnegotiatedEOR).

// Options are what one relayed session needs besides its two connections.
type Options struct {
	Log *slog.Logger
	// RewriteOpen, when set, is GoBGP's OPEN as the peer gets it (nil:
	// unchanged).
	RewriteOpen func(open []byte) []byte
	// BlockLoopbackNextHop: GoBGP sees a loopback session where the real
	// one is not (see LoopbackNextHopBlocked).
	BlockLoopbackNextHop bool
	// OnEvent is told, on the session's goroutine, of every malformed
	// message and what the guard did with it.
	OnEvent func(Event)
}

// Session is one TCP session with the peer and its twin with GoBGP.
type Session struct {
	o           Options
	peer, gobgp net.Conn

	pmu        sync.Mutex // writes to peer
	peerClosed bool

	localOpen chan struct{} // closed once GoBGP's OPEN is known
	local     openCaps      // GoBGP's OPEN; read after localOpen
	// remote is the peer's OPEN, stored before it is passed to GoBGP
	// (so before GoBGP can send an UPDATE); nil until then.
	remote    atomic.Pointer[openCaps]
	gobgpDone chan struct{} // closed when gobgpToPeer returns
}

// NewSession relays between peer, the real connection, and gobgp, a
// connection to GoBGP over the hop (Hop.Dial); Run carries it.
func NewSession(peer, gobgp net.Conn, o Options) *Session {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.OnEvent == nil {
		o.OnEvent = func(Event) {}
	}
	return &Session{o: o, peer: peer, gobgp: gobgp, localOpen: make(chan struct{}), gobgpDone: make(chan struct{})}
}

// Run carries the session until either side ends it, and closes both
// connections.
func (s *Session) Run() {
	done := make(chan struct{})
	go func() { s.gobgpToPeer(); close(s.gobgpDone) }()
	go func() { s.peerToGobgp(); <-s.gobgpDone; close(done) }()
	<-done
	s.gobgp.Close()
}

// Close cuts both connections at once: the peer hears nothing more
// (no NOTIFICATION), as if the process had died.
func (s *Session) Close() {
	s.closePeer()
	s.gobgp.Close()
}

// LoopbackNextHopBlocked reports whether GoBGP, seeing a session from
// gobgpLocal (its own address for the peer; invalid: a loopback one) to
// loopback, would accept a loopback NEXT_HOP that it refuses on the real
// session from realLocal to realRemote: GoBGP accepts one when both ends
// of its session are IPv4 loopback.
func LoopbackNextHopBlocked(gobgpLocal, realLocal, realRemote netip.Addr) bool {
	gobgpAllows := !gobgpLocal.IsValid() || (gobgpLocal.Is4() && gobgpLocal.IsLoopback())
	realAllows := realLocal.Is4() && realRemote.Is4() && realLocal.IsLoopback() && realRemote.IsLoopback()
	return gobgpAllows && !realAllows
}

func (s *Session) closePeer() {
	s.pmu.Lock()
	s.peerClosed = true
	s.pmu.Unlock()
	s.peer.Close()
}

// writePeer writes whole messages to the peer, unless the session has
// been cut.
func (s *Session) writePeer(b []byte) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.peerClosed {
		return net.ErrClosed
	}
	_, err := s.peer.Write(b)
	return err
}

// framer reads BGP messages from a connection into one buffer, without
// copying them: buf[r:w] is what is read and not yet consumed.
type framer struct {
	c    net.Conn
	buf  []byte
	r, w int
}

func newFramer(c net.Conn) *framer { return &framer{c: c, buf: make([]byte, relayBuf)} }

// fill reads what the connection has, keeping room for a whole message.
func (f *framer) fill() error {
	if f.r == f.w {
		f.r, f.w = 0, 0
	} else if len(f.buf)-f.r < bgpMaxExtendedLen {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	n, err := f.c.Read(f.buf[f.w:])
	f.w += n
	return err
}

// next returns the message at offset pos of the unread bytes, if whole;
// header is non-nil when at least a header is there.
func (f *framer) next(pos int) (header, msg []byte) {
	b := f.buf[pos:f.w]
	if len(b) < bgp.BGP_HEADER_LENGTH {
		return nil, nil
	}
	n := int(binary.BigEndian.Uint16(b[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || len(b) < n {
		return b[:bgp.BGP_HEADER_LENGTH], nil
	}
	return b[:bgp.BGP_HEADER_LENGTH], b[:n]
}

// gobgpToPeer passes GoBGP's messages on, noting its OPEN; when GoBGP
// closes (a NOTIFICATION sent, a peer removed, or refusing a session it
// holds idle), the peer's connection is closed after what was read.
func (s *Session) gobgpToPeer() {
	defer s.closePeer()
	f := newFramer(s.gobgp)
	sawOpen := false
	for {
		err := f.fill()
		pos := f.r
		for {
			h, m := f.next(pos)
			if m == nil {
				if h != nil && int(binary.BigEndian.Uint16(h[16:18])) < bgp.BGP_HEADER_LENGTH {
					s.o.Log.Error("bgp guard: GoBGP sent a message of bad length: closing", "length", binary.BigEndian.Uint16(h[16:18]))
					return
				}
				break
			}
			var replace []byte
			drop := false
			switch {
			case !sawOpen && m[18] == bgp.BGP_MSG_OPEN:
				sawOpen = true
				s.local, _ = parseOpen(m[bgp.BGP_HEADER_LENGTH:])
				close(s.localOpen)
				if s.o.RewriteOpen != nil {
					replace = s.o.RewriteOpen(m)
				}
			case m[18] == bgp.BGP_MSG_UPDATE && unnegotiatedEOR(m, s.remote.Load()):
				drop = true
			}
			if replace != nil || drop {
				// What came before goes out as it was, then the
				// replacement (or nothing) instead of m.
				if pos > f.r {
					if werr := s.writePeer(f.buf[f.r:pos]); werr != nil {
						return
					}
				}
				if replace != nil {
					if werr := s.writePeer(replace); werr != nil {
						return
					}
				}
				pos += len(m)
				f.r = pos
				continue
			}
			pos += len(m)
		}
		if pos > f.r {
			if werr := s.writePeer(f.buf[f.r:pos]); werr != nil {
				return
			}
			f.r = pos
		}
		if err != nil {
			return
		}
	}
}

// peerToGobgp passes the peer's messages to GoBGP through the guard.
func (s *Session) peerToGobgp() {
	f := newFramer(s.peer)
	var (
		remote     openCaps
		sawOpen    bool
		negotiated *sessionCaps
	)
	maxLen := bgpMaxLen
	// check returns what GoBGP gets instead of m (replace, or nothing
	// with drop), or why the session is reset.
	check := func(m []byte) (replace []byte, drop bool, gerr *guardError) {
		typ, body := m[18], m[bgp.BGP_HEADER_LENGTH:]
		switch typ {
		case bgp.BGP_MSG_OPEN:
			c, gerr := parseOpen(body)
			if gerr != nil {
				return nil, false, gerr
			}
			if !sawOpen {
				remote, sawOpen = c, true
				s.remote.Store(&c)
			}
			return nil, false, nil
		case bgp.BGP_MSG_UPDATE:
			if negotiated == nil {
				if !sawOpen || !chanClosed(s.localOpen) {
					sub := uint8(1) // RFC 6608: unexpected message in OpenSent
					if sawOpen {
						sub = 2 // ... in OpenConfirm
					}
					return nil, false, refuse(bgp.BGP_ERROR_FSM_ERROR, sub, nil, "UPDATE before the OPENs were exchanged")
				}
				negotiated = negotiate(s.local, remote, s.o.BlockLoopbackNextHop)
				maxLen = negotiated.maxLen()
			}
			out, ev, note, gerr := negotiated.guardUpdate(body)
			if gerr != nil {
				return nil, false, gerr
			}
			if note != "" {
				s.o.Log.Info("bgp guard: changed an UPDATE", "why", note)
			}
			if ev != nil {
				s.o.Log.Warn("bgp guard: malformed UPDATE, "+ev.Action.String(), "reason", ev.Reason, "message", excerpt(m))
				s.o.OnEvent(*ev)
			}
			switch {
			case out == nil:
				return nil, true, nil
			case len(out) != len(body) || &out[0] != &body[0]:
				return frame(bgp.BGP_MSG_UPDATE, out), false, nil
			}
			return nil, false, nil
		case bgp.BGP_MSG_KEEPALIVE:
			return nil, false, nil
		}
		return nil, false, canary(negotiated, typ, body)
	}
	for {
		err := f.fill()
		pos := f.r
		var gerr *guardError
		for {
			h, m := f.next(pos)
			if h == nil {
				break
			}
			if gerr = checkHeader(h, maxLen); gerr != nil {
				break
			}
			if m == nil {
				break
			}
			replace, drop, cerr := check(m)
			if gerr = cerr; gerr != nil {
				gerr.refused = m
				break
			}
			if replace != nil || drop {
				// What came before goes as it was, then the
				// replacement (or nothing) instead of m.
				if _, werr := s.gobgp.Write(f.buf[f.r:pos]); werr != nil {
					s.peer.Close()
					return
				}
				if replace != nil {
					if _, werr := s.gobgp.Write(replace); werr != nil {
						s.peer.Close()
						return
					}
				}
				pos += len(m)
				f.r = pos
				continue
			}
			pos += len(m)
		}
		if pos > f.r {
			if _, werr := s.gobgp.Write(f.buf[f.r:pos]); werr != nil {
				s.peer.Close()
				return
			}
			f.r = pos
		}
		if gerr != nil {
			s.refuse(gerr)
			return
		}
		if err != nil {
			// The peer went away: GoBGP sees its connection drop
			// too, with no NOTIFICATION (graceful restart applies).
			s.gobgp.Close()
			return
		}
	}
}

// frame puts a BGP header in front of a body.
func frame(typ byte, body []byte) []byte {
	b := make([]byte, bgp.BGP_HEADER_LENGTH, bgp.BGP_HEADER_LENGTH+len(body))
	for i := range 16 {
		b[i] = 0xff
	}
	binary.BigEndian.PutUint16(b[16:], uint16(bgp.BGP_HEADER_LENGTH+len(body)))
	b[18] = typ
	return append(b, body...)
}

func chanClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// refuse ends the session over a message the guard will not pass: the
// peer gets the NOTIFICATION (and the connection closed), so does GoBGP,
// which then drops the peer's routes as it would had it found the error
// itself, and holds the peer idle before the next session.
func (s *Session) refuse(gerr *guardError) {
	notif, _ := bgp.NewBGPNotificationMessage(gerr.code, gerr.subcode, gerr.data).Serialize()
	s.o.Log.Warn("bgp guard: refused a message, resetting the session", "reason", gerr.reason,
		"code", gerr.code, "subcode", gerr.subcode, "message", excerpt(gerr.refused))
	s.o.OnEvent(Event{Action: Reset, Code: gerr.code, Subcode: gerr.subcode, Reason: gerr.reason})
	// A write of GoBGP's stuck on a peer that does not read holds pmu:
	// the deadline frees it.
	s.peer.SetWriteDeadline(time.Now().Add(time.Second))
	s.pmu.Lock()
	if !s.peerClosed {
		s.peer.Write(notif)
		s.peerClosed = true
	}
	s.pmu.Unlock()
	s.peer.Close()
	s.gobgp.SetWriteDeadline(time.Now().Add(time.Second))
	s.gobgp.Write(notif)
	// GoBGP closes its side once it has read the NOTIFICATION.
	select {
	case <-s.gobgpDone:
	case <-time.After(drainTimeout):
	}
	s.gobgp.Close()
}

// unnegotiatedEOR reports whether m is an End-of-RIB for a family that is
// not in the peer's OPEN.
func unnegotiatedEOR(m []byte, remote *openCaps) bool {
	if remote == nil || len(m) > bgp.BGP_HEADER_LENGTH+4+8 {
		// An MP End-of-RIB is 4 bytes of lengths and at most 7 of
		// attribute; anything longer carries routes.
		return false
	}
	msg, err := bgp.ParseBGPMessage(m)
	if err != nil {
		return false
	}
	u, ok := msg.Body.(*bgp.BGPUpdate)
	if !ok {
		return false
	}
	eor, rf := u.IsEndOfRib()
	if !eor {
		return false
	}
	_, offered := remote.families[rf]
	return !offered
}
