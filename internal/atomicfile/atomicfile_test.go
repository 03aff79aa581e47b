package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestReadersSeeWholeFiles rewrites a file many times with contents of
// different lengths while readers read it: each read is one of the
// contents whole, never a mix, a prefix or an empty file.
func TestReadersSeeWholeFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	contents := make([][]byte, 8)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{'a' + byte(i)}, 1000+i*37000) // up to ~260 KB: many write calls
	}
	if err := WriteFile(path, contents[0], 0o644); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				b, err := os.ReadFile(path)
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				if !whole(b, contents) {
					errs <- fmt.Errorf("read %d bytes that are none of the contents whole", len(b))
					return
				}
			}
		}()
	}
	for i := range 300 {
		if err := WriteFile(path, contents[i%len(contents)], 0o644); err != nil {
			t.Error(err)
			break
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d reads during 300 writes", reads.Load())
	if left := temps(t, path); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func whole(b []byte, contents [][]byte) bool {
	for _, c := range contents {
		if bytes.Equal(b, c) {
			return true
		}
	}
	return false
}

// TestFailedWriteLeavesNothing: a fill that fails (after writing part)
// leaves the old content, no temporary file, and an error naming the
// path and wrapping the cause.
func TestFailedWriteLeavesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.yaml")
	if err := WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cause := errors.New("source went away")
	err := Write(path, 0o600, func(w io.Writer) error {
		w.Write([]byte("new, but only half"))
		return cause
	})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v: want one naming %s and wrapping the cause", err, path)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "old\n" {
		t.Errorf("after a failed write: %q, %v; want the old content", b, err)
	}
	if left := temps(t, path); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestMissingDirectory: the directory is the caller's; its absence is an
// error naming the path.
func TestMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such")
	if err := WriteFile(path, nil, 0o600); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v: want one naming %s", err, path)
	}
}

// TestMode: the mode is the one asked for, whatever the umask and the
// mode the file had before.
func TestMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft")
	for _, mode := range []os.FileMode{0o755, 0o600, 0o644} {
		if err := WriteFile(path, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != mode {
			t.Errorf("mode %v, want %v", got, mode)
		}
	}
}

// TestRemoveTemps removes what an interrupted write left, and nothing
// else in the directory.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "last-good.yaml")
	left := filepath.Join(dir, ".last-good.yaml.123")
	other := filepath.Join(dir, ".other.tmp-1")
	for _, p := range []string{left, other, path} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	RemoveTemps(path)
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v, want it removed", left, err)
	}
	for _, p := range []string{other, path} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
}

// temps lists the temporary files of path's writes.
func temps(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
