package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/osrg/gobgp/v3/pkg/log"
)

// GoBGPLog fits the GoBGP log adapter to the speaker it serves: the
// agent's (peer diagnostics, guard addresses) or the controller's route
// reflector (quieter, its messages prefixed).
type GoBGPLog struct {
	// Prefix goes in front of every message ("reflector: ").
	Prefix string
	// InfoLevel is the level GoBGP's Info lines get; the zero value keeps
	// them at slog.LevelInfo. A speaker that logs session changes itself
	// sends GoBGP's per-session chatter to slog.LevelDebug.
	InfoLevel slog.Level
	// Routine caps the level of a line that is routine for this speaker
	// (ok false: not routine).
	Routine func(msg string, f log.Fields) (level slog.Level, ok bool)
	// Peer names the line's peer from GoBGP's "Key" field; nil keeps
	// GoBGP's name.
	Peer func(key string) string
	// Observe sees every line before the level filter, with the peer as
	// Peer names it.
	Observe func(peer, msg string, f log.Fields)
}

// NewGoBGPLogger hands GoBGP's log lines to l with Weft's stable keys
// (GoBGP's "Key" is the neighbour address: "peer"; the other fields in
// lower case) and component=gobgp.
func NewGoBGPLogger(l *slog.Logger, o GoBGPLog) log.Logger { return &gobgpLogger{l: l, o: o} }

type gobgpLogger struct {
	l *slog.Logger
	o GoBGPLog
}

// GoBGP calls Panic and Fatal on what it deems logic bugs; an embedded
// speaker must not take its process down for them.
func (g *gobgpLogger) Panic(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g *gobgpLogger) Fatal(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g *gobgpLogger) Error(msg string, f log.Fields) { g.emit(slog.LevelError, msg, f) }
func (g *gobgpLogger) Warn(msg string, f log.Fields)  { g.emit(slog.LevelWarn, msg, f) }
func (g *gobgpLogger) Info(msg string, f log.Fields)  { g.emit(g.o.InfoLevel, msg, f) }
func (g *gobgpLogger) Debug(msg string, f log.Fields) { g.emit(slog.LevelDebug, msg, f) }

func (g *gobgpLogger) SetLevel(log.LogLevel) {}

// GetLevel gates GoBGP's per-UPDATE debug lines, which are costly to
// build: they are only produced when the slog handler wants debug.
func (g *gobgpLogger) GetLevel() log.LogLevel {
	switch {
	case g.l.Enabled(context.Background(), slog.LevelDebug):
		return log.DebugLevel
	case g.o.InfoLevel < slog.LevelInfo:
		return log.WarnLevel
	}
	return log.InfoLevel
}

func (g *gobgpLogger) emit(level slog.Level, msg string, f log.Fields) {
	key, named := f["Key"]
	peer := fieldString(f, "Key")
	if g.o.Peer != nil {
		peer = g.o.Peer(peer)
	}
	if g.o.Observe != nil {
		g.o.Observe(peer, msg, f)
	}
	if g.o.Routine != nil {
		if l, ok := g.o.Routine(msg, f); ok && l < level {
			level = l
		}
	}
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(f)+1)
	attrs = append(attrs, slog.String("component", "gobgp"))
	if named {
		if g.o.Peer != nil {
			key = peer
		}
		attrs = append(attrs, slog.Any("peer", key))
	}
	for k, v := range f {
		if k != "Key" {
			attrs = append(attrs, slog.Any(strings.ToLower(k), v))
		}
	}
	g.l.LogAttrs(context.Background(), level, g.o.Prefix+msg, attrs...)
}

func fieldString(f log.Fields, k string) string {
	v, ok := f[k]
	if !ok || v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// speakerLog is the adapter of the agent's speaker: GoBGP names peers by
// their guard loopback address (relay.go), which addrs turns back into
// the real one, and the lines that explain a session's trouble feed diag,
// GoBGP's API having no "last error" of its own.
func speakerLog(l *slog.Logger, diag *diagnostics, addrs *addrBook) log.Logger {
	return NewGoBGPLogger(l, GoBGPLog{
		Routine: func(msg string, _ log.Fields) (slog.Level, bool) { l, ok := speakerRoutine[msg]; return l, ok },
		Peer:    addrs.real,
		Observe: diag.observe,
	})
}

// speakerRoutine are GoBGP warnings that are routine for the agent.
var speakerRoutine = map[string]slog.Level{
	// FRR reflects a client's own routes back; GoBGP drops them (the
	// ORIGINATOR_ID is ours), then warns when their withdrawal comes.
	"No matching path for withdraw found, may be path was not installed into table": slog.LevelDebug,
	// A peer dialling while GoBGP holds the session idle after a drop.
	"Closed an accepted connection": slog.LevelInfo,
}
