package identity

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	addrA = netip.MustParseAddr("198.18.10.11")
	addrX = netip.MustParseAddr("198.18.10.66")
)

// TestClaims: a claim is accepted once per arming, from the armed address
// only; a new claim replaces the node's credential.
func TestClaims(t *testing.T) {
	type step struct {
		arm    bool       // arm node-a for addrA first
		from   netip.Addr // then claim from
		ok     bool
		twice  bool
		reason string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"not armed", []step{{from: addrA, reason: "node NODE-A's claim is not armed"}}},
		{"armed", []step{{arm: true, from: addrA, ok: true}}},
		{"twice", []step{{arm: true, from: addrA, ok: true}, {from: addrA, twice: true, reason: "node NODE-A's identity was claimed already"}}},
		{"another address keeps the arming", []step{{arm: true, from: addrX, reason: "armed for address 198.18.10.11 (dhcp, 2026-03-01T12:00:00Z), not for 198.18.10.66"}, {from: addrA, ok: true}}},
		{"re-armed", []step{{arm: true, from: addrA, ok: true}, {arm: true, from: addrA, ok: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore()
			var creds []string
			for i, st := range tc.steps {
				if st.arm {
					s.Arm("node-a", addrA, ByDHCP, t0)
				}
				cred, _, err := s.Claim("NODE-A", st.from, t0.Add(time.Duration(i)*time.Second))
				var ref *Refusal
				switch {
				case st.ok && err != nil:
					t.Fatalf("step %d: %v", i, err)
				case st.ok:
					if n, ok := s.Node(cred); !ok || n != "NODE-A" {
						t.Errorf("step %d: the credential resolves to %q %v", i, n, ok)
					}
					if _, armed := s.Armed("node-a"); armed {
						t.Errorf("step %d: still armed after the claim", i)
					}
					creds = append(creds, cred)
				case !errors.As(err, &ref) || ref.Twice != st.twice || !strings.Contains(ref.Reason, st.reason):
					t.Errorf("step %d: %v (%+v), want twice=%v %q", i, err, ref, st.twice, st.reason)
				}
			}
			// Only the newest credential works.
			for i, c := range creds {
				if _, ok := s.Node(c); ok != (i == len(creds)-1) {
					t.Errorf("credential %d of %d resolves: %v", i+1, len(creds), ok)
				}
			}
		})
	}
}

// TestCredentialForms: only a credential the store issued resolves.
func TestCredentialForms(t *testing.T) {
	s := NewStore()
	s.Arm("node-a", addrA, ByStart, t0)
	cred, _, err := s.Claim("node-a", addrA, t0)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(cred, ".")
	flip := []byte(secret)
	flip[0] ^= 1
	for _, c := range []string{"", ".", id, id + ".", "." + secret, id + "." + string(flip), id + "." + secret + "x",
		"0000000000000000." + secret, strings.ToUpper(id) + "." + secret, secret} {
		if n, ok := s.Node(c); ok {
			t.Errorf("%q resolves to %s", c, n)
		}
	}
	if n, ok := s.Node(cred); !ok || n != "node-a" {
		t.Errorf("the credential: %q %v", n, ok)
	}
	s.Forget(func(node string) bool { return node != "node-a" })
	if _, ok := s.Node(cred); ok {
		t.Error("a forgotten node's credential resolves")
	}
}

// TestMiddleware: 401 without a valid credential, 403 on another node's
// route, the node in the request's context otherwise.
func TestMiddleware(t *testing.T) {
	s := NewStore()
	s.Arm("node-a", addrA, ByStart, t0)
	cred, _, _ := s.Claim("node-a", addrA, t0)
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("served " + NodeOf(r))) })
	mux.Handle("/n/{name}", s.Own(ok))
	mux.Handle("/any", s.Require(ok))
	for _, tc := range []struct {
		path, auth string
		code       int
		body       string
	}{
		{"/any", "", 401, "no node credential"},
		{"/any", "Basic " + cred, 401, "no node credential"},
		{"/any", "Bearer nope", 401, "not (or no longer) valid"},
		{"/any", "Bearer " + cred, 200, "served node-a"},
		{"/any", "bearer  " + cred, 200, "served node-a"},
		{"/n/node-a", "Bearer " + cred, 200, "served node-a"},
		{"/n/NODE-A", "Bearer " + cred, 200, "served node-a"},
		{"/n/node-b", "Bearer " + cred, 403, "the credential is node node-a's, not node node-b's"},
		{"/n/node-b", "", 401, "no node credential"},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s %q: %d %q, want %d %q", tc.path, tc.auth, w.Code, w.Body, tc.code, tc.body)
		}
		if tc.code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: a 401 without WWW-Authenticate", tc.path)
		}
	}
}
