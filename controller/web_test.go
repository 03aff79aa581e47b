package controller

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"

	"golang.org/x/net/html"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// fillFleet makes node-a ready with its agent up, node-b stuck at its
// config step, and leaves node-c unseen.
func fillFleet(t *testing.T, s *Server, now time.Time) {
	t.Helper()
	t0 := now.Add(-time.Minute)
	ready := &fleetapi.Report{IntervalSeconds: 10, Version: "v0.1.0", Steps: bootSteps(t0, "ready", fleetapi.VerdictOK, ""), Agent: &fleetapi.AgentStatus{
		BGP: []fleetapi.BGPSession{{Peer: netip.MustParseAddr("10.0.2.2"), State: "established"},
			{Peer: netip.MustParseAddr("10.0.2.3"), State: "active", LastError: "connection refused"}},
		Endpoints: []fleetapi.Endpoint{{Name: "web1", Network: "leonardo", Address: netip.MustParsePrefix("10.0.10.5/24")}},
	}}
	if w := post(t, s, "node-a", "10.0.2.15", "", ready); w.Code != 204 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	stuck := &fleetapi.Report{Steps: bootSteps(t0, "config", fleetapi.VerdictFailed, "user_data: bgp.asn (line 3): 0 is out of range 1..4294967295 <script>alert(1)</script>")}
	if w := post(t, s, "node-b", "10.0.2.16", "", stuck); w.Code != 204 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
}

// TestWebPage renders the page without a browser: the structure the
// browser test reads, and HTML escaping.
func TestWebPage(t *testing.T) {
	s, clk := fleetServer(t)
	fillFleet(t, s, clk.now())
	w := get(operator(t, s), "/", "127.0.0.1", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %s", w.Code, w.Header())
	}
	body := w.Body.String()
	for _, want := range []string{
		`<tr data-node="node-a" data-phase="ready">`, `<tr data-node="node-b" data-phase="stuck">`, `<tr data-node="node-c" data-phase="unseen">`,
		`data-state="established"`, `&lt;script&gt;alert(1)&lt;/script&gt;`, `<meta http-equiv="refresh" content="5">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, "invalid IP") || !strings.Contains(body, "no address") {
		t.Error("a node without an address is not shown as such")
	}
	if strings.Contains(body, "<script>") {
		t.Error("a report's text reached the page unescaped")
	}
	if w := get(operator(t, s), "/nothing", "127.0.0.1", ""); w.Code != 404 {
		t.Errorf("GET /nothing: %d", w.Code)
	}
}

// TestWebPageInBrowser loads the page in a real headless browser and reads
// the rendered DOM: the nodes, their phase, their BGP sessions, and the
// stuck node's failing step with its detail.
func TestWebPageInBrowser(t *testing.T) {
	testenv.SkipIfShort(t)
	browser, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(t, "chromium not on PATH (.ci/deps chromium)")
	}
	s, clk := fleetServer(t)
	fillFleet(t, s, clk.now())
	ts := httptest.NewServer(s.Handler()) // 127.0.0.1: the only thing the browser is sent to
	defer ts.Close()

	// A browser's credentials: the token as the Basic password.
	dom := dumpDOM(t, browser, strings.Replace(ts.URL, "http://", "http://operator:"+operatorToken(t, s)+"@", 1)+"/")
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]*html.Node{}
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && attr(n, "data-node") != "" {
			rows[attr(n, "data-node")] = n
		}
	})
	for node, phase := range map[string]string{"node-a": "ready", "node-b": "stuck", "node-c": "unseen"} {
		r := rows[node]
		if r == nil {
			t.Errorf("the rendered page lists no %s; DOM:\n%s", node, dom)
			continue
		}
		if got := attr(r, "data-phase"); got != phase || !strings.Contains(text(r), phase) {
			t.Errorf("%s: phase %q (text %q), want %s", node, got, text(r), phase)
		}
	}
	if r := rows["node-a"]; r != nil {
		var sessions []string
		walk(r, func(n *html.Node) {
			if attr(n, "data-peer") != "" {
				sessions = append(sessions, attr(n, "data-peer")+" "+attr(n, "data-state")+": "+text(n))
			}
		})
		want := []string{"10.0.2.2 established: 10.0.2.2 established", "10.0.2.3 active: 10.0.2.3 active connection refused"}
		if strings.Join(sessions, "|") != strings.Join(want, "|") {
			t.Errorf("node-a's BGP sessions on the page: %q, want %q", sessions, want)
		}
		if txt := text(r); !strings.Contains(txt, "1 of 2 up") || !strings.Contains(txt, "web1 leonardo 10.0.10.5/24") {
			t.Errorf("node-a's row: %q", txt)
		}
	}
	if r := rows["node-b"]; r != nil && !strings.Contains(text(r), "no agent report") {
		t.Errorf("node-b's row: %q", text(r))
	}
	var card *html.Node
	walk(doc, func(n *html.Node) {
		if attr(n, "data-stuck") == "node-b" {
			card = n
		}
	})
	if card == nil {
		t.Fatalf("no card for the stuck node-b; DOM:\n%s", dom)
	}
	if txt := text(card); !strings.Contains(txt, "failed step config") || !strings.Contains(txt, "user_data: bgp.asn (line 3): 0 is out of range") {
		t.Errorf("node-b's card: %q", txt)
	}
	var summary string
	walk(doc, func(n *html.Node) {
		if attr(n, "id") == "summary" {
			summary = text(n)
		}
	})
	if summary != "3 nodes 1 ready 0 booting 1 stuck 0 stale 1 not seen yet" {
		t.Errorf("summary %q", summary)
	}
}

// dumpDOM runs headless chromium on url and returns the DOM after load.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+profile, "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	t.Logf("chromium rendered the page in %v", time.Since(t0).Round(time.Millisecond))
	if stdout.Len() == 0 {
		t.Fatalf("chromium dumped no DOM; stderr:\n%s", stderr.String())
	}
	return stdout.String()
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is n's text content with white space collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
			b.WriteByte(' ')
		}
	})
	return strings.Join(strings.Fields(b.String()), " ")
}
