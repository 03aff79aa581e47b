package steps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Flush writes the status file now if anything changed since the last
// write (Report schedules writes itself; Flush is for the end of a run and
// for tests). It returns the write's error.
func (r *Recorder) Flush() error {
	if r.path == "" {
		return nil
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	if r.pending != nil {
		r.pending.Stop()
		r.pending = nil
	}
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	// A copy of the entries (not their maps and slices, which a report
	// replaces, never changes): the lock is held for a copy, not a write.
	snap := slices.Clone(r.steps)
	r.dirty = false
	r.mu.Unlock()

	start := time.Now()
	err := writeStatus(r.path, snap)
	cost := time.Since(start)
	r.mu.Lock()
	r.cost = cost
	r.mu.Unlock()
	return err
}

// flushLogged is the scheduled write.
func (r *Recorder) flushLogged() {
	if err := r.Flush(); err != nil {
		r.log.Warn("writing boot status", "path", r.path, "err", err)
	}
}

// writeStatus replaces the file at path with the Status of ss, one step a
// line (a reader with grep finds a link's entry).
func writeStatus(path string, ss []Step) error {
	var b bytes.Buffer
	b.Grow(len(ss) * 160)
	b.WriteString("{\"steps\": [")
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		j, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("boot status %s: step %s: %w", path, s.Name, err)
		}
		b.Write(j)
	}
	b.WriteString("\n]}\n")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
