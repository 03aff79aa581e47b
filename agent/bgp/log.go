package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpLogger hands GoBGP's log lines to slog, with Weft's stable keys
// (GoBGP's "Key" is the neighbour address: "peer"), and feeds the lines
// that explain a session's trouble to the peer diagnostics: GoBGP's API
// has no "last error" of its own.
type gobgpLogger struct {
	l    *slog.Logger
	diag *diagnostics
	// addrs turns GoBGP's name for a peer (its guard loopback address)
	// into the peer's real address.
	addrs *addrBook
}

var _ log.Logger = (*gobgpLogger)(nil)

// GoBGP calls Panic and Fatal on what it deems logic bugs; an embedded
// speaker must not take the agent down for them.
func (g *gobgpLogger) Panic(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g *gobgpLogger) Fatal(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g *gobgpLogger) Error(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g *gobgpLogger) Warn(msg string, f log.Fields)  { g.emit(slog.LevelWarn, msg, f) }
func (g *gobgpLogger) Info(msg string, f log.Fields)  { g.emit(slog.LevelInfo, msg, f) }
func (g *gobgpLogger) Debug(msg string, f log.Fields) { g.emit(slog.LevelDebug, msg, f) }

func (g *gobgpLogger) SetLevel(log.LogLevel) {}

// GetLevel gates GoBGP's per-UPDATE debug lines, which are costly to
// build: they are only produced when the slog handler wants debug.
func (g *gobgpLogger) GetLevel() log.LogLevel {
	if g.l.Enabled(context.Background(), slog.LevelDebug) {
		return log.DebugLevel
	}
	return log.InfoLevel
}

// quieter are GoBGP warnings that are routine here.
var quieter = map[string]slog.Level{
	// FRR reflects a client's own routes back; GoBGP drops them (the
	// ORIGINATOR_ID is ours), then warns when their withdrawal comes.
	"No matching path for withdraw found, may be path was not installed into table": slog.LevelDebug,
	// A peer dialling while GoBGP holds the session idle after a drop.
	"Closed an accepted connection": slog.LevelInfo,
}

func (g *gobgpLogger) emit(level slog.Level, msg string, f log.Fields) {
	peer := g.addrs.real(fieldString(f, "Key"))
	if g.diag != nil {
		g.diag.observe(peer, msg, f)
	}
	if l, ok := quieter[msg]; ok && l < level {
		level = l
	}
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(f)+1)
	attrs = append(attrs, slog.String("component", "gobgp"))
	for k, v := range f {
		switch k {
		case "Key":
			k, v = "peer", peer
		case "Topic":
			k = "topic"
		default:
			k = strings.ToLower(k)
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	g.l.LogAttrs(context.Background(), level, msg, attrs...)
}

// addrBook maps the loopback addresses GoBGP knows peers by to their
// real addresses. Entries stay after a peer is removed, so that GoBGP's
// last lines and events about it still name it.
type addrBook struct {
	mu     sync.RWMutex
	toReal map[netip.Addr]netip.Addr
}

func newAddrBook() *addrBook { return &addrBook{toReal: make(map[netip.Addr]netip.Addr)} }

func (b *addrBook) add(lo, real netip.Addr) {
	b.mu.Lock()
	b.toReal[lo] = real
	b.mu.Unlock()
}

// realAddr is the peer GoBGP calls lo; lo itself if it is none.
func (b *addrBook) realAddr(lo netip.Addr) netip.Addr {
	if b == nil {
		return lo
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if a, ok := b.toReal[lo]; ok {
		return a
	}
	return lo
}

// real is realAddr for an address as GoBGP writes it; s unchanged if it
// is not an address.
func (b *addrBook) real(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return b.realAddr(a.Unmap()).String()
}

// peerDiag is what the log lines told about one peer.
type peerDiag struct {
	lastError     string
	lastErrorTime time.Time
	// guardUntil: the guard reset the session; until then, GoBGP's own
	// lines about that reset (the NOTIFICATION the guard handed it) do
	// not replace the guard's reason.
	guardUntil time.Time
	// Malformed UPDATEs: treated as withdraw (RFC 7606), attributes
	// discarded, a family disabled, or the session reset.
	malformed      uint64
	lastInputError string
}

type diagnostics struct {
	mu    sync.Mutex
	peers map[netip.Addr]*peerDiag
}

func newDiagnostics() *diagnostics { return &diagnostics{peers: make(map[netip.Addr]*peerDiag)} }

func (d *diagnostics) get(a netip.Addr) peerDiag {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.peers[a]; p != nil {
		return *p
	}
	return peerDiag{}
}

func (d *diagnostics) forget(a netip.Addr) {
	d.mu.Lock()
	delete(d.peers, a)
	d.mu.Unlock()
}

func fieldString(f log.Fields, k string) string {
	v, ok := f[k]
	if !ok || v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func fieldUint8(f log.Fields, k string) uint8 {
	switch v := f[k].(type) {
	case uint8:
		return v
	case int:
		return uint8(v)
	}
	return 0
}

func (d *diagnostics) peerLocked(a netip.Addr) *peerDiag {
	p := d.peers[a]
	if p == nil {
		p = &peerDiag{}
		d.peers[a] = p
	}
	return p
}

// note records why a session is not up, from the relay (a failed dial).
func (d *diagnostics) note(a netip.Addr, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peerLocked(a)
	if time.Now().Before(p.guardUntil) {
		return
	}
	p.lastError, p.lastErrorTime = reason, time.Now()
}

// guardHold is how long the guard's reason for a reset outranks GoBGP's
// account of the same reset.
const guardHold = 3 * time.Second

// refused records a message the guard refused, resetting the session.
func (d *diagnostics) refused(a netip.Addr, gerr *guardError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peerLocked(a)
	now := time.Now()
	p.malformed++
	p.lastInputError = "malformed message refused by the BGP guard, session reset: " + gerr.reason
	p.lastError = "malformed message refused by the BGP guard, session reset: notification sent: " +
		bgp.NewNotificationErrorCode(gerr.code, gerr.subcode).String() + ": " + gerr.reason
	p.lastErrorTime = now
	p.guardUntil = now.Add(guardHold)
}

// observe picks the lines that explain why a session went down or why an
// UPDATE was refused. The messages are GoBGP v3.37's own; peer is the
// line's peer, as a real address.
func (d *diagnostics) observe(peer, msg string, f log.Fields) {
	addr, err := netip.ParseAddr(peer)
	if err != nil {
		return
	}
	addr = addr.Unmap()
	var sessionErr, inputErr string
	switch msg {
	case "Peer Down":
		sessionErr = "session down: " + fieldString(f, "Reason")
	case "received notification":
		code, sub := fieldUint8(f, "Code"), fieldUint8(f, "Subcode")
		sessionErr = "notification received: " + bgp.NewNotificationErrorCode(code, sub).String()
		if c := fieldString(f, "Communicated-Reason"); c != "" {
			sessionErr += " (" + c + ")"
		}
	case "sent notification":
		// "Peer Down", which follows, names the code; Data adds the
		// parser's complaint when there is one.
		sessionErr = "notification sent"
		if d := fieldString(f, "Data"); d != "" && d != "[]" {
			sessionErr += ": " + d
		}
	case "hold timer expired":
		sessionErr = "hold timer expired"
	case "Session will be reset due to malformed BGP message",
		"Session will be reset due to malformed BGP update message",
		"Session will be reset due to malformed BGP Header":
		e := fieldString(f, "Error")
		if e == "" {
			e = fieldString(f, "error")
		}
		sessionErr = "malformed message, session reset: " + e
		inputErr = sessionErr
	case "the received Update message was treated as withdraw":
		inputErr = "malformed UPDATE treated as withdraw: " + fieldString(f, "Error")
	case "Some attributes were discarded":
		inputErr = "malformed attributes discarded: " + fieldString(f, "Error")
	case "Capability was disabled":
		inputErr = "family disabled after a malformed UPDATE: " + fieldString(f, "Error")
		sessionErr = inputErr
	case "failed to set md5":
		sessionErr = "cannot set the TCP MD5 key on the listener: " + fieldString(f, "Err")
	case "graceful restart timer expired":
		sessionErr = "graceful restart timer expired: stale routes dropped"
	case "prefix limit reached":
		sessionErr = "prefix limit reached"
	default:
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peerLocked(addr)
	if time.Now().Before(p.guardUntil) {
		switch msg {
		case "received notification", "sent notification", "Peer Down":
			return // the guard's own reset, already told
		}
	}
	if inputErr != "" {
		p.malformed++
		p.lastInputError = inputErr
	}
	// "Peer Down" follows the line that says why: keep the cause, and
	// add the down reason only when nothing more precise came just
	// before.
	if sessionErr != "" {
		now := time.Now()
		if msg == "Peer Down" && p.lastError != "" && now.Sub(p.lastErrorTime) < time.Second && !strings.HasPrefix(p.lastError, "session down") {
			p.lastError += "; " + sessionErr
		} else {
			p.lastError = sessionErr
		}
		p.lastErrorTime = now
	}
}
