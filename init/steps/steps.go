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
	"fmt"
	"io"
	"log/slog"
	"maps"
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

// Step is one reported outcome, or, as the Recorder keeps it, the state of
// one step and subject.
type Step struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Detail is what was reported; in a kept step, every cause joined by
	// "; ", so that a reader that predates Causes still sees them all.
	Detail string `json:"detail,omitempty"`
	// Causes are the distinct details of the step's current verdict, in the
	// order reported (see Recorder.Report); empty when there is no detail.
	Causes []string          `json:"causes,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Time   time.Time         `json:"time"`
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

// Key names the status entry a report belongs to: the step's name and its
// subject, the "link" attr (a link's verdicts) or else the "file" attr (a
// file of a config source). attrs are key, value pairs as Report takes them.
func Key(name string, attrs ...any) string {
	var file string
	for i := 0; i+1 < len(attrs); i += 2 {
		switch fmt.Sprint(attrs[i]) {
		case "link":
			return name + "/" + fmt.Sprint(attrs[i+1])
		case "file":
			file = fmt.Sprint(attrs[i+1])
		}
	}
	if file != "" {
		return name + "/" + file
	}
	return name
}

// maxCauses bounds one entry's causes; past it the last one is replaced, so
// the first (the root causes) stay.
const maxCauses = 16

// Recorder keeps the state of each step and subject, prints every report
// on the console and writes the state to a status file. Reporting costs
// the change only: the state is kept in memory (Steps answers from it at
// any time) and the file is rewritten in the background, coalesced, at
// most every writeEvery or four times the last write's duration, whichever
// is longer, so that even a 10,000-link bring-up spends little time on it.
// Flush writes what is pending now. It is safe for concurrent use. The
// zero value is not usable; use New.
type Recorder struct {
	console io.Writer
	path    string
	log     *slog.Logger
	now     func() time.Time
	every   time.Duration

	mu      sync.Mutex
	index   map[string]int // Key -> index in steps
	steps   []Step
	dirty   bool          // steps changed since the last write took them
	pending *time.Timer   // a scheduled write, nil when none
	cost    time.Duration // how long the last write took

	writeMu sync.Mutex // one write of the file at a time
}

// writeEvery is the shortest time between two writes of the status file.
const writeEvery = 250 * time.Millisecond

// New returns a Recorder writing console lines to console (may be nil) and
// the status document to path (may be empty: no file).
func New(console io.Writer, path string, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{console: console, path: path, log: log, index: map[string]int{}, now: time.Now, every: writeEvery}
}

// Report records a step outcome. attrs are key, value pairs (strings or
// anything fmt can print); a trailing odd key is ignored.
//
// Reports of one step and subject (Key) make one entry. A failed report
// after a failed one adds its detail to the entry's causes (a link that is
// a bond member of itself and then has no usable member keeps both: the
// first is the root cause); any other report replaces the entry, since
// waiting, ok and skipped details describe progress that supersedes the
// last ("attempt 3").
func (r *Recorder) Report(name string, v Verdict, detail string, attrs ...any) {
	s := Step{Name: name, Verdict: v, Detail: detail, Time: r.now().UTC()}
	if len(attrs) > 1 {
		s.Attrs = make(map[string]string, len(attrs)/2)
		for i := 0; i+1 < len(attrs); i += 2 {
			s.Attrs[fmt.Sprint(attrs[i])] = fmt.Sprint(attrs[i+1])
		}
	}
	line := s.Line() // the console shows each report as it was made
	key := Key(name, attrs...)
	r.mu.Lock()
	if i, ok := r.index[key]; ok {
		s.Causes = causes(r.steps[i], s)
		s.Detail = strings.Join(s.Causes, "; ")
		r.steps[i] = s
	} else {
		s.Causes = causes(Step{}, s)
		r.index[key] = len(r.steps)
		r.steps = append(r.steps, s)
	}
	r.dirty = true
	if r.path != "" && r.pending == nil {
		r.pending = time.AfterFunc(max(r.every, 4*r.cost), r.flushLogged)
	}
	r.mu.Unlock()
	if r.console != nil {
		fmt.Fprintln(r.console, line)
	}
	level := slog.LevelInfo
	switch v {
	case Failed:
		level = slog.LevelError
	case Waiting:
		level = slog.LevelWarn
	}
	r.log.Log(context.Background(), level, "step", "step", name, "verdict", string(v), "detail", detail)
}

// causes returns the causes of s as the entry that was prev. It never
// appends to prev's slice: copies taken by Steps share it.
func causes(prev, s Step) []string {
	accumulate := prev.Verdict == Failed && s.Verdict == Failed
	switch {
	case !accumulate && s.Detail == "":
		return nil
	case !accumulate:
		return []string{s.Detail}
	case s.Detail == "" || slices.Contains(prev.Causes, s.Detail):
		return prev.Causes
	}
	out := make([]string, len(prev.Causes), len(prev.Causes)+1)
	copy(out, prev.Causes)
	if len(out) >= maxCauses {
		out[len(out)-1] = s.Detail
		return out
	}
	return append(out, s.Detail)
}

// Steps returns a copy of every entry, in first-report order.
func (r *Recorder) Steps() []Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.steps)
}

// Status is the document written to the status file.
type Status struct {
	Steps []Step `json:"steps"`
}
