package fleet

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/weftnet/weft/controller/httpx"

	"github.com/weftnet/weft/controller/fleetapi"
)

//go:embed web.html
var pageSource string

// pageRefresh is how often the page reloads itself, in seconds.
const pageRefresh = 5

type pageData struct {
	Fleet     fleetapi.Fleet
	Now       string
	Refresh   int
	Counts    pageCounts
	Nodes     []fleetapi.NodeStatus
	Attention []fleetapi.NodeStatus // not ready, with problems, stale, or with a refused identity claim
	Probes    []fleetapi.Probe      // the latest pageChecks, newest first
}

// pageChecks is how many reachability checks the page lists.
const pageChecks = 20

type pageCounts struct {
	Total, Ready, Booting, Stuck, Stale, Unseen int
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago":    func(t time.Time) string { return "" }, // replaced per request, against the view's clock
	"plural": plural,
	"short":  short,
	"size":   size,
	"rtt":    rtt,
}).Parse(pageSource))

// size writes a file size for people: "8.1 MB".
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// rtt writes a round trip time in microseconds: "1.2 ms", "850 µs".
func rtt(us int64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.1f ms", float64(us)/1000)
	}
	return fmt.Sprintf("%d µs", us)
}

// short cuts a step's detail for the table; the attention card below it
// has the whole text.
func short(s string) string {
	const max = 140
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

// plural writes "1 route", "2 routes".
func plural(n any, what string) string {
	s := fmt.Sprint(n)
	if s == "1" {
		return "1 " + what
	}
	return s + " " + what + "s"
}

// Page serves the fleet as a web page (GET /).
type Page struct {
	// Fleet is the fleet view now.
	Fleet func() fleetapi.Fleet
	// Checks are the recent reachability checks, newest first.
	Checks func() []fleetapi.Probe
	Log    *slog.Logger
}

func (h *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := h.Fleet()
	d := pageData{Fleet: f, Now: f.Time.Format("2006-01-02 15:04:05 MST"), Refresh: pageRefresh, Nodes: f.Nodes, Probes: h.Checks()}
	if len(d.Probes) > pageChecks {
		d.Probes = d.Probes[:pageChecks]
	}
	for _, n := range f.Nodes {
		d.Counts.Total++
		switch n.Phase {
		case fleetapi.PhaseReady:
			d.Counts.Ready++
		case fleetapi.PhaseBooting:
			d.Counts.Booting++
		case fleetapi.PhaseStuck:
			d.Counts.Stuck++
		case fleetapi.PhaseStale:
			d.Counts.Stale++
		case fleetapi.PhaseUnseen:
			d.Counts.Unseen++
		}
		if n.Phase == fleetapi.PhaseStale || (!n.Ready && len(n.Problems) > 0) || (n.Identity != nil && n.Identity.Refused != nil) {
			d.Attention = append(d.Attention, n)
		}
	}
	t, err := page.Clone()
	if err == nil {
		t.Funcs(template.FuncMap{"ago": func(at time.Time) string { return fleetapi.Ago(at, f.Time) }})
	}
	var b bytes.Buffer
	if err == nil {
		err = t.Execute(&b, d)
	}
	if err != nil {
		h.Log.Error("rendering the fleet page", "err", err)
		httpx.Plain(w, http.StatusInternalServerError, "weft controller: rendering the page: %v", err)
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	httpx.Send(w, "text/html; charset=utf-8", b.Bytes())
}
