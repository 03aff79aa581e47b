package controller

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"
)

type credKey struct {
	s    *Server
	node string
}

// testCredentials caches nodeCredential's credentials, by server and node.
var testCredentials sync.Map

// nodeCredential is node's credential on s, claimed as a node claims it
// (its claim armed, then claimed; once per server and node). Every test
// request on a node route carries one, through asNode or nodeClient.
func nodeCredential(t testing.TB, s *Server, node string) string {
	t.Helper()
	// Keyed by the pointer itself, which keeps s alive: a later test's
	// server never finds an earlier one's credential.
	key := credKey{s, strings.ToLower(node)}
	if c, ok := testCredentials.Load(key); ok {
		return c.(string)
	}
	addr := netip.MustParseAddr("192.0.2.254")
	s.ids.Arm(node, addr, "test", s.now())
	cred, _, err := s.ids.Claim(node, addr, s.now())
	if err != nil {
		t.Fatal(err)
	}
	testCredentials.Store(key, cred)
	return cred
}

// asNode is s's handler with node's credential on every request.
func asNode(t testing.TB, s *Server, node string) http.Handler {
	cred := nodeCredential(t, s, node)
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fleetapi.SetAuth(r.Header, cred)
		h.ServeHTTP(w, r)
	})
}

// nodeClient is node's fleetapi.Client for s served at url: its requests
// carry node's credential (and macs in X-Weft-MAC).
func nodeClient(t testing.TB, s *Server, url, node string, macs ...net.HardwareAddr) *fleetapi.Client {
	cred := nodeCredential(t, s, node)
	return &fleetapi.Client{URL: url, MACs: macs, HTTP: &http.Client{Transport: bearer{cred, fleetapi.HTTPClient(s.CA(), nil).Transport}}}
}

// bearer adds a credential to every request.
type bearer struct {
	cred string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	fleetapi.SetAuth(r.Header, b.cred)
	return b.next.RoundTrip(r)
}
