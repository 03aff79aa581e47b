package ironic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultPort is the agent API's port, IPA's.
const DefaultPort = 9999

// Agent speaks Ironic's agent contract for the node it runs on.
type Agent struct {
	APIURL  string                    // ipa-api-url=: one or more Ironic base URLs, comma-separated
	MACs    func() []net.HardwareAddr // the node's NICs, looked up by
	Power   func(reboot bool) error   // carries out standby.power_off (false) and standby.run_image (true)
	Sync    func() error              // standby.sync; nil: sync(2)
	Version string                    // sent as agent_version, shown by /v1/status
	Port    int                       // the agent API's port; 0: DefaultPort
	HTTP    *http.Client              // nil: one with a 30 s timeout
	Log     *slog.Logger

	// MinBackoff and MaxBackoff bound the wait between failed calls: it
	// doubles from the first to the second. 0: 1 s and 60 s.
	MinBackoff, MaxBackoff time.Duration

	token atomic.Value // string: the agent token the lookup gave
}

// Run looks the node up, serves the agent API and heartbeats until ctx
// ends. It returns only for a broken setup or when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	bases, err := a.bases()
	if err != nil {
		return err
	}
	if a.Power == nil || a.MACs == nil {
		return errors.New("ironic: the agent needs Power and MACs")
	}
	hc := a.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	log := a.Log
	if log == nil {
		log = slog.Default()
	}
	bo := a.backoff()

	// 1. Lookup, until Ironic knows the node and hands out its token.
	var node Node
	var base string
	for {
		node, base, err = a.lookupAny(ctx, hc, bases)
		if err == nil {
			break
		}
		wait := bo.next()
		log.Warn("ironic: lookup failed, retrying", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	bo.reset()
	a.token.Store(node.Token)
	log.Info("ironic: looked up", "node", node.UUID, "api", base, "heartbeat_timeout", node.HeartbeatTimeout)

	// 2. The agent API, on the address the node reaches Ironic from.
	var ln net.Listener
	for {
		ln, err = a.listen(base)
		if err == nil {
			break
		}
		wait := bo.next()
		log.Warn("ironic: agent API", "err", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	bo.reset()
	sync := a.Sync
	if sync == nil {
		sync = func() error { syscall.Sync(); return nil }
	}
	srv := &http.Server{
		Handler: &api{token: a.tokenString, version: a.Version, started: time.Now(), power: a.Power, sync: sync, log: log},
		// The conductor's requests are small and quick; a slow client
		// must not hold connections open.
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ironic: agent API stopped", "err", err)
		}
	}()
	defer srv.Close()
	callback := "http://" + ln.Addr().String()
	log.Info("ironic: agent API listening", "callback_url", callback)

	// 3. Heartbeats: three per heartbeat_timeout, so one lost heartbeat
	// does not time the node out; after a failure sooner, with backoff.
	interval := max(node.HeartbeatTimeout/3, time.Second)
	for {
		wait := interval
		if err := heartbeat(ctx, hc, base, node, callback, a.Version); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait = min(bo.next(), interval)
			log.Warn("ironic: heartbeat failed, retrying", "node", node.UUID, "err", err, "retry_in", wait)
		} else {
			bo.reset()
			log.Debug("ironic: heartbeat accepted", "node", node.UUID)
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

func (a *Agent) tokenString() string {
	s, _ := a.token.Load().(string)
	return s
}

// bases splits ipa-api-url= into its URLs.
func (a *Agent) bases() ([]string, error) {
	var out []string
	for _, s := range strings.Split(a.APIURL, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("ipa-api-url: %q is not an http:// or https:// URL", s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("ipa-api-url: no URL given")
	}
	return out, nil
}

// lookupAny tries each Ironic URL in turn.
func (a *Agent) lookupAny(ctx context.Context, hc *http.Client, bases []string) (Node, string, error) {
	macs := a.MACs()
	if len(macs) == 0 {
		return Node{}, "", errors.New("ironic lookup: the node has no Ethernet interface to look up by")
	}
	var errs []error
	for _, b := range bases {
		n, err := lookup(ctx, hc, b, macs)
		if err == nil {
			return n, b, nil
		}
		errs = append(errs, err)
	}
	return Node{}, "", errors.Join(errs...)
}

// listen binds the agent API to the address the node reaches Ironic at
// base from (the underlay address), not to every address.
func (a *Agent) listen(base string) (net.Listener, error) {
	u, _ := url.Parse(base) // checked by bases
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port)) // no packet sent: a route lookup
	if err != nil {
		return nil, fmt.Errorf("no route to Ironic at %s: %w", base, err)
	}
	local := c.LocalAddr().(*net.UDPAddr).IP
	c.Close()
	p := a.Port
	if p == 0 {
		p = DefaultPort
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(local.String(), strconv.Itoa(p)))
	if err != nil {
		return nil, fmt.Errorf("listening on the underlay address: %w", err)
	}
	return ln, nil
}

// backoff doubles from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func (a *Agent) backoff() *backoff {
	b := &backoff{min: a.MinBackoff, max: a.MaxBackoff}
	if b.min <= 0 {
		b.min = time.Second
	}
	if b.max < b.min {
		b.max = max(60*time.Second, b.min)
	}
	return b
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
