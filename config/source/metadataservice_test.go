package source

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/controller/fleetapi"
)

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// testLogger logs to the test's output (and stops when the test ends).
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// metadataServer serves the OpenStack layout from ../testdata on 127.0.0.1.
// fail, if set, may answer a request itself (returning true).
func metadataServer(t *testing.T, fail func(w http.ResponseWriter, r *http.Request) bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	files := map[string]string{
		"/openstack/latest/meta_data.json":    "../testdata/meta_data.json",
		"/openstack/latest/network_data.json": "../testdata/network_data_vm.json",
		"/openstack/latest/user_data":         "../testdata/weft.yaml",
	}
	var metaRequests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openstack/latest/meta_data.json" {
			metaRequests.Add(1)
		}
		if fail != nil && fail(w, r) {
			return
		}
		name, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, name)
	}))
	t.Cleanup(srv.Close)
	return srv, &metaRequests
}

// fast shortens a source's timings for tests.
func fast(s Source, attempts int, timeout time.Duration) *httpSource {
	h := s.(*httpSource)
	h.attempts = attempts
	h.attemptTimeout = timeout
	h.backoff = 10 * time.Millisecond
	h.maxBackoff = 40 * time.Millisecond
	return h
}

func TestMetadataServiceFetch(t *testing.T) {
	srv, n := metadataServer(t, nil)
	s := NewMetadataService([]string{srv.URL}, testLogger(t))
	if s.Name() != "metadata" {
		t.Errorf("Name = %q", s.Name())
	}
	b, err := s.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Source != "metadata "+srv.URL+"/" || b.MetaData.Hostname != "pg1.novalocal" || len(b.NetworkData.Links) != 2 {
		t.Errorf("bundle %+v", b)
	}
	if c, err := b.Config(); err != nil || len(c.Networks) != 4 {
		t.Errorf("config: %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d meta_data requests", n.Load())
	}
}

func TestMetadataServiceRetries(t *testing.T) {
	var calls atomic.Int32
	srv, n := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/openstack/latest/meta_data.json" && calls.Add(1) <= 2 {
			http.Error(w, "metadata proxy not ready", http.StatusInternalServerError)
			return true
		}
		return false
	})
	s := fast(NewMetadataService([]string{srv.URL + "/"}, testLogger(t)), 5, time.Second)
	b, err := s.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 || b.MetaData == nil {
		t.Errorf("%d requests, bundle %+v", n.Load(), b)
	}

	// Always failing: gives up after the attempts, saying why.
	srv2, n2 := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusBadGateway)
		return true
	})
	_, err = fast(NewMetadataService([]string{srv2.URL + "/"}, testLogger(t)), 3, time.Second).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metadata: 3 attempts failed") || !strings.Contains(err.Error(), "HTTP 502 Bad Gateway") {
		t.Errorf("error %v", err)
	}
	if n2.Load() != 3 {
		t.Errorf("%d requests, want 3", n2.Load())
	}
}

func TestMetadataServiceNotFound(t *testing.T) {
	srv, n := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		http.NotFound(w, r)
		return true
	})
	_, err := fast(NewMetadataService([]string{srv.URL + "/"}, testLogger(t)), 5, time.Second).Fetch(context.Background())
	if !errors.Is(err, config.ErrNotFound) || !strings.Contains(err.Error(), "meta_data.json: HTTP 404") {
		t.Errorf("error %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests: a 404 must not be retried", n.Load())
	}
}

func TestMetadataServiceOptionalParts(t *testing.T) {
	srv, _ := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "meta_data.json") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	b, err := fast(NewMetadataService([]string{srv.URL + "/"}, testLogger(t)), 5, time.Second).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.MetaData == nil || b.NetworkData != nil || b.UserData != nil {
		t.Errorf("bundle %+v", b)
	}
	if _, err := b.Config(); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("Config without user_data: %v", err)
	}
}

func TestMetadataServiceBadJSON(t *testing.T) {
	srv, n := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte("<html>captive portal</html>"))
		return true
	})
	_, err := fast(NewMetadataService([]string{srv.URL + "/"}, testLogger(t)), 5, time.Second).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "meta_data.json: ") || errors.Is(err, config.ErrNotFound) {
		t.Errorf("error %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests: an unusable answer must not be retried", n.Load())
	}
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestMetadataServiceUnreachableHonoursContext(t *testing.T) {
	s := fast(NewMetadataService([]string{"http://" + closedPort(t) + "/"}, testLogger(t)), 1000, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Fetch(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Fetch took %v after a 300ms deadline", d)
	}
}

func TestMetadataServiceHangingServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c) // accepted, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	s := fast(NewMetadataService([]string{"http://" + l.Addr().String() + "/"}, testLogger(t)), 2, 150*time.Millisecond)
	start := time.Now()
	_, err = s.Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "2 attempts failed") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("two 150ms attempts took %v", d)
	}
}

func TestMetadataServiceFirstAnswerWins(t *testing.T) {
	srv, _ := metadataServer(t, nil)
	dead := "http://" + closedPort(t) + "/"
	b, err := fast(NewMetadataService([]string{dead, srv.URL + "/"}, testLogger(t)), 1, time.Second).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Source != "metadata "+srv.URL+"/" {
		t.Errorf("Source %q", b.Source)
	}
}

func TestMetadataURLExpansion(t *testing.T) {
	s := NewMetadataService(nil, nil).(*httpSource)
	s.interfaces = func() ([]string, error) { return []string{"eth0", "bond0.101"}, nil }
	got, err := s.expand()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://169.254.169.254/", "http://[fe80::a9fe:a9fe%25eth0]/", "http://[fe80::a9fe:a9fe%25bond0.101]/"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("expand = %v, want %v", got, want)
	}
	for _, u := range got {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if !strings.HasPrefix(req.URL.Host, "169.254") && !strings.HasPrefix(req.URL.Hostname(), "fe80::a9fe:a9fe%") {
			t.Errorf("%s: host %q", u, req.URL.Host)
		}
	}
	s2 := NewMetadataService([]string{"http://[fe80::a9fe:a9fe%25<iface>]/"}, nil).(*httpSource)
	s2.interfaces = func() ([]string, error) { return nil, nil }
	if _, err := s2.Fetch(context.Background()); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("no interface: %v", err)
	}
}

func TestURLSource(t *testing.T) {
	srv, _ := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/fleet/weft.yaml" {
			http.ServeFile(w, r, "../testdata/weft.yaml")
			return true
		}
		return false
	})
	// One document.
	s := NewURL(srv.URL+"/fleet/weft.yaml", testLogger(t), nil)
	if s.Name() != "url" {
		t.Errorf("Name %q", s.Name())
	}
	b, err := s.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b.Source != "url "+srv.URL+"/fleet/weft.yaml" || b.MetaData != nil {
		t.Errorf("bundle %+v", b)
	}
	if _, err := b.Config(); err != nil {
		t.Error(err)
	}
	// A layout under a base ending in "/".
	b, err = NewURL(srv.URL+"/", testLogger(t), nil).Fetch(context.Background())
	if err != nil || b.MetaData == nil || b.NetworkData == nil || b.UserData == nil {
		t.Errorf("layout: %+v %v", b, err)
	}
	// Absent.
	if _, err := NewURL(srv.URL+"/nope.yaml", testLogger(t), nil).Fetch(context.Background()); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("404: %v", err)
	}
	// Credentials never reach logs and verdicts.
	u := strings.Replace(srv.URL, "http://", "http://op:secret@", 1) + "/fleet/weft.yaml"
	b, err = NewURL(u, testLogger(t), nil).Fetch(context.Background())
	if err != nil || strings.Contains(b.Source, "secret") {
		t.Errorf("redaction: %+v %v", b, err)
	}
}

func TestFileURLSource(t *testing.T) {
	dir := t.TempDir()
	weft, _ := os.ReadFile("../testdata/weft.yaml")
	writeTree(t, dir, map[string]string{"weft.yaml": string(weft), "cd/openstack/latest/user_data": string(weft), "cd/openstack/latest/meta_data.json": `{"uuid":"u"}`})
	b, err := NewURL("file://"+filepath.Join(dir, "weft.yaml"), nil, nil).Fetch(context.Background())
	if err != nil || string(b.UserData) != string(weft) {
		t.Errorf("file: %+v %v", b, err)
	}
	b, err = NewURL("file://"+filepath.Join(dir, "cd")+"/", nil, nil).Fetch(context.Background())
	if err != nil || b.MetaData.UUID != "u" || b.NetworkData != nil {
		t.Errorf("file layout: %+v %v", b, err)
	}
	for _, u := range []string{"file://" + filepath.Join(dir, "none.yaml"), "file://" + dir + "/"} {
		if _, err := NewURL(u, nil, nil).Fetch(context.Background()); !errors.Is(err, config.ErrNotFound) {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// Every request names the node's MACs, and a refusal's reason reaches the
// error the console shows.
func TestMetadataServiceSendsMACsAndShowsWhy(t *testing.T) {
	old := NodeMACs
	NodeMACs = func() []net.HardwareAddr {
		return []net.HardwareAddr{{0x52, 0x54, 0, 0, 0, 1}, {0x52, 0x54, 0, 0, 0, 2}}
	}
	defer func() { NodeMACs = old }()
	var got atomic.Value
	srv, _ := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		got.Store(r.Header.Get(fleetapi.MACHeader))
		http.Error(w, "weft controller: no node of the inventory has MAC 52:54:00:00:00:01", http.StatusNotFound)
		return true
	})
	_, err := fast(NewURL(srv.URL+"/", testLogger(t), nil), 1, time.Second).Fetch(context.Background())
	if got.Load() != "52:54:00:00:00:01,52:54:00:00:00:02" {
		t.Errorf("%s header %q", fleetapi.MACHeader, got.Load())
	}
	if !errors.Is(err, config.ErrNotFound) || !strings.Contains(err.Error(), "no node of the inventory has MAC 52:54:00:00:00:01") {
		t.Errorf("error %v: want the server's reason in it", err)
	}
}

// The service's bad network_data.json is reported with the bundle; its
// user_data is kept.
func TestMetadataServiceBadNetworkData(t *testing.T) {
	srv, _ := metadataServer(t, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasSuffix(r.URL.Path, "/meta_data.json"):
			w.Write([]byte(`{"uuid": "u-1"}`))
		case strings.HasSuffix(r.URL.Path, "/network_data.json"):
			w.Write([]byte(`{"links": [{"id": "eth0", "type": "phy"`))
		default:
			w.Write([]byte("node:\n  hostname: n1\n"))
		}
		return true
	})
	b, err := fast(NewMetadataService([]string{srv.URL + "/"}, testLogger(t)), 5, time.Second).Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(b.Broken) != 1 || b.Broken[0].File != "network_data.json" || !strings.Contains(b.Broken[0].Error(), "truncated") {
		t.Errorf("broken: %v", b.Broken)
	}
	if b.MetaData == nil || len(b.UserData) == 0 || b.NetworkData != nil {
		t.Errorf("bundle %+v", b)
	}
}
