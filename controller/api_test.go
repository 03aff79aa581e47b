package controller

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/access"
	"github.com/weftnet/weft/controller/fleetapi"
)

// The one way tests reach the controller's API as its clients do: over
// TLS with the certificate Serve issues, the CA pinned, operators with
// the token.

// startAPI serves s.Handler() over TLS until the test ends.
func startAPI(t testing.TB, s *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(s.Handler())
	conf, err := s.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	ts.TLS = conf
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// operatorToken is s's operator token.
func operatorToken(t testing.TB, s *Server) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.opt.State, access.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// operatorClient is an operator's fleet API client of s at url.
func operatorClient(t testing.TB, s *Server, url string) *fleetapi.Client {
	return &fleetapi.Client{URL: url, Token: operatorToken(t, s), HTTP: fleetapi.HTTPClient(s.CA(), nil)}
}

// anonClient is a fleet API client of s at url with neither an operator
// token nor a node's credential (what a stranger on the segment has).
func anonClient(s *Server, url string, macs ...net.HardwareAddr) *fleetapi.Client {
	return &fleetapi.Client{URL: url, MACs: macs, HTTP: fleetapi.HTTPClient(s.CA(), nil)}
}

// operatorHTTP is an *http.Client for raw requests to s as an operator.
func operatorHTTP(t testing.TB, s *Server) *http.Client {
	return &http.Client{Transport: withToken{operatorToken(t, s), fleetapi.HTTPClient(s.CA(), nil).Transport}}
}

type withToken struct {
	token string
	next  http.RoundTripper
}

func (w withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+w.token)
	return w.next.RoundTrip(r)
}

// operator is s.Handler() for in-process requests (httptest.NewRecorder)
// that an operator sends.
func operator(t testing.TB, s *Server) http.Handler {
	tok, h := operatorToken(t, s), s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(w, r)
	})
}
