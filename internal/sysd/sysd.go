// Package sysd is what Weft's daemons do when systemd runs them: tell it
// they are ready (sd_notify READY=1), keep its watchdog fed while their
// main loop is alive, and log to the journal with structured fields.
// Outside systemd every function here is a no-op.
package sysd

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
)

// Ready tells systemd the service is up (Type=notify units).
func Ready() { daemon.SdNotify(false, daemon.SdNotifyReady) }

// Stopping tells systemd the service is shutting down.
func Stopping() { daemon.SdNotify(false, daemon.SdNotifyStopping) }

// Watchdog pings systemd's watchdog at half its interval while alive()
// holds, until ctx ends. Without WatchdogSec in the unit it does nothing.
func Watchdog(ctx context.Context, alive func() bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d == 0 {
		return
	}
	t := time.NewTicker(d / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive == nil || alive() {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}

// UnderJournal reports whether stderr is connected to the journal.
func UnderJournal() bool { return os.Getenv("JOURNAL_STREAM") != "" && journal.Enabled() }

// JournalHandler is a slog.Handler that sends records to the journal with
// their attributes as fields (PEER=..., PREFIX=...), so that
// `journalctl -u weft-agent PEER=192.0.2.1` finds them.
type JournalHandler struct {
	level slog.Leveler
	attrs []slog.Attr
	group string
}

// NewJournalHandler logs at level and above.
func NewJournalHandler(level slog.Leveler) *JournalHandler { return &JournalHandler{level: level} }

func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{}
	add := func(a slog.Attr) {
		k := strings.ToUpper(strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				return c
			}
			return '_'
		}, h.group+a.Key))
		if k != "" && k[0] != '_' {
			vars[k] = a.Value.String()
		}
	}
	for _, a := range h.attrs {
		add(a)
	}
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		add(a)
		msg += " " + a.Key + "=" + a.Value.String()
		return true
	})
	return journal.Send(msg, priority(r.Level), vars)
}

func (h *JournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *JournalHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = h.group + name + "_"
	return &c
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}
