package bgp

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// A session as the relay carries it: messages framed in both directions,
// the peer's through the guard (guard.go), GoBGP's as they are.

// relaySession is one TCP session with the peer and its twin with GoBGP.
type relaySession struct {
	r               *relay
	peer, gobgp     net.Conn
	blockLoopbackNH bool // see serve

	pmu        sync.Mutex // writes to peer
	peerClosed bool

	localOpen chan struct{} // closed once GoBGP's OPEN is known
	local     openCaps      // GoBGP's OPEN; read after localOpen
	// remote is the peer's OPEN, stored before it is passed to GoBGP
	// (so before GoBGP can send an UPDATE); nil until then.
	remote    atomic.Pointer[openCaps]
	gobgpDone chan struct{} // closed when gobgpToPeer returns
}

func (s *relaySession) closePeer() {
	s.pmu.Lock()
	s.peerClosed = true
	s.pmu.Unlock()
	s.peer.Close()
}

// writePeer writes whole messages to the peer, unless the session has
// been cut.
func (s *relaySession) writePeer(b []byte) error {
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
func (s *relaySession) gobgpToPeer() {
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
					s.r.log.Error("bgp guard: GoBGP sent a message of bad length: closing", "length", binary.BigEndian.Uint16(h[16:18]))
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
				replace = rewriteOpen(m, s.r.s.cfg.Hostname)
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
func (s *relaySession) peerToGobgp() {
	f := newFramer(s.peer)
	var (
		remote     openCaps
		sawOpen    bool
		negotiated *sessionCaps
	)
	maxLen := bgpMaxLen
	check := func(m []byte) *guardError {
		typ, body := m[18], m[bgp.BGP_HEADER_LENGTH:]
		switch typ {
		case bgp.BGP_MSG_OPEN:
			c, gerr := parseOpen(body)
			if gerr != nil {
				return gerr
			}
			if !sawOpen {
				remote, sawOpen = c, true
				s.remote.Store(&c)
			}
			return nil
		case bgp.BGP_MSG_UPDATE:
			if negotiated == nil {
				if !sawOpen || !chanClosed(s.localOpen) {
					sub := uint8(1) // RFC 6608: unexpected message in OpenSent
					if sawOpen {
						sub = 2 // ... in OpenConfirm
					}
					return refuse(bgp.BGP_ERROR_FSM_ERROR, sub, nil, "UPDATE before the OPENs were exchanged")
				}
				negotiated = negotiate(s.local, remote, s.blockLoopbackNH)
				maxLen = negotiated.maxLen()
			}
			note, gerr := negotiated.checkUpdate(body)
			if gerr != nil {
				return gerr
			}
			if gerr := canary(negotiated, typ, body); gerr != nil {
				s.r.log.Error("bgp guard: GoBGP's parser panics on a message the guard's rules pass: refused", "reason", gerr.reason)
				return gerr
			}
			if note != "" {
				s.r.log.Info("bgp guard: changed an UPDATE", "why", note)
			}
			return nil
		case bgp.BGP_MSG_KEEPALIVE:
			return nil
		}
		return canary(negotiated, typ, body)
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
			if gerr = check(m); gerr != nil {
				gerr.refused = m
				break
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
func (s *relaySession) refuse(gerr *guardError) {
	r := s.r
	notif, _ := bgp.NewBGPNotificationMessage(gerr.code, gerr.subcode, gerr.data).Serialize()
	r.log.Warn("bgp guard: refused a message, resetting the session", "reason", gerr.reason,
		"code", gerr.code, "subcode", gerr.subcode, "message", excerpt(gerr.refused))
	r.s.diag.refused(r.peer.Address, gerr)
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
