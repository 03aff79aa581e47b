package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/weftnet/weft/internal/sysd"
)

// version is the build's version: the module version, or the VCS
// revision for a development build, or "dev".
var version = func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "dev"
}()

// newLogger is the structured logger the daemons share: text to stderr.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	if sysd.UnderJournal() {
		return slog.New(sysd.NewJournalHandler(l)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
