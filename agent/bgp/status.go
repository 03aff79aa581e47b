package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// SessionState is a peer's BGP FSM state (RFC 4271 8.2.2).
type SessionState int

const (
	StateUnknown SessionState = iota
	StateIdle
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

func (s SessionState) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateConnect:
		return "connect"
	case StateActive:
		return "active"
	case StateOpenSent:
		return "opensent"
	case StateOpenConfirm:
		return "openconfirm"
	case StateEstablished:
		return "established"
	}
	return "unknown"
}

func stateFromAPI(s api.PeerState_SessionState) SessionState {
	if s >= api.PeerState_IDLE && s <= api.PeerState_ESTABLISHED {
		return SessionState(s) // the same numbering, on purpose
	}
	return StateUnknown
}

// EventKind says what an Event reports.
type EventKind int

const (
	// RouteAdded: Route is the new best path for its key, replacing any
	// earlier one with that key.
	RouteAdded EventKind = iota + 1
	// RouteWithdrawn: the key has no usable path any more; Route carries
	// the key (Family, RD, Prefix) and the Peer that withdrew it.
	RouteWithdrawn
	// InitialTableDone: every best path known when Subscribe was called
	// has been delivered; a reconcile may start.
	InitialTableDone
	// PeerState: Peer's session moved to State; Reason says why it is not
	// established, when known.
	PeerState
	// EndOfRIB: Peer has sent all its routes of Family (RFC 4724), e.g.
	// after a restart: what the agent has not received by then is gone.
	EndOfRIB
)

func (k EventKind) String() string {
	switch k {
	case RouteAdded:
		return "route-added"
	case RouteWithdrawn:
		return "route-withdrawn"
	case InitialTableDone:
		return "initial-table-done"
	case PeerState:
		return "peer-state"
	case EndOfRIB:
		return "end-of-rib"
	}
	return "event(" + fmt.Sprint(int(k)) + ")"
}

// Event is one thing a subscriber learns, in the order it happened.
type Event struct {
	Kind   EventKind
	Route  Route        // RouteAdded, RouteWithdrawn
	Peer   netip.Addr   // PeerState, EndOfRIB (and Route.Peer for routes)
	Family Family       // EndOfRIB
	State  SessionState // PeerState
	Reason string       // PeerState
}

func (e Event) String() string {
	switch e.Kind {
	case RouteAdded, RouteWithdrawn:
		return e.Kind.String() + " " + e.Route.String()
	case PeerState:
		s := fmt.Sprintf("peer %v %v", e.Peer, e.State)
		if e.Reason != "" {
			s += " (" + e.Reason + ")"
		}
		return s
	case EndOfRIB:
		return fmt.Sprintf("end-of-rib %v %v", e.Peer, e.Family)
	}
	return e.Kind.String()
}

// FamilyStatus counts one family's routes on a session.
type FamilyStatus struct {
	Family     Family
	Received   uint64 // in the peer's Adj-RIB-In
	Accepted   uint64 // of those, accepted by policy
	Advertised uint64 // sent to the peer
}

// PeerStatus is what `weft ctl peers` shows of one session.
type PeerStatus struct {
	Address  netip.Addr
	ASN      uint32
	RouterID netip.Addr // the peer's, once an OPEN arrived
	State    SessionState
	Uptime   time.Duration // in Established; 0 otherwise
	Flaps    uint32        // sessions that went down soon after coming up
	// LastError says, as best the speaker can tell, why the session is
	// not established or why it last went down: a NOTIFICATION sent or
	// received, hold timer expiry, a malformed message, or a TCP MD5
	// mismatch inferred from the kernel's drop counters.
	LastError     string
	LastErrorTime time.Time
	// MalformedUpdates counts UPDATEs that GoBGP treated as withdraw (RFC
	// 7606), stripped of attributes, or reset the session for;
	// LastInputError describes the last one.
	MalformedUpdates uint64
	// RFC 7606's actions on them, by the guard or GoBGP: prefixes
	// treated as withdrawn, attributes discarded, sessions reset.
	TreatAsWithdraw, AttributeDiscards, MalformedResets uint64
	LastInputError                                      string
	UpdatesReceived                                     uint64
	UpdatesSent                                         uint64
	Families                                            []FamilyStatus
	// RouteTargetConstraint: the session negotiated RFC 4684 (we offered
	// it and so did the peer), so the peer sends only the routes of the
	// route targets the node imports.
	RouteTargetConstraint bool
}

func (p PeerStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v AS%d %v", p.Address, p.ASN, p.State)
	if p.State == StateEstablished {
		fmt.Fprintf(&b, " up %v", p.Uptime.Round(time.Second))
	}
	for _, f := range p.Families {
		fmt.Fprintf(&b, " %v %d/%d/%d", f.Family, f.Received, f.Accepted, f.Advertised)
	}
	if p.RouteTargetConstraint {
		b.WriteString(" rtc")
	}
	if p.LastError != "" {
		b.WriteString(" last error: " + p.LastError)
	}
	if p.MalformedUpdates > 0 {
		fmt.Fprintf(&b, " malformed updates: %d (withdrawn %d, discarded %d, reset %d: %s)", p.MalformedUpdates, p.TreatAsWithdraw, p.AttributeDiscards, p.MalformedResets, p.LastInputError)
	}
	return b.String()
}

// Peers returns the state of every configured session, sorted by address.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	peers := make(map[netip.Addr]Peer, len(s.peers))
	added := make(map[netip.Addr]time.Time, len(s.added))
	base := make(map[netip.Addr]md5Counters, len(s.md5Base))
	flaps := make(map[netip.Addr]uint32, len(s.flapBase))
	for a, p := range s.peers {
		peers[a], added[a], base[a], flaps[a] = p, s.added[a], s.md5Base[a], s.flapBase[a]
	}
	s.mu.Unlock()
	var list []*api.Peer
	s.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) { list = append(list, p) })
	byAddr := make(map[netip.Addr]*api.Peer, len(list))
	for _, p := range list {
		if p.Conf == nil {
			continue
		}
		if a, err := netip.ParseAddr(p.Conf.NeighborAddress); err == nil {
			byAddr[s.addrs.realAddr(a.Unmap())] = p
		}
	}
	md5Now, md5OK := readMD5Counters()
	out := make([]PeerStatus, 0, len(peers))
	for a, cfgPeer := range peers {
		st := PeerStatus{Address: a, ASN: cfgPeer.ASN, State: StateIdle}
		if p := byAddr[a]; p != nil {
			fillStatus(&st, p, s.cfg.GracefulRestart)
		}
		st.Flaps += flaps[a]
		d := s.diag.get(a)
		st.LastError, st.LastErrorTime = d.lastError, d.lastErrorTime
		st.MalformedUpdates, st.LastInputError = d.malformed, d.lastInputError
		st.TreatAsWithdraw, st.AttributeDiscards, st.MalformedResets = d.treatAsWithdraw, d.discards, d.resets
		if st.State != StateEstablished {
			if hint := md5Hint(cfgPeer, base[a], md5Now, md5OK, time.Since(added[a])); hint != "" {
				if st.LastError != "" {
					hint += "; before that: " + st.LastError
				}
				st.LastError, st.LastErrorTime = hint, time.Now()
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out
}

// fillStatus reads GoBGP's view of a session. Families are those the
// session negotiated (configured here and in the peer's OPEN), none
// while it is down; Advertised leaves out the End-of-RIB marker GoBGP
// counts as a path when graceful restart is on (gr, and in the peer's
// OPEN), so that it matches what the peer received.
func fillStatus(st *PeerStatus, p *api.Peer, gr bool) {
	if ps := p.State; ps != nil {
		st.State = stateFromAPI(ps.SessionState)
		if a, err := netip.ParseAddr(ps.RouterId); err == nil && !a.IsUnspecified() {
			st.RouterID = a
		}
		st.Flaps = ps.Flops
		if m := ps.Messages; m != nil {
			if m.Received != nil {
				st.UpdatesReceived = m.Received.Update
			}
			if m.Sent != nil {
				st.UpdatesSent = m.Sent.Update
			}
		}
	}
	if st.State == StateEstablished && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
		st.Uptime = time.Since(p.Timers.State.Uptime.AsTime())
	}
	if st.State != StateEstablished {
		return
	}
	remote, remoteGR := remoteCapabilities(p)
	for _, af := range p.AfiSafis {
		if af.State == nil || af.State.Family == nil {
			continue
		}
		rf := apiutil.ToRouteFamily(af.State.Family)
		if rf == bgp.RF_RTC_UC && remote[rf] {
			st.RouteTargetConstraint = true
		}
		f, ok := familyOf(rf)
		if !ok || !remote[rf] {
			continue
		}
		fs := FamilyStatus{Family: f, Received: af.State.Received, Accepted: af.State.Accepted, Advertised: af.State.Advertised}
		if gr && remoteGR && fs.Advertised > 0 {
			fs.Advertised-- // GoBGP's getBestFromLocal appends the End-of-RIB
		}
		st.Families = append(st.Families, fs)
	}
}

// remoteCapabilities are the families of the peer's OPEN (multiprotocol
// capabilities, or IPv4 unicast when it has none: RFC 4760) and whether
// it offers graceful restart.
func remoteCapabilities(p *api.Peer) (map[bgp.RouteFamily]bool, bool) {
	fams := map[bgp.RouteFamily]bool{}
	caps, err := apiutil.UnmarshalCapabilities(p.GetState().GetRemoteCap())
	if err != nil {
		return fams, false
	}
	gr := false
	for _, c := range caps {
		switch c := c.(type) {
		case *bgp.CapMultiProtocol:
			fams[c.CapValue] = true
		case *bgp.CapGracefulRestart:
			gr = true
		}
	}
	if len(fams) == 0 {
		fams[bgp.RF_IPv4_UC] = true
	}
	return fams, gr
}

// md5Hint explains a session that does not come up when the kernel's
// counters point at TCP MD5: that failure is silent on the wire.
func md5Hint(p Peer, base, now md5Counters, ok bool, configured time.Duration) string {
	if !ok {
		return ""
	}
	if p.Password != "" {
		if n := (now.failure - base.failure) + (now.notFound - base.notFound); n > 0 {
			return fmt.Sprintf("no session: since this peer was configured the kernel dropped %d TCP segments with a wrong or missing MD5 signature (TCPMD5Failure/TCPMD5NotFound, counted for the whole network namespace): the passwords most likely differ", n)
		}
		if configured > 2*p.ConnectRetry+5*time.Second {
			return "no session yet, and TCP MD5 is on: a password mismatch drops the peer's segments silently, so it looks like an unreachable peer"
		}
		return ""
	}
	if n := now.unexpected - base.unexpected; n > 0 {
		return fmt.Sprintf("no session: the kernel dropped %d TCP segments signed with TCP MD5 while no password is configured (TCPMD5Unexpected, namespace-wide): the peer likely expects one", n)
	}
	return ""
}
