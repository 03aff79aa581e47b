// Package testenv holds what tests share to check their environment:
// privileged and tool-dependent tests call these so that a missing
// requirement skips the test on a developer's machine but fails it loudly
// under CI (CI=true), where everything must be present.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true), where a missing
// requirement is a failure, not a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t with reason, or fails it under CI.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI: %s", reason)
	}
	t.Skipf("skipped: %s (CI=true makes this a failure)", reason)
}

// RequireRoot needs uid 0 (network namespaces, TAP devices, raw sockets).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// RequireTools needs each named program on PATH and returns nothing; the
// Makefile's deps target installs them.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Unavailable(t, n+" not on PATH (run make deps)")
		}
	}
}

// SkipIfShort lets long tests honour go test -short (never used by CI).
func SkipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("long test; -short given")
	}
}

// Env returns the value of the environment variable name, or skips (fails
// under CI) when it is unset; reason says how to set it.
func Env(t testing.TB, name, reason string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Unavailable(t, name+" is not set: "+reason)
	}
	return v
}
