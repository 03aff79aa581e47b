package pid1

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/init/steps"
)

// A stored last good config that a power cut truncated is refused whole:
// nothing of it is applied, and the verdict names the file and says why.
func TestBringupRefusesDamagedLastGood(t *testing.T) {
	store := &source.Store{Dir: t.TempDir()}
	h := newHarness(t)
	h.b.Store = store
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", goodYAML)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	data, err := os.ReadFile(store.Path())
	if err != nil {
		t.Fatalf("the good config was not stored: %v", err)
	}
	if err := os.WriteFile(store.Path(), data[:len(data)-20], 0o600); err != nil {
		t.Fatal(err)
	}

	// The next boot: no source answers.
	h = newHarness(t)
	h.b.Store = store
	h.clock.cancelAfter = 2
	if err := h.run(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if len(h.applied) != 0 {
		t.Fatalf("applied %+v from a damaged store", h.applied)
	}
	s, _ := h.rec.last(StepLastGood)
	if s.Verdict != steps.Failed || s.Attrs["file"] != lastGoodFile || !strings.Contains(s.Detail, store.Path()) ||
		!strings.Contains(s.Detail, "truncated") || !strings.Contains(s.Detail, "not used") {
		t.Errorf("last-good verdict: %s", s.Line())
	}
	if s, _ := h.rec.last(StepReady); s.Verdict != steps.Waiting {
		t.Errorf("ready: %s", s.Line())
	}
}

// A save that fails is a verdict (a reboot would not find this config),
// cleared by the next save that works.
func TestBringupReportsFailedSave(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	os.WriteFile(blocker, nil, 0o600)
	h := newHarness(t)
	h.b.Store = &source.Store{Dir: blocker}
	h.meta.results = []fetchResult{{bundle: bundle("metadata http://169.254.169.254/", goodYAML)}}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s, _ := h.rec.last(StepLastGood)
	if s.Verdict != steps.Failed || !strings.Contains(s.Detail, "saving the config from metadata") || !strings.Contains(s.Detail, "not-a-dir") {
		t.Errorf("last-good verdict: %s", s.Line())
	}
	if len(h.applied) != 1 {
		t.Errorf("a failed save must not stop the config: applied %d", len(h.applied))
	}
	h.b.Store = &source.Store{Dir: filepath.Join(dir, "ok")}
	h.b.saveLastGood(h.applied[0].Bundle, h.applied[0].Config, "metadata again")
	if s, _ := h.rec.last(StepLastGood); s.Verdict != steps.OK || s.Detail != "saved again" {
		t.Errorf("after a good save: %s", s.Line())
	}
}
