package steps

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func readStatus(t *testing.T, path string) Status {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s is not a Status document: %v\n%.300s", path, err, b)
	}
	return st
}

// recordLinks reports n links twice each (waiting, then failed), as the
// underlay does for a document whose links match no NIC.
func recordLinks(r *Recorder, n int) {
	for i := range n {
		r.Report("link", Waiting, "no NIC with MAC yet", "link", fmt.Sprintf("l%d", i), "kind", "phy")
	}
	for i := range n {
		r.Report("link", Failed, "no NIC with MAC after 30s", "link", fmt.Sprintf("l%d", i), "kind", "phy")
	}
}

// 10,000 links cost their own verdicts, not the square of them: the file
// is not rewritten per verdict, and the status answers while they arrive.
func TestRecordTenThousandLinks(t *testing.T) {
	const links = 10_000
	path := filepath.Join(t.TempDir(), "run", "boot-status.json")
	r := New(nil, path, nil)
	stop := make(chan struct{})
	var queries atomic.Int64
	var slowest atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			_ = r.Steps()
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
			queries.Add(1)
			time.Sleep(time.Millisecond)
		}
	})
	start := time.Now()
	recordLinks(r, links)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("%d verdicts in %v (%.0f ns/verdict); status answered %d times meanwhile, slowest %v",
		2*links, elapsed, float64(elapsed.Nanoseconds())/(2*links), queries.Load(), time.Duration(slowest.Load()))
	if elapsed > 10*time.Second {
		t.Errorf("recording %d verdicts took %v, want well under 10s", 2*links, elapsed)
	}
	if got := len(r.Steps()); got != links {
		t.Errorf("%d entries, want one per link (%d)", got, links)
	}

	// The file follows without a Flush (a coalesced write is pending).
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := readStatusIfThere(path)
		if len(st.Steps) == links && st.Steps[links-1].Verdict == Failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status file has %d entries 10s after the last report, want %d, the last failed", len(st.Steps), links)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := readStatus(t, path)
	want := []string{"no NIC with MAC after 30s"}
	if s := st.Steps[42]; s.Attrs["link"] != "l42" || s.Verdict != Failed || !slices.Equal(s.Causes, want) || s.Detail != want[0] {
		t.Errorf("entry 42: %+v", s)
	}
}

func readStatusIfThere(path string) Status {
	var st Status
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// A link's failures are kept in order, each once: the root cause is never
// replaced by a consequence (issue 10, item 5).
func TestCausesKeptPerLink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "boot-status.json")
	r := New(nil, path, nil)
	rootCause := `member "b1" is a bond, not a NIC`
	later := "no usable member; link skipped"
	r.Report("network-data", Failed, rootCause, "link", "b1", "path", "links[1].bond_links[0]")
	r.Report("network-data", Failed, later, "link", "b1", "path", "links[1].bond_links")
	r.Report("network-data", Failed, rootCause, "link", "b1", "path", "links[1].bond_links[0]") // a retry
	r.Report("network-data", Failed, "bgpovs: link type not supported", "link", "v0")
	r.Report("network-data", Failed, `link "v0" was skipped; network skipped`, "link", "v0", "path", "networks[0].link")
	r.Report("config-drive", Failed, "network_data.json: truncated", "file", "network_data.json")
	r.Report("config-drive", OK, "")
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"network-data/b1":                {rootCause, later},
		"network-data/v0":                {"bgpovs: link type not supported", `link "v0" was skipped; network skipped`},
		"config-drive/network_data.json": {"network_data.json: truncated"},
		"config-drive":                   nil,
	}
	for _, ss := range [][]Step{r.Steps(), readStatus(t, path).Steps} {
		if len(ss) != len(want) {
			t.Fatalf("%d entries, want %d: %+v", len(ss), len(want), ss)
		}
		for _, s := range ss {
			k := s.Name
			if l := s.Attrs["link"] + s.Attrs["file"]; l != "" {
				k += "/" + l
			}
			if !slices.Equal(s.Causes, want[k]) {
				t.Errorf("%s: causes %q, want %q", k, s.Causes, want[k])
			}
			if joined := joinCauses(want[k]); s.Detail != joined {
				t.Errorf("%s: detail %q, want every cause for old readers: %q", k, s.Detail, joined)
			}
		}
	}
}

func joinCauses(cs []string) string {
	out := ""
	for i, c := range cs {
		if i > 0 {
			out += "; "
		}
		out += c
	}
	return out
}

// Progress replaces: waiting details (attempt N) do not pile up, an ok
// clears the failures, and a link that fails forever keeps its first causes.
func TestCausesProgressAndBound(t *testing.T) {
	r := New(nil, "", nil)
	for i := range 50 {
		r.Report("dhcp", Waiting, fmt.Sprintf("no lease yet (attempt %d)", i), "link", "eth0")
	}
	if s := r.Steps()[0]; !slices.Equal(s.Causes, []string{"no lease yet (attempt 49)"}) {
		t.Errorf("waiting: causes %q, want the latest only", s.Causes)
	}
	r.Report("dhcp", Failed, "A", "link", "eth0")
	r.Report("dhcp", OK, "10.0.0.2/24", "link", "eth0")
	if s := r.Steps()[0]; !slices.Equal(s.Causes, []string{"10.0.0.2/24"}) || s.Verdict != OK {
		t.Errorf("after ok: %+v", s)
	}
	for i := range 100 {
		r.Report("link", Failed, fmt.Sprintf("cause %d", i), "link", "x")
	}
	s := r.Steps()[1]
	if len(s.Causes) != maxCauses || s.Causes[0] != "cause 0" || s.Causes[maxCauses-2] != fmt.Sprintf("cause %d", maxCauses-2) || s.Causes[maxCauses-1] != "cause 99" {
		t.Errorf("bounded causes: %q", s.Causes)
	}
}

// A copy taken by Steps is not changed by later reports.
func TestStepsCopyIsStable(t *testing.T) {
	r := New(nil, "", nil)
	r.Report("link", Failed, "A", "link", "x")
	snap := r.Steps()
	r.Report("link", Failed, "B", "link", "x")
	if !slices.Equal(snap[0].Causes, []string{"A"}) {
		t.Errorf("snapshot changed: %q", snap[0].Causes)
	}
}

func TestKey(t *testing.T) {
	for _, c := range []struct {
		attrs []any
		want  string
	}{
		{nil, "s"},
		{[]any{"source", "x"}, "s"},
		{[]any{"file", "meta_data.json", "link", "eth0"}, "s/eth0"},
		{[]any{"file", "meta_data.json"}, "s/meta_data.json"},
		{[]any{"link"}, "s"},
	} {
		if got := Key("s", c.attrs...); got != c.want {
			t.Errorf("Key(s, %v) = %q, want %q", c.attrs, got, c.want)
		}
	}
}

// BenchmarkRecord reports the cost of one verdict with the status file on,
// for a bring-up of 1k and 10k links (two verdicts each, then a Flush).
func BenchmarkRecord(b *testing.B) {
	for _, links := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("links=%d", links), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "boot-status.json")
			for b.Loop() {
				r := New(nil, path, nil)
				recordLinks(r, links)
				if err := r.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*links), "ns/verdict")
		})
	}
}
