// Package syncbuf is a bytes.Buffer that a daemon's output (written by
// os/exec's copying goroutine) and a test reading it may share.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for one writer and any readers at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
