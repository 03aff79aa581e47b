package qemu

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"
)

// stripper removes what firmware and the kernel write for terminals, not
// for people: ANSI escape sequences (CSI "ESC [ … final", OSC "ESC ] … BEL
// or ESC \", two-byte and charset escapes), carriage returns and the other
// C0 control characters except \n and \t. Its state carries over between
// writes, so a sequence split across two reads of the pipe is still removed.
type stripper struct {
	state int
}

const (
	stText   = iota
	stEsc    // after ESC
	stCSI    // inside ESC [ …
	stOSC    // inside ESC ] …
	stOSCEsc // ESC inside an OSC (ESC \ ends it)
	stEscInt // ESC followed by intermediate bytes (ESC ( B)
)

// strip appends the printable part of p to dst.
func (s *stripper) strip(dst, p []byte) []byte {
	for _, c := range p {
		switch s.state {
		case stText:
			switch {
			case c == 0x1b:
				s.state = stEsc
			case c == '\n' || c == '\t' || c >= 0x20 && c != 0x7f:
				dst = append(dst, c)
			}
		case stEsc:
			switch {
			case c == '[':
				s.state = stCSI
			case c == ']':
				s.state = stOSC
			case c >= 0x20 && c <= 0x2f:
				s.state = stEscInt
			case c == 0x1b:
				// ESC ESC: the second one starts a new sequence.
			default:
				s.state = stText
			}
		case stCSI:
			// Parameter (0x30–0x3f) and intermediate (0x20–0x2f) bytes
			// continue the sequence, a final byte (0x40–0x7e) ends it. A
			// newline ends a broken sequence so a line is never swallowed.
			switch {
			case c >= 0x40 && c <= 0x7e:
				s.state = stText
			case c == '\n':
				s.state = stText
				dst = append(dst, c)
			case c == 0x1b:
				s.state = stEsc
			}
		case stOSC:
			switch c {
			case 0x07:
				s.state = stText
			case 0x1b:
				s.state = stOSCEsc
			case '\n':
				s.state = stText
				dst = append(dst, c)
			}
		case stOSCEsc:
			if c == '\\' {
				s.state = stText
			} else {
				s.state = stOSC
			}
		case stEscInt:
			if c < 0x20 || c > 0x2f {
				s.state = stText
			}
		}
	}
	return dst
}

// StripANSI returns s without ANSI escape sequences, \r and other control
// characters (see the console capture).
func StripANSI(s string) string {
	var st stripper
	return string(st.strip(nil, []byte(s)))
}

// line is one console line and when its newline arrived, since Start.
type line struct {
	text string
	at   time.Duration
}

// console collects QEMU's serial output: stripped, split into lines, copied
// to the log writers, with a broadcast channel closed on every change so
// that waiters scan only what is new.
type console struct {
	start time.Time

	mu      sync.Mutex
	st      stripper
	lines   []line
	partial []byte        // the line still being written, stripped
	partAt  time.Duration // when partial last grew
	changed chan struct{}
	out     []io.Writer // console log file, Machine's extra writer
	werr    error       // first error writing to out
	buf     []byte
}

func newConsole(start time.Time, out ...io.Writer) *console {
	c := &console{start: start, changed: make(chan struct{})}
	for _, w := range out {
		if w != nil {
			c.out = append(c.out, w)
		}
	}
	return c
}

// Write takes raw serial output; it never fails, so QEMU's stdout never
// blocks on a broken log file (the first such error is kept).
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Since(c.start)
	c.buf = c.st.strip(c.buf[:0], p)
	for _, w := range c.out {
		if _, err := w.Write(c.buf); err != nil && c.werr == nil {
			c.werr = err
		}
	}
	rest := c.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		c.partial = append(c.partial, rest[:i]...)
		c.lines = append(c.lines, line{text: string(c.partial), at: now})
		c.partial = c.partial[:0]
		rest = rest[i+1:]
	}
	c.partial = append(c.partial, rest...)
	if len(rest) > 0 {
		c.partAt = now
	}
	if len(c.buf) > 0 {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	return len(p), nil
}

// snapshot returns the lines from index from on, the partial line, and a
// channel closed when anything new arrives.
func (c *console) snapshot(from int) ([]line, line, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ls []line
	if from < len(c.lines) {
		ls = c.lines[from:len(c.lines):len(c.lines)]
	}
	return ls, line{text: string(c.partial), at: c.partAt}, c.changed
}

// String is the whole console so far.
func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	b.Write(c.partial)
	return b.String()
}

// tail is the last n lines (the partial one included).
func (c *console) tail(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	start := max(len(c.lines)-n, 0)
	if len(c.partial) > 0 && len(c.lines)-start >= n {
		start++
	}
	for _, l := range c.lines[start:] {
		out = append(out, l.text)
	}
	if len(c.partial) > 0 {
		out = append(out, string(c.partial))
	}
	return out
}

func (c *console) writeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.werr
}

// ringBuffer keeps the last max bytes written (QEMU's stderr).
type ringBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (r *ringBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b = append(r.b, p...)
	if over := len(r.b) - r.max; over > 0 {
		r.b = append(r.b[:0], r.b[over:]...)
	}
	return len(p), nil
}

func (r *ringBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.b)
}
