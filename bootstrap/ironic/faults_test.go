package ironic

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// faultyIronic puts a proxy in front of Ironic that answers the first
// lookups and heartbeats with 500 and a request id of its own, as a
// failing Ironic (or its load balancer) would.
func faultyIronic(t *testing.T, target string, lookups, heartbeats int32) string {
	t.Helper()
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var nl, nh atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id string
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/lookup"):
			if n := nl.Add(1); n <= lookups {
				id = fmt.Sprintf("req-weft-fault-lookup-%d", n)
			}
		case strings.HasPrefix(r.URL.Path, "/v1/heartbeat/"):
			if n := nh.Add(1); n <= heartbeats {
				id = fmt.Sprintf("req-weft-fault-heartbeat-%d", n)
			}
		}
		if id == "" {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Openstack-Request-Id", id)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error_message": "{\"faultstring\": \"injected fault\", \"debuginfo\": null}"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Bar 4: Ironic unreachable (the first ipa-api-url) and answering 500
// (the second, for the first lookups and heartbeats): every error names
// the call, the status and the request id, the agent retries with a
// doubling backoff, and the node still deploys.
func TestIronicFaults(t *testing.T) {
	ir := needIronic(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	faulty := faultyIronic(t, ir.URL, 3, 2)

	mac := testMAC(3)
	uuid := enroll(t, ir, "weft-faults", mac)
	var log logBuffer
	_, power := testAgent(t, closed+","+faulty, mac, &log, false)
	select {
	case <-power:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the conductor's power-off never reached the agent; agent log:\n%s", strings.Join(log.lines(""), "\n"))
	}
	waitState(t, ir, uuid, "active", time.Minute)

	lookups := log.lines("ironic: lookup failed")
	if len(lookups) != 3 {
		t.Fatalf("%d failed lookups logged, want 3:\n%s", len(lookups), strings.Join(log.lines(""), "\n"))
	}
	for i, line := range lookups {
		for _, want := range []string{
			"ironic GET " + closed + "/v1/lookup: no answer", "connection refused",
			fmt.Sprintf("ironic GET %s/v1/lookup: HTTP 500, request req-weft-fault-lookup-%d: injected fault", faulty, i+1),
			fmt.Sprintf("retry_in=%dms", 100<<i),
		} {
			if !strings.Contains(line, want) {
				t.Errorf("failed lookup %d: %s\nwant it to contain %q", i+1, line, want)
			}
		}
	}
	beats := log.lines("ironic: heartbeat failed")
	if len(beats) != 2 {
		t.Fatalf("%d failed heartbeats logged, want 2:\n%s", len(beats), strings.Join(log.lines(""), "\n"))
	}
	for i, line := range beats {
		for _, want := range []string{
			fmt.Sprintf("ironic POST %s/v1/heartbeat/%s: HTTP 500, request req-weft-fault-heartbeat-%d: injected fault", faulty, uuid, i+1),
			fmt.Sprintf("retry_in=%dms", 100<<i),
		} {
			if !strings.Contains(line, want) {
				t.Errorf("failed heartbeat %d: %s\nwant it to contain %q", i+1, line, want)
			}
		}
	}
}
