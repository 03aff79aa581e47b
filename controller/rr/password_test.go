package rr

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadSecret: made once (0600) and kept; a damaged file is an error
// naming it, never replaced; passwords differ per node and per secret.
func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	s1, created, err := LoadSecret(dir)
	if err != nil || !created || len(s1) != 32 {
		t.Fatalf("first start: %x %v %v", s1, created, err)
	}
	if st, err := os.Stat(filepath.Join(dir, SecretFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the secret's file: %v %v", st.Mode(), err)
	}
	s2, created, err := LoadSecret(dir)
	if err != nil || created || !bytes.Equal(s1, s2) {
		t.Errorf("second start: %x %v %v", s2, created, err)
	}
	a, b := NodePassword(s1, "node-a"), NodePassword(s1, "node-b")
	if a == b || len(a) != 32 || a != NodePassword(s2, "node-a") || a == NodePassword([]byte("another secret!!"), "node-a") {
		t.Errorf("passwords %q %q", a, b)
	}
	if err := os.WriteFile(filepath.Join(dir, SecretFile), []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSecret(dir); err == nil || !strings.Contains(err.Error(), SecretFile) {
		t.Errorf("a damaged secret: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, SecretFile)); string(b) != "not hex\n" {
		t.Errorf("the damaged secret was replaced: %q", b)
	}
}
