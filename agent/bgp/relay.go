package bgp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/internal/bgpguard"
)

// Every session goes through a relay the speaker owns, where the BGP guard
// checks what the peer sends: the relay holds the real TCP connection to the peer (it dials with the
// source address, TCP MD5 and TTL, or takes the connection the speaker's
// listener accepted) and opens one to GoBGP over the hop, loopback
// signed with a per-process TCP MD5 key (internal/bgpguard). GoBGP
// listens on the hop only and knows each peer as a loopback address of
// its own (bgpguard.HopAddr), so that it still tells peers apart; its neighbours are
// passive: the relay decides when to connect, and GoBGP's FSM (timers,
// graceful restart, NOTIFICATIONs) runs unchanged on the loopback side.
//
// Peer to GoBGP, each message goes through the guard (bgpguard); GoBGP to
// peer, messages pass as they are. Both directions are framed, so that a
// NOTIFICATION the guard sends never lands inside one of GoBGP's messages.

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

const (
	// drainTimeout bounds how long Stop waits for GoBGP's Cease to reach
	// the peer.
	drainTimeout = 2 * time.Second
	// readyPoll is how often a relay looks whether GoBGP accepts a
	// session again (it holds a peer idle for 5 s after any drop).
	readyPoll = 250 * time.Millisecond
)

// relay runs one peer's sessions.
type relay struct {
	s        *Speaker
	peer     Peer
	lo       netip.Addr // GoBGP's name for the peer
	log      *slog.Logger
	incoming chan net.Conn // accepted by the speaker's listeners
	quit     chan struct{} // closed by stop and abandon
	done     chan struct{} // closed when run returns

	mu      sync.Mutex
	cur     *bgpguard.Session
	stopped bool
}

func newRelay(s *Speaker, p Peer, lo netip.Addr) *relay {
	return &relay{
		s: s, peer: p, lo: lo,
		log:      s.log.With("peer", p.Address.String()),
		incoming: make(chan net.Conn, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// offer hands the relay a connection the peer opened; the relay closes
// what it cannot use.
func (r *relay) offer(c net.Conn) {
	select {
	case r.incoming <- c:
	default:
		c.Close()
	}
}

// stop ends the relay; with abandon, the peer's connection is closed at
// once, before GoBGP can say anything (Abandon), otherwise the current
// session goes on until GoBGP closes it or wait gives up.
func (r *relay) stop(abandon bool) {
	r.mu.Lock()
	if !r.stopped {
		r.stopped = true
		close(r.quit)
	}
	cur := r.cur
	r.mu.Unlock()
	if abandon && cur != nil {
		cur.Close()
	}
}

// wait waits for the relay to end, closing the session after d.
func (r *relay) wait(d time.Duration) {
	select {
	case <-r.done:
		return
	case <-time.After(d):
	}
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	if cur != nil {
		cur.Close()
	}
	<-r.done
}

func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/4+1) // like GoBGP, never in lock step with the peer
}

func (r *relay) run() {
	defer close(r.done)
	// The first attempt is immediate: GoBGP's own waited 1-2 s.
	delay := time.Duration(0)
	for {
		var timer *time.Timer
		var tick <-chan time.Time
		if !r.peer.Passive {
			timer = time.NewTimer(delay)
			tick = timer.C
		}
		select {
		case <-r.quit:
			if timer != nil {
				timer.Stop()
			}
			// A connection offered meanwhile.
			select {
			case c := <-r.incoming:
				c.Close()
			default:
			}
			return
		case c := <-r.incoming:
			if timer != nil {
				timer.Stop()
			}
			r.serve(c)
		case <-tick:
			if !r.gobgpReady() {
				delay = readyPoll
				continue
			}
			c, err := r.dial()
			if err != nil {
				select {
				case <-r.quit:
				default:
					r.log.Debug("bgp: cannot connect", "err", err)
					r.s.diag.note(r.peer.Address, "cannot connect: "+errText(err))
				}
				delay = jitter(r.peer.ConnectRetry)
				continue
			}
			r.serve(c)
		}
		delay = jitter(r.peer.ConnectRetry)
	}
}

// errText drops the Go-level noise of a net error ("dial tcp a->b: ").
func errText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// gobgpReady reports whether GoBGP waits for a connection for this peer
// (ACTIVE), rather than holding it idle after a drop or running a
// session.
func (r *relay) gobgpReady() bool {
	ready := false
	r.s.srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: r.lo.String()}, func(p *api.Peer) {
		ready = p.State != nil && p.State.SessionState == api.PeerState_ACTIVE
	})
	return ready
}

func (r *relay) dial() (net.Conn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	d := net.Dialer{
		Timeout: max(r.peer.ConnectRetry-time.Second, time.Second),
		Control: func(_, _ string, c syscall.RawConn) error {
			return r.socketOptions(c)
		},
	}
	if r.peer.LocalAddress.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(r.peer.LocalAddress, 0))
	}
	port := r.peer.Port
	if port == 0 {
		port = bgp.BGP_PORT
	}
	return d.DialContext(ctx, "tcp", netip.AddrPortFrom(r.peer.Address, uint16(port)).String())
}

// ebgp: GoBGP sends to external peers with TTL 1 (no multihop is
// configured); the real socket is the relay's now.
func (r *relay) ebgp() bool { return r.peer.ASN != r.s.cfg.ASN }

func (r *relay) socketOptions(c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if r.peer.Password != "" {
			if serr = bgpguard.SetMD5(int(fd), r.peer.Address, r.peer.Password); serr != nil {
				return
			}
		}
		if r.ebgp() {
			serr = bgpguard.SetTTL(int(fd), r.peer.Address, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// serve runs a session on pc, a connection with the peer, until either
// side ends it.
func (r *relay) serve(pc net.Conn) {
	if r.ebgp() {
		if sc, ok := pc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				rc.Control(func(fd uintptr) { bgpguard.SetTTL(int(fd), r.peer.Address, 1) })
			}
		}
	}
	gc, err := r.s.hop.Dial(r.lo)
	if err != nil {
		r.log.Warn("bgp guard: cannot reach GoBGP on loopback", "err", err)
		pc.Close()
		return
	}
	// GoBGP accepts a loopback NEXT_HOP when its session's local and
	// peer addresses are both IPv4 loopback. Its peer address is always
	// one now, its local address is Peer.LocalAddress or, unset, its
	// loopback one: where that lets GoBGP accept what it would have
	// refused from the real session, the guard keeps the refusal.
	la, _ := addrOf(pc.LocalAddr())
	ra, _ := addrOf(pc.RemoteAddr())
	sess := bgpguard.NewSession(pc, gc, bgpguard.Options{
		Log:                  r.log,
		RewriteOpen:          func(m []byte) []byte { return rewriteOpen(m, r.s.cfg.Hostname) },
		BlockLoopbackNextHop: bgpguard.LoopbackNextHopBlocked(r.peer.LocalAddress, la, ra),
		OnEvent:              func(ev bgpguard.Event) { r.s.diag.guarded(r.peer.Address, ev) },
	})
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		pc.Close()
		gc.Close()
		return
	}
	r.cur = sess
	r.mu.Unlock()
	r.log.Debug("bgp guard: session", "local", pc.LocalAddr().String(), "remote", pc.RemoteAddr().String(), "gobgp", gc.LocalAddr().String())
	done := make(chan struct{})
	go func() { sess.Run(); close(done) }()
	for {
		select {
		case <-done:
			r.mu.Lock()
			r.cur = nil
			r.mu.Unlock()
			r.log.Debug("bgp guard: session ended", "remote", pc.RemoteAddr().String())
			return
		case c := <-r.incoming:
			// What GoBGP does with a second connection while a session
			// is in progress.
			r.log.Info("bgp guard: closed a connection from the peer, a session is in progress")
			c.Close()
		}
	}
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ap := ta.AddrPort()
	return ap.Addr().Unmap(), ap.IsValid()
}

// accept hands the connections ln accepts to the relay of the peer they
// come from.
func (s *Speaker) accept(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("bgp: accept", "addr", ln.Addr().String(), "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ra, _ := addrOf(c.RemoteAddr())
		la, _ := addrOf(c.LocalAddr())
		s.relayMu.RLock()
		r := s.relays[ra]
		s.relayMu.RUnlock()
		switch {
		case r == nil:
			s.log.Info("bgp: closed a connection from an address that is no peer", "peer", ra.String())
			c.Close()
		case r.peer.LocalAddress.IsValid() && r.peer.LocalAddress != la:
			s.log.Info("bgp: closed a connection from a peer to another local address than configured", "peer", ra.String(), "local", la.String())
			c.Close()
		default:
			r.offer(c)
		}
	}
}

// setListenerMD5 sets (or, with an empty password, removes) the peer's
// TCP MD5 key on every listener of its address family.
func (s *Speaker) setListenerMD5(a netip.Addr, password string) error {
	for _, ln := range s.listeners {
		if err := bgpguard.ListenerMD5(ln, netip.PrefixFrom(a, a.BitLen()), password); err != nil {
			return err
		}
	}
	return nil
}
