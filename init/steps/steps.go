// Package steps records the outcome of each node bring-up step, so an
// operator sees why a node is not ready before any control plane is
// reachable: every step goes to the console (one structured line) and to a
// JSON status file that the agent serves later.
//
// Console lines have a fixed, greppable shape that the QEMU end-to-end tests
// and the fleet demo match on:
//
//	weft: step=<name> verdict=<verdict> [detail="..."] [key=value ...]
//
// and the node is ready when it prints "weft: step=ready verdict=ok".
package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Verdict is the outcome of a step.
type Verdict string

const (
	OK      Verdict = "ok"      // done as configured
	Skipped Verdict = "skipped" // not applicable; Detail says why
	Waiting Verdict = "waiting" // not done yet, will retry; Detail says what it waits for
	Failed  Verdict = "failed"  // tried and failed; Detail says what to check
	Warning Verdict = "warning" // done, but not as written; Detail says what was done instead
)

// Step is one reported outcome.
type Step struct {
	Name    string            `json:"name"`
	Verdict Verdict           `json:"verdict"`
	Detail  string            `json:"detail,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Time    time.Time         `json:"time"`
}

// Line renders the step as its console line.
func (s Step) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "weft: step=%s verdict=%s", s.Name, s.Verdict)
	if s.Detail != "" {
		fmt.Fprintf(&b, " detail=%q", s.Detail)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Attrs)) {
		v := s.Attrs[k]
		if strings.ContainsAny(v, " \"=") || v == "" {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return b.String()
}

// Recorder keeps the latest verdict of each step. It is safe for concurrent
// use. The zero value is not usable; use New.
type Recorder struct {
	mu      sync.Mutex
	console io.Writer
	path    string
	log     *slog.Logger
	latest  map[string]int // step name -> index in steps
	steps   []Step
	now     func() time.Time
}

// New returns a Recorder writing console lines to console (may be nil) and
// the status document to path (may be empty: no file).
func New(console io.Writer, path string, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{console: console, path: path, log: log, latest: map[string]int{}, now: time.Now}
}

// Report records a step outcome. attrs are key, value pairs (strings or
// anything fmt can print); a trailing odd key is ignored.
func (r *Recorder) Report(name string, v Verdict, detail string, attrs ...any) {
	s := Step{Name: name, Verdict: v, Detail: detail, Time: r.now().UTC()}
	if len(attrs) > 1 {
		s.Attrs = make(map[string]string, len(attrs)/2)
		for i := 0; i+1 < len(attrs); i += 2 {
			s.Attrs[fmt.Sprint(attrs[i])] = fmt.Sprint(attrs[i+1])
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A step keyed by name and, when present, its link: each link has its own verdict.
	key := name
	if l, ok := s.Attrs["link"]; ok {
		key += "/" + l
	}
	if i, ok := r.latest[key]; ok {
		r.steps[i] = s
	} else {
		r.latest[key] = len(r.steps)
		r.steps = append(r.steps, s)
	}
	if r.console != nil {
		fmt.Fprintln(r.console, s.Line())
	}
	level := slog.LevelInfo
	switch v {
	case Failed:
		level = slog.LevelError
	case Waiting:
		level = slog.LevelWarn
	}
	r.log.Log(context.Background(), level, "step", "step", name, "verdict", string(v), "detail", detail)
	if r.path != "" {
		if err := r.writeLocked(); err != nil {
			r.log.Warn("writing boot status", "path", r.path, "err", err)
		}
	}
}

// Steps returns a copy of the latest verdict of every step, in first-report order.
func (r *Recorder) Steps() []Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Step(nil), r.steps...)
}

// Status is the document written to the status file.
type Status struct {
	Steps []Step `json:"steps"`
}

func (r *Recorder) writeLocked() error {
	b, err := json.MarshalIndent(Status{Steps: r.steps}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.path)
}
