package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/controller/fleetapi"
)

// DefaultMetadataURLs are the OpenStack metadata service's addresses. The
// IPv6 one is link-local: "<iface>" is replaced, at each Fetch, by every
// interface that is up, not loopback, and has an IPv6 link-local address.
var DefaultMetadataURLs = []string{"http://169.254.169.254/", "http://[fe80::a9fe:a9fe%25<iface>]/"}

// ifacePlaceholder is replaced by an interface name in a metadata URL.
const ifacePlaceholder = "<iface>"

// Defaults of the HTTP sources. Each attempt has its own timeout so that
// one dead address does not eat the node's whole boot budget.
const (
	defaultAttemptTimeout = 3 * time.Second
	defaultAttempts       = 5
	defaultBackoff        = 500 * time.Millisecond
	defaultMaxBackoff     = 5 * time.Second
)

// httpSource fetches the OpenStack layout under one or more base URLs
// (metadata service, weft.config=<url>/), or one weft.yaml document
// (weft.config=<url>).
type httpSource struct {
	name   string // "metadata" or "url"
	urls   []string
	single bool // one document, not a layout
	log    *slog.Logger

	client *http.Client
	// node is the node's identity with a weft controller at a layout's
	// base URL: claimed before the first fetch, its credential sent on
	// every request (a server without the claim endpoint is no weft
	// controller, and gets none). One per base URL, kept across fetches.
	node           *fleetapi.Claimer // the caller's, for NewURL
	claimMu        sync.Mutex
	claimers       map[string]*fleetapi.Claimer
	attemptTimeout time.Duration
	attempts       int
	backoff        time.Duration
	maxBackoff     time.Duration
	interfaces     func() ([]string, error)
}

// NewMetadataService returns the metadata service source: HTTP GETs of
// openstack/latest/{meta_data.json,network_data.json,user_data} under each
// base URL (all of them tried at once; the first complete answer wins).
// Each request has a 3 s timeout; failed rounds are retried with an
// exponential backoff (0.5 s doubling to 5 s) up to 5 rounds, and never
// past ctx. A 404 for meta_data.json is config.ErrNotFound (no retry); a 404 for
// network_data.json or user_data means that part is absent.
func NewMetadataService(urls []string, log *slog.Logger) Source {
	if len(urls) == 0 {
		urls = DefaultMetadataURLs
	}
	return newHTTPSource("metadata", urls, false, log)
}

// NewURL returns the source for weft.config=<u>. A URL ending in "/" is the
// base of an OpenStack layout (openstack/latest/...), read like the
// metadata service; any other URL is one weft.yaml document, delivered as
// the Bundle's UserData. http, https and file URLs are supported.
//
// node, if not nil, is the node's identity with the controller at u (the
// caller shares it with the phone-home, and its HTTP client, if set,
// carries every request of the source); nil = one of the source's own.
func NewURL(u string, log *slog.Logger, node *fleetapi.Claimer) Source {
	if strings.HasPrefix(u, "file://") {
		return &fileSource{url: u}
	}
	s := newHTTPSource("url", []string{u}, !strings.HasSuffix(u, "/"), log)
	if node != nil {
		s.node = node
		if node.HTTP != nil {
			s.client = node.HTTP
		}
	}
	return s
}

// claimer is the node's identity with the controller at base.
func (s *httpSource) claimer(base string) *fleetapi.Claimer {
	if s.node != nil {
		return s.node
	}
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	c := s.claimers[base]
	if c == nil {
		c = &fleetapi.Claimer{URL: base, HTTP: s.client, MACs: func() []net.HardwareAddr { return NodeMACs() }}
		if s.claimers == nil {
			s.claimers = map[string]*fleetapi.Claimer{}
		}
		s.claimers[base] = c
	}
	return c
}

func newHTTPSource(name string, urls []string, single bool, log *slog.Logger) *httpSource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &httpSource{
		name:   name,
		urls:   append([]string(nil), urls...),
		single: single,
		log:    log,
		client: &http.Client{Transport: &http.Transport{
			// Metadata never goes through a proxy, whatever the
			// environment says.
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: defaultAttemptTimeout}).DialContext,
			TLSHandshakeTimeout: defaultAttemptTimeout,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     10 * time.Second,
		}},
		attemptTimeout: defaultAttemptTimeout,
		attempts:       defaultAttempts,
		backoff:        defaultBackoff,
		maxBackoff:     defaultMaxBackoff,
		interfaces:     linkLocalInterfaces,
	}
}

func (s *httpSource) Name() string { return s.name }

// permanentError is a failure that retrying cannot fix (the server answered
// with something unusable).
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func (s *httpSource) Fetch(ctx context.Context) (*config.Bundle, error) {
	urls, err := s.expand()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	// A node fetches rarely: keep no idle connections (and their
	// goroutines) between fetches.
	defer s.client.CloseIdleConnections()
	delay := s.backoff
	for attempt := 1; ; attempt++ {
		b, err := s.round(ctx, urls)
		if err == nil {
			return b, nil
		}
		var perm permanentError
		if errors.Is(err, config.ErrNotFound) || errors.As(err, &perm) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: gave up: %w (last error: %v)", s.name, ctx.Err(), err)
		}
		if attempt >= s.attempts {
			return nil, fmt.Errorf("%s: %d attempts failed: %w", s.name, attempt, err)
		}
		s.log.Warn("config source attempt failed; retrying", "source", s.name, "attempt", attempt, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: gave up: %w (last error: %v)", s.name, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, s.maxBackoff)
	}
}

// expand fills the interface placeholder of the URLs.
func (s *httpSource) expand() ([]string, error) {
	var out []string
	for _, u := range s.urls {
		if !strings.Contains(u, ifacePlaceholder) {
			out = append(out, u)
			continue
		}
		ifaces, err := s.interfaces()
		if err != nil {
			s.log.Debug("listing interfaces for link-local metadata", "err", err)
			continue
		}
		for _, name := range ifaces {
			out = append(out, strings.ReplaceAll(u, ifacePlaceholder, url.PathEscape(name)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address to try (%s): %w", strings.Join(s.urls, " "), config.ErrNotFound)
	}
	return out, nil
}

// linkLocalInterfaces lists the interfaces a link-local metadata address can
// be reached through.
func linkLocalInterfaces() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() == nil && ipn.IP.IsLinkLocalUnicast() {
				out = append(out, ifc.Name)
				break
			}
		}
	}
	return out, nil
}

// round tries every URL at once and returns the first complete bundle.
// Without one, a "not found" from any server wins (a server answered), else
// all errors are returned.
func (s *httpSource) round(ctx context.Context, urls []string) (*config.Bundle, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		b   *config.Bundle
		err error
	}
	results := make(chan result, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			var b *config.Bundle
			var err error
			if s.single {
				b, err = s.fetchDocument(ctx, u)
			} else {
				b, err = s.fetchLayout(ctx, u)
			}
			results <- result{i, b, err}
		})
	}
	go func() { wg.Wait(); close(results) }()
	errs := make([]error, len(urls))
	for r := range results {
		if r.err == nil {
			cancel()
			return r.b, nil
		}
		errs[r.i] = r.err
	}
	var notFound, perm error
	for _, err := range errs {
		var p permanentError
		switch {
		case errors.Is(err, config.ErrNotFound) && notFound == nil:
			notFound = err
		case errors.As(err, &p) && perm == nil:
			perm = err
		}
	}
	switch {
	case notFound != nil:
		return nil, notFound
	case perm != nil:
		return nil, perm
	}
	return nil, errors.Join(errs...)
}

func (s *httpSource) fetchDocument(ctx context.Context, u string) (*config.Bundle, error) {
	src := s.name + " " + redact(u)
	body, err := s.get(ctx, u, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return &config.Bundle{Source: src, UserData: body}, nil
}

func (s *httpSource) fetchLayout(ctx context.Context, base string) (*config.Bundle, error) {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	src := s.name + " " + redact(base)
	b := &config.Bundle{Source: src}
	prefix := base + openstackDir + "/"
	// Claimed first: a weft controller serves a node's documents only for
	// its credential, once claimed (PID 1's phone-home shares it).
	node := s.claimer(base)
	cctx, cancel := context.WithTimeout(ctx, s.attemptTimeout)
	cred, err := node.Credential(cctx)
	cancel()
	switch {
	case errors.Is(err, fleetapi.ErrUnknownNode):
		return nil, fmt.Errorf("%s: %w (%w)", src, err, config.ErrNotFound)
	case fleetapi.IsStatus(err, http.StatusForbidden):
		// Refused (claimed already, not armed): an operator must act;
		// the bring-up retries later, not at once.
		return nil, permanentError{fmt.Errorf("%s: %w", src, err)}
	case err != nil:
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	get := func(u string) ([]byte, error) {
		b, err := s.get(ctx, u, cred)
		if errors.Is(err, errUnauthorized) {
			node.Refused(cred) // a restarted controller forgot it: claim again
		}
		return b, err
	}
	md, err := get(prefix + metaDataFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", src, metaDataFile, err)
	}
	if b.MetaData, err = config.ParseMetaData(md); err != nil {
		return nil, permanentError{fmt.Errorf("%s: %w", src, err)}
	}
	nd, err := get(prefix + networkDataFile)
	switch {
	case errors.Is(err, config.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("%s: %s: %w", src, networkDataFile, err)
	default:
		// A bad network_data.json is that file's problem: the service
		// answered, and its meta_data.json and user_data still count.
		parseNetworkData(b, nd)
	}
	ud, err := get(prefix + userDataFile)
	switch {
	case errors.Is(err, config.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("%s: %s: %w", src, userDataFile, err)
	default:
		b.UserData = ud
	}
	// The node's own secrets (join.openstack.vendorData2), if Nova has a
	// dynamic vendordata target for them; the weft controller has none.
	vd, err := get(prefix + vendorData2File)
	switch {
	case errors.Is(err, config.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("%s: %s: %w", src, vendorData2File, err)
	default:
		b.VendorData2 = vd
	}
	return b, nil
}

// errUnauthorized is a 401: the controller does not know the credential.
var errUnauthorized = errors.New("the controller refused the node's credential")

// get is one GET with the per-attempt timeout, with the node's credential
// cred ("" = none). 404 is config.ErrNotFound, 401 errUnauthorized.
func (s *httpSource) get(ctx context.Context, u, cred string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, permanentError{err}
	}
	req.Header.Set("User-Agent", "weft")
	// weft controller tells nodes apart by their MACs (a fleet behind NAT
	// or relays shares source addresses); Nova ignores the header.
	if macs := NodeMACs(); len(macs) > 0 {
		req.Header.Set(fleetapi.MACHeader, fleetapi.FormatMACHeader(macs))
	}
	fleetapi.SetAuth(req.Header, cred)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("HTTP 404%s: %w", serverSays(resp.Body), config.ErrNotFound)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("HTTP 401%s: %w", serverSays(resp.Body), errUnauthorized)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %s%s", resp.Status, serverSays(resp.Body))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, config.MaxUserData+1))
	if err != nil {
		return nil, err
	}
	if len(body) > config.MaxUserData {
		return nil, permanentError{fmt.Errorf("response larger than %d bytes", config.MaxUserData)}
	}
	return body, nil
}

// NodeMACs lists the MACs of this host's non-loopback interfaces, sent
// on each metadata request in fleetapi.MACHeader: how weft controller
// identifies the node. A variable so tests can fix it.
var NodeMACs = func() []net.HardwareAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var macs []net.HardwareAddr
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
			macs = append(macs, i.HardwareAddr)
		}
	}
	return macs
}

// serverSays is the first line of an error body, so that an operator sees
// why a server refused ("no node of the inventory has MAC ..."); bodies
// that look like HTML are left out.
func serverSays(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if line == "" || strings.HasPrefix(line, "<") {
		return ""
	}
	if len(line) > 300 {
		line = line[:300] + "…"
	}
	return " (" + line + ")"
}

// redact hides a password in a URL's user information.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

// fileSource is weft.config=file://...: a weft.yaml file, or an OpenStack
// layout under a directory ending in "/".
type fileSource struct{ url string }

func (f *fileSource) Name() string { return "url" }

func (f *fileSource) Fetch(ctx context.Context) (*config.Bundle, error) {
	src := "url " + f.url
	u, err := url.Parse(f.url)
	if err != nil || u.Path == "" {
		return nil, fmt.Errorf("%s: not a file URL", src)
	}
	if strings.HasSuffix(u.Path, "/") {
		if _, err := os.Stat(u.Path + openstackDir); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no %s: %w", src, openstackDir, config.ErrNotFound)
		}
		return readOpenStackTree(os.DirFS(u.Path), src)
	}
	data, err := os.ReadFile(u.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", src, config.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return &config.Bundle{Source: src, UserData: data}, nil
}
