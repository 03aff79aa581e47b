package fleetsim

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Config is a Generator's session.
type Config struct {
	Fleet    Fleet
	RouterID netip.Addr // the generator's BGP identifier
	Peer     netip.Addr // the reflector (port 179, iBGP in Fleet.ASN)
	// Dial opens the TCP connection to the reflector: a test dials from
	// inside the generator's namespace.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// HoldTime; 0 = 30 s.
	HoldTime time.Duration
	Log      *slog.Logger // nil = discard
}

// Generator is a BGP client of one reflector that announces the whole
// simulated fleet on every session, then holds it; when the session drops
// (a reflector restart) it dials again at once and announces it all again.
type Generator struct {
	cfg     Config
	updates [][]byte
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when sent changes
	sent    int           // sessions on which the whole fleet was sent
	lastErr error
}

// Start builds the fleet's UPDATEs and starts the session loop; Stop ends it.
func Start(cfg Config) (*Generator, error) {
	if err := cfg.Fleet.Validate(); err != nil {
		return nil, err
	}
	if !cfg.RouterID.Is4() || !cfg.Peer.IsValid() || cfg.Dial == nil {
		return nil, errors.New("fleetsim: router ID (IPv4), peer and dial are required")
	}
	if cfg.HoldTime == 0 {
		cfg.HoldTime = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ups, err := cfg.Fleet.updates()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Generator{cfg: cfg, updates: ups, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	go g.run(ctx)
	return g, nil
}

// Stop closes the session and waits for the loop to end.
func (g *Generator) Stop() {
	g.cancel()
	<-g.done
}

// WaitSent waits until the whole fleet, and its End-of-RIB, has been
// written on at least n sessions (n = 2 after one reflector restart).
func (g *Generator) WaitSent(ctx context.Context, n int) error {
	for {
		g.mu.Lock()
		sent, ch, last := g.sent, g.changed, g.lastErr
		g.mu.Unlock()
		if sent >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fleetsim: the fleet was sent on %d sessions, want %d (last session error: %v)", sent, n, last)
		}
	}
}

func (g *Generator) note(sent bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sent {
		g.sent++
	}
	if err != nil {
		g.lastErr = err
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *Generator) run(ctx context.Context) {
	defer close(g.done)
	for ctx.Err() == nil {
		err := g.session(ctx)
		if ctx.Err() != nil {
			return
		}
		g.cfg.Log.Info("fleetsim: session ended", "peer", g.cfg.Peer, "err", err)
		g.note(false, err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// session runs one BGP session: OPEN, wait for the peer's OPEN and
// KEEPALIVE, send every UPDATE and the End-of-RIB, then keep it alive
// until it fails or ctx ends.
func (g *Generator) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := g.cfg.Dial(dctx, netip.AddrPortFrom(g.cfg.Peer, 179).String())
	cancel()
	if err != nil {
		return fmt.Errorf("dial %v: %w", g.cfg.Peer, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	hold := uint16(g.cfg.HoldTime / time.Second)
	caps := []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN), bgp.NewCapFourOctetASNumber(uint32(g.cfg.Fleet.ASN))}
	open, err := bgp.NewBGPOpenMessage(g.cfg.Fleet.ASN, hold, g.cfg.RouterID.String(),
		[]bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)}).Serialize()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	w := bufio.NewWriterSize(c, 64<<10)
	if err := write(c, w, open); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 64<<10)
	// The peer's OPEN, then its KEEPALIVE: established.
	for established := false; !established; {
		c.SetReadDeadline(time.Now().Add(g.cfg.HoldTime))
		typ, body, err := readMessage(r)
		if err != nil {
			return err
		}
		switch typ {
		case bgp.BGP_MSG_OPEN:
			if err := write(c, w, keepalive); err != nil {
				return err
			}
		case bgp.BGP_MSG_KEEPALIVE:
			established = true
		case bgp.BGP_MSG_NOTIFICATION:
			return notification(body)
		}
	}
	start := time.Now()
	// Read (and drop) whatever the reflector sends, so that it never
	// blocks on us, and notice the end of the session.
	readErr := make(chan error, 1)
	go func() {
		for {
			c.SetReadDeadline(time.Now().Add(g.cfg.HoldTime))
			typ, body, err := readMessage(r)
			if err == nil && typ == bgp.BGP_MSG_NOTIFICATION {
				err = notification(body)
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	eor, err := bgp.NewEndOfRib(bgp.RF_IPv4_VPN).Serialize()
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(time.Minute))
	for _, u := range g.updates {
		if _, err := w.Write(u); err != nil {
			return fmt.Errorf("update: %w", err)
		}
	}
	if err := write(c, w, eor); err != nil {
		return err
	}
	g.cfg.Log.Info("fleetsim: fleet sent", "updates", len(g.updates), "routes", g.cfg.Fleet.Total(), "took", time.Since(start))
	g.note(true, nil)
	tick := time.NewTicker(g.cfg.HoldTime / 3)
	defer tick.Stop()
	for {
		select {
		case err := <-readErr:
			return err
		case <-tick.C:
			if err := write(c, w, keepalive); err != nil {
				return err
			}
		}
	}
}

var keepalive, _ = bgp.NewBGPKeepAliveMessage().Serialize()

func write(c net.Conn, w *bufio.Writer, m []byte) error {
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := w.Write(m); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// readMessage reads one BGP message: its type and body.
func readMessage(r io.Reader) (uint8, []byte, error) {
	var h [bgp.BGP_HEADER_LENGTH]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("read: %w", err)
	}
	n := int(binary.BigEndian.Uint16(h[16:18]))
	if n < bgp.BGP_HEADER_LENGTH {
		return 0, nil, fmt.Errorf("read: message length %d", n)
	}
	body := make([]byte, n-bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("read: %w", err)
	}
	return h[18], body, nil
}

func notification(body []byte) error {
	if len(body) < 2 {
		return errors.New("notification")
	}
	return fmt.Errorf("notification %d/%d from the peer", body[0], body[1])
}

// DialIn returns a Config.Dial that opens its connection inside a network
// namespace: do runs a function in it (nettest.NS.Do). The socket stays
// in that namespace whichever goroutine uses it.
func DialIn(do func(func() error) error) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}
