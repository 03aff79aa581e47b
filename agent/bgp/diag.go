package bgp

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/internal/bgpguard"
)

// peerDiag is what the log lines told about one peer.
type peerDiag struct {
	lastError     string
	lastErrorTime time.Time
	// guardUntil: the guard reset the session; until then, GoBGP's own
	// lines about that reset (the NOTIFICATION the guard handed it) do
	// not replace the guard's reason.
	guardUntil time.Time
	// Malformed UPDATEs: treated as withdraw (RFC 7606), attributes
	// discarded, a family disabled, or the session reset; and each of
	// RFC 7606's actions apart, by the guard or by GoBGP.
	malformed                         uint64
	treatAsWithdraw, discards, resets uint64
	lastInputError                    string
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

// guarded records a malformed message and what the guard did with it.
func (d *diagnostics) guarded(a netip.Addr, ev bgpguard.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peerLocked(a)
	now := time.Now()
	p.malformed++
	switch ev.Action {
	case bgpguard.TreatAsWithdraw:
		p.treatAsWithdraw++
		p.lastInputError = "malformed UPDATE treated as withdraw by the BGP guard: " + ev.Reason
	case bgpguard.AttributeDiscard:
		p.discards++
		p.lastInputError = "malformed attributes discarded by the BGP guard: " + ev.Reason
	case bgpguard.Reset:
		p.resets++
		p.lastInputError = "malformed message refused by the BGP guard, session reset: " + ev.Reason
		p.lastError = "malformed message refused by the BGP guard, session reset: notification sent: " +
			bgp.NewNotificationErrorCode(ev.Code, ev.Subcode).String() + ": " + ev.Reason
		p.lastErrorTime = now
		p.guardUntil = now.Add(guardHold)
	}
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
	var action bgpguard.Action
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
		action = bgpguard.Reset
	case "the received Update message was treated as withdraw":
		inputErr = "malformed UPDATE treated as withdraw: " + fieldString(f, "Error")
		action = bgpguard.TreatAsWithdraw
	case "Some attributes were discarded":
		inputErr = "malformed attributes discarded: " + fieldString(f, "Error")
		action = bgpguard.AttributeDiscard
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
	switch action {
	case bgpguard.TreatAsWithdraw:
		p.treatAsWithdraw++
	case bgpguard.AttributeDiscard:
		p.discards++
	case bgpguard.Reset:
		p.resets++
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
