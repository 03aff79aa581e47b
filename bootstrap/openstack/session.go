package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/weftnet/weft/config"
)

// renewWithin: a token is renewed when less than this share of its
// lifetime is left (15 min of Keystone's default hour), so that a call
// never starts with a token about to expire.
const renewWithin = 4 // a quarter

// requestTimeout bounds one HTTP exchange with Keystone or a service.
const requestTimeout = 30 * time.Second

// Session is one authenticated connection to an OpenStack cloud: one
// token shared by every call, renewed before it expires (and again if a
// service refuses it, through gophercloud's reauthentication).
type Session struct {
	pc     *gophercloud.ProviderClient
	opts   gophercloud.AuthOptions
	region string
	log    *slog.Logger

	mu      sync.Mutex
	issued  time.Time
	expires time.Time
	auths   int // authentications so far, for tests and the log
	neutron *gophercloud.ServiceClient
	now     func() time.Time // the clock; tests move it
}

// Dial authenticates to j's Keystone. Every error names the call, the
// HTTP status and the request id (see Error).
func Dial(ctx context.Context, j *config.OpenStackJoin, log *slog.Logger) (*Session, error) {
	if log == nil {
		log = slog.Default()
	}
	pc, err := gopenstack.NewClient(j.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("join.openstack.authURL: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if j.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(j.CACert)) {
			return nil, errors.New("join.openstack.caCert: no certificate in the PEM")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	pc.HTTPClient = http.Client{Transport: tr, Timeout: requestTimeout}
	s := &Session{pc: pc, opts: authOptions(j), region: j.Region, log: log, now: time.Now}
	if err := s.authenticate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// authOptions are join.openstack's credentials as gophercloud takes them.
func authOptions(j *config.OpenStackJoin) gophercloud.AuthOptions {
	o := gophercloud.AuthOptions{IdentityEndpoint: j.AuthURL, AllowReauth: true}
	if p := j.Password; p != nil {
		o.Username, o.Password = p.Username, p.Password
		o.DomainName = orDefault(p.UserDomain)
		o.Scope = &gophercloud.AuthScope{ProjectName: p.Project, DomainName: orDefault(p.ProjectDomain)}
		return o
	}
	o.ApplicationCredentialID = j.ApplicationCredential.ID
	o.ApplicationCredentialSecret = j.ApplicationCredential.Secret
	return o
}

func orDefault(domain string) string {
	if domain == "" {
		return "Default"
	}
	return domain
}

// authenticate gets a new token and the catalog.
func (s *Session) authenticate(ctx context.Context) error {
	if err := gopenstack.Authenticate(ctx, s.pc, s.opts); err != nil {
		return callError("keystone POST /v3/auth/tokens", err)
	}
	res, ok := s.pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return errors.New("keystone POST /v3/auth/tokens: not a v3 token (is authURL Keystone's /v3?)")
	}
	tok, err := res.ExtractToken()
	if err != nil {
		return callError("keystone POST /v3/auth/tokens", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued, s.expires = s.now(), tok.ExpiresAt
	s.auths++
	s.log.Info("openstack: authenticated", "expires", tok.ExpiresAt, "auths", s.auths)
	return nil
}

// fresh renews the token when less than a quarter of its lifetime is left.
func (s *Session) fresh(ctx context.Context) error {
	s.mu.Lock()
	now, issued, expires := s.now(), s.issued, s.expires
	s.mu.Unlock()
	if expires.Sub(now) > expires.Sub(issued)/renewWithin {
		return nil
	}
	return s.authenticate(ctx)
}

// Auths counts the authentications so far.
func (s *Session) Auths() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// network is Neutron's client, the token made fresh first.
func (s *Session) network(ctx context.Context) (*gophercloud.ServiceClient, error) {
	if err := s.fresh(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.neutron != nil {
		return s.neutron, nil
	}
	// Made once: gophercloud asks the service for its versions when it
	// makes a client, a call no poll should repeat. The client follows
	// the session's token (it shares the provider client).
	c, err := gopenstack.NewNetworkV2(s.pc, gophercloud.EndpointOpts{Region: s.region})
	if err != nil {
		return nil, callError(fmt.Sprintf("neutron GET / (versions; the catalog's network endpoint in region %q)", s.region), err)
	}
	s.neutron = c
	return c, nil
}
