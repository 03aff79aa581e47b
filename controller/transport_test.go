package controller

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/access"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/pki"
)

// serve runs s.Serve on a loopback listener until the test ends and
// returns its address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, s, ln)
	return ln.Addr().String()
}

// serveOn runs s.Serve on ln until the test ends.
func serveOn(t *testing.T, s *Server, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// TestPinnedNode: a node pinned to controller A's CA fetches from A, and
// refuses controller B (another CA), a plain-HTTP server, a server with
// some other certificate, and a certificate of A's own CA that is not for
// the address dialled. Real sockets, as PID 1's config source and
// phone-home do it.
func TestPinnedNode(t *testing.T) {
	a := testServer(t, "inventory/testdata/fleet.yaml")
	b := testServer(t, "inventory/testdata/fleet.yaml")
	if a.CA() == b.CA() {
		t.Fatal("two state directories, one CA")
	}
	addrA, addrB := serve(t, a), serve(t, b)
	node := fleetapi.HTTPClient(a.CA(), nil) // weft.ca= A's pin
	cred := nodeCredential(t, a, "node-a")
	fetch := func(url string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set(fleetapi.MACHeader, "52:54:00:00:00:01")
		fleetapi.SetAuth(req.Header, cred)
		resp, err := node.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(body), nil
	}
	const md = "/openstack/latest/meta_data.json"
	if got, err := fetch("https://" + addrA + md); err != nil || !strings.HasPrefix(got, "200 OK") || !strings.Contains(got, `"name":"node-a"`) {
		t.Errorf("A, pinned: %q %v", got, err)
	}
	if got, err := fetch("https://" + addrB + md); err == nil || !strings.Contains(err.Error(), "has no CA with the pinned key "+a.CA().String()) {
		t.Errorf("B: %q %v, want refused for the pin", got, err)
	}
	if got, err := fetch("http://" + addrA + md); err == nil || !strings.Contains(err.Error(), "the URL must be https") {
		t.Errorf("plain http: %q %v", got, err)
	}
	other := httptest.NewTLSServer(a.Handler()) // same content, httptest's own certificate
	defer other.Close()
	if got, err := fetch(other.URL + md); err == nil || !strings.Contains(err.Error(), "has no CA with the pinned key") {
		t.Errorf("another certificate: %q %v", got, err)
	}
	// A's CA, but a certificate for another address.
	cert, err := a.ca.Issue([]netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := httptest.NewUnstartedServer(a.Handler())
	elsewhere.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	elsewhere.StartTLS()
	defer elsewhere.Close()
	if got, err := fetch(elsewhere.URL + md); err == nil || !strings.Contains(err.Error(), "does not verify against the pinned CA for 127.0.0.1") {
		t.Errorf("A's CA, another address: %q %v", got, err)
	}
	// The fleet API client, pinned: the same refusals.
	if _, err := anonClient(a, "https://"+addrB+"/").Tasks(context.Background(), "node-a"); err == nil || !strings.Contains(err.Error(), "pinned key") {
		t.Errorf("fleetapi.Client pinned to A, at B: %v", err)
	}
}

// TestPlainHTTP: plain HTTP on the listener serves the boot files and
// nothing else: the rest is a 403 naming the https URL and the pin.
func TestPlainHTTP(t *testing.T) {
	dir, kernel, _ := fakeImage(t)
	s := bootServer(t, dir, "")
	addr := serve(t, s)
	for _, p := range []string{"/weft/v1/fleet", "/openstack/latest/user_data", "/", "/weft/v1/probes"} {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(b), "use https://"+addr+"/ with the controller's CA pinned, weft.ca="+s.CA().String()) {
			t.Errorf("plain GET %s: %s %s", p, resp.Status, b)
		}
	}
	resp, err := http.Get("http://" + addr + "/boot/vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != len(kernel) {
		t.Errorf("plain GET /boot/vmlinuz: %s, %d bytes", resp.Status, len(b))
	}
	resp, err = http.Get("http://" + addr + "/boot.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "weft.config=https://" + addr + "/ weft.ca=" + s.CA().String(); resp.StatusCode != 200 || !strings.Contains(string(b), want) {
		t.Errorf("plain GET /boot.ipxe: %s %s, want %s", resp.Status, b, want)
	}
}

// TestOperatorAccess: the operator routes over the real listener: no
// token 401, a wrong one 403, the right one 200; a browser's Basic
// password for GET only; the node routes need no operator token; the
// unix socket admits this process's uid without a token.
func TestOperatorAccess(t *testing.T) {
	s := testServer(t, "inventory/testdata/fleet.yaml")
	addr := serve(t, s)
	base := "https://" + addr
	hc := fleetapi.HTTPClient(s.CA(), nil)
	tok := operatorToken(t, s)
	do := func(method, path, ctype, auth, body string, basic bool) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if basic {
			req.SetBasicAuth("operator", auth)
		} else if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	probe := `{"node":"node-a","endpoint":"web1","to":"10.0.10.6","kind":"icmp"}`
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/weft/v1/fleet", ""}, {"GET", "/", ""}, {"GET", "/weft/v1/probes", ""},
		{"GET", "/weft/v1/probes/x", ""}, {"POST", "/weft/v1/probes", probe},
	} {
		if code, body, h := do(r.method, r.path, "application/json", "", r.body, false); code != 401 || !strings.Contains(body, "needs the operator token") ||
			!strings.Contains(strings.Join(h.Values("WWW-Authenticate"), ","), "Bearer") {
			t.Errorf("%s %s without a token: %d %s %v", r.method, r.path, code, body, h)
		}
		if code, body, _ := do(r.method, r.path, "application/json", "not-"+tok, r.body, false); code != 403 {
			t.Errorf("%s %s with a wrong token: %d %s", r.method, r.path, code, body)
		}
	}
	if code, body, _ := do("GET", "/weft/v1/fleet", "", tok, "", false); code != 200 || !strings.Contains(body, `"node-a"`) {
		t.Errorf("the fleet with the token: %d %s", code, body)
	}
	if code, body, _ := do("POST", "/weft/v1/probes", "application/json", tok, probe, false); code != 201 {
		t.Errorf("a probe with the token: %d %s", code, body)
	}
	if code, body, _ := do("GET", "/", "", tok, "", true); code != 200 || !strings.Contains(body, "<html") {
		t.Errorf("the page with the token as Basic password: %d %s", code, body)
	}
	if code, body, _ := do("POST", "/weft/v1/probes", "application/json", tok, probe, true); code != 401 {
		t.Errorf("a POST with Basic credentials (a browser replays them): %d %s", code, body)
	}
	if code, body, _ := do("GET", "/weft/v1/fleet?token="+tok, "", "", "", false); code != 401 {
		t.Errorf("a token in the query: %d %s", code, body)
	}
	// Node routes take a node's credential, which the operator token is
	// not.
	if code, body, _ := do("GET", "/openstack/latest/meta_data.json", "", tok, "", false); code != 401 {
		t.Errorf("a node route with the operator token: %d %s", code, body)
	}

	// The unix socket: this process's uid is an operator.
	sock := filepath.Join(s.opt.State, SocketFile)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v", sock, st, err)
	}
	local := fleetapi.HTTPClient(fleetapi.Pin{}, func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
	f, err := (&fleetapi.Client{URL: "http://localhost/", HTTP: local}).Fleet(context.Background())
	if err != nil || len(f.Nodes) == 0 {
		t.Errorf("the fleet over the socket, no token: %v %v", f, err)
	}
}

// TestCSRF: a POST that is not declared JSON is refused (415) on every
// route, before any handler or credential check; answers set no cookie
// and grant no CORS.
func TestCSRF(t *testing.T) {
	s := testServer(t, "inventory/testdata/fleet.yaml")
	ts := startAPI(t, s)
	hc := operatorHTTP(t, s)
	probe := `{"node":"node-a","endpoint":"web1","to":"10.0.10.6","kind":"icmp"}`
	for _, path := range []string{"/weft/v1/probes", "/weft/v1/nodes/node-a/report", "/weft/v1/probes/x/result"} {
		for _, ctype := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(probe))
			req.Header.Set("Content-Type", ctype)
			req.Header.Set("Origin", "https://evil.example")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 415 || !strings.Contains(string(b), "Content-Type: application/json") {
				t.Errorf("POST %s as %q: %s %s", path, ctype, resp.Status, b)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/weft/v1/probes", strings.NewReader(probe))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a JSON POST: %s %v", resp.Status, resp.Header)
	}
	req, _ = http.NewRequest(http.MethodOptions, ts.URL+"/weft/v1/probes", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("a CORS preflight was granted: %s %v", resp.Status, resp.Header)
	}
}

// TestStateKept: the CA and token survive a restart (same pin, same
// token); a damaged file is an error naming it, never replaced.
func TestStateKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // made by the first start
	open := func() (*Server, error) {
		return New(Options{State: dir, Inventory: "inventory/testdata/fleet.yaml", WatchInterval: -1, Log: testLog(t, "controller")})
	}
	s1, err := open()
	if err != nil {
		t.Fatal(err)
	}
	tok := operatorToken(t, s1)
	for name, mode := range map[string]os.FileMode{pki.KeyFile: 0o600, access.TokenFile: 0o600, "": 0o700} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%q: %v %v, want mode %v", name, st.Mode(), err, mode)
		}
	}
	s2, err := open()
	if err != nil || s2.CA() != s1.CA() || operatorToken(t, s2) != tok {
		t.Fatalf("a restart changed the CA or the token: %v", err)
	}
	if pin, err := fleetapi.ReadPinFile(filepath.Join(dir, pki.CertFile)); err != nil || pin != s1.CA() {
		t.Errorf("ca.crt's pin %v %v, want %v", pin, err, s1.CA())
	}
	// Rotation of the token: delete it, restart.
	os.Remove(filepath.Join(dir, access.TokenFile))
	s3, err := open()
	if err != nil || operatorToken(t, s3) == tok || s3.CA() != s1.CA() {
		t.Errorf("a deleted token was not replaced by a new one (or the CA changed): %v", err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, pki.KeyFile))
	for _, tc := range []struct {
		file, content, err string
	}{
		{pki.KeyFile, "garbage", pki.KeyFile + ": no PEM PRIVATE KEY block"},
		{pki.CertFile, "garbage", pki.CertFile + ": no PEM CERTIFICATE block"},
		{access.TokenFile, "\n", access.TokenFile + ": want one token on one line"},
		{pki.KeyFile, "", pki.KeyFile + ": missing while"},
	} {
		p := filepath.Join(dir, tc.file)
		old, _ := os.ReadFile(p)
		if tc.content == "" {
			os.Remove(p)
		} else {
			os.WriteFile(p, []byte(tc.content), 0o600)
		}
		if _, err := open(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s damaged: %v, want %q", tc.file, err, tc.err)
		}
		os.WriteFile(p, old, 0o600)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, pki.KeyFile)); string(b) != string(key) {
		t.Error("the CA key was replaced")
	}
}
