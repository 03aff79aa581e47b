package bgp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/log"
)

// TestGoBGPLogger: the stable keys, and each option of the two speakers
// that use the adapter (the agent's, the controller's reflector).
func TestGoBGPLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var observed []string
	g := NewGoBGPLogger(l, GoBGPLog{
		Prefix:    "reflector: ",
		InfoLevel: slog.LevelDebug,
		Routine: func(msg string, _ log.Fields) (slog.Level, bool) {
			return slog.LevelInfo, msg == "routine"
		},
		Peer:    func(key string) string { return strings.ReplaceAll(key, "127.66.0.2", "192.0.2.7") },
		Observe: func(peer, msg string, _ log.Fields) { observed = append(observed, peer+" "+msg) },
	})
	g.Info("chatter", log.Fields{"Key": "127.66.0.2"})
	g.Warn("routine", log.Fields{"Key": "127.66.0.2", "Topic": "Peer"})
	g.Error("broken", nil)
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg="reflector: routine" component=gobgp peer=192.0.2.7 topic=Peer`,
		`level=ERROR msg="reflector: broken" component=gobgp`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatter") {
		t.Errorf("an Info line passed at debug level:\n%s", out)
	}
	if want := []string{"192.0.2.7 chatter", "192.0.2.7 routine", " broken"}; strings.Join(observed, "|") != strings.Join(want, "|") {
		t.Errorf("observed %q, want %q", observed, want)
	}
	if g.GetLevel() != log.WarnLevel {
		t.Errorf("GetLevel = %v with Info sent to debug and debug off, want warn", g.GetLevel())
	}
	if NewGoBGPLogger(l, GoBGPLog{}).GetLevel() != log.InfoLevel {
		t.Error("GetLevel of the default adapter with debug off: want info")
	}
}
