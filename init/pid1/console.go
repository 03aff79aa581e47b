package pid1

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/init/steps"
)

// Console serialises whole-line writes to the node's console, so that step
// markers, log lines and the services' output never interleave mid-line.
// Every writer in this package hands it complete lines in one Write call.
type Console struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsole returns a Console writing to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

// stampWriter prefixes each write with the time since boot in the kernel's
// console style ("[   3.214] "), so our lines sort in with the kernel's.
// slog's handlers call Write once per record, so one write is one line.
type stampWriter struct {
	out    io.Writer
	uptime func() time.Duration
}

func (s *stampWriter) Write(p []byte) (int, error) {
	b := make([]byte, 0, len(p)+12)
	b = fmt.Appendf(b, "[%8.3f] ", s.uptime().Seconds())
	b = append(b, p...)
	if _, err := s.out.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// line writes one line, adding the newline.
func (s *stampWriter) line(format string, args ...any) {
	_, _ = s.Write(fmt.Appendf(nil, format+"\n", args...))
}

// newLogger returns the text logger of PID 1: no wall-clock time (it is
// meaningless before the network is up and NTP has run), the uptime stamp
// instead; level raised by weft.debug through level.
func newLogger(w io.Writer, level *slog.LevelVar) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// Clock is the time source of the bring-up and the supervisor; tests replace
// it so retries and backoffs run without waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff doubles a delay from min up to max. The zero value is not usable.
type backoff struct {
	min, max, cur time.Duration
}

// Next returns the delay to wait now: min, then twice the previous, capped.
func (b *backoff) Next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur *= 2
	}
	b.cur = min(b.cur, b.max)
	return b.cur
}

// Reset starts the sequence again at min.
func (b *backoff) Reset() { b.cur = 0 }

// writeSteps is the operator console's `steps [NAME...]`: every entry of
// the named steps (all without a name), one a line with its subject (link
// or file) and every cause, then how many there were; a node with 10,000
// links is read one step at a time.
func writeSteps(w io.Writer, ss []steps.Step, names []string) {
	n := 0
	for _, s := range ss {
		if len(names) > 0 && !slices.Contains(names, s.Name) {
			continue
		}
		n++
		name := s.Name
		if subj := cmp.Or(s.Attrs["link"], s.Attrs["file"]); subj != "" {
			name += " " + subj
		}
		fmt.Fprintf(w, "%-14s %-8s %s\r\n", name, s.Verdict, s.Detail)
	}
	fmt.Fprintf(w, "(%d entries)\r\n", n)
}
