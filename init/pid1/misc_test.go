package pid1

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
)

func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 30 * time.Second}
	var got []time.Duration
	for range 8 {
		got = append(got, b.Next())
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Errorf("after Reset: %v", d)
	}
}

func TestChooseHostname(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0e}
	for _, tc := range []struct {
		name       string
		fromConfig string
		md         *config.MetaData
		mac        net.HardwareAddr
		want, src  string
		notes      int
	}{
		{"config wins", "edge-1", &config.MetaData{Hostname: "vm.novalocal"}, mac, "edge-1", "config node.hostname", 0},
		{"config fqdn kept", "edge-1.example.com", nil, mac, "edge-1.example.com", "config node.hostname", 0},
		{"auto means metadata", "auto", &config.MetaData{Hostname: "db-1.novalocal"}, mac, "db-1", "meta_data hostname", 0},
		{"empty means metadata", "", &config.MetaData{Hostname: "DB-1"}, mac, "db-1", "meta_data hostname", 0},
		{"metadata name sanitised", "", &config.MetaData{Name: "DB Node #1"}, mac, "db-node-1", "meta_data name", 0},
		{"invalid config skipped", "bad_name", &config.MetaData{Hostname: "ok"}, mac, "ok", "meta_data hostname", 1},
		{"mac fallback", "", &config.MetaData{}, mac, "weft-abcd0e", "mac 52:54:00:ab:cd:0e", 0},
		{"nothing at all", "", nil, nil, "weft", "default", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, src, notes := chooseHostname(tc.fromConfig, tc.md, tc.mac)
			if got != tc.want || src != tc.src || len(notes) != tc.notes {
				t.Errorf("got %q from %q (notes %q), want %q from %q", got, src, notes, tc.want, tc.src)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	for s, ok := range map[string]bool{
		"a": true, "node-1": true, "n1.example.com": true, "-a": false, "a-": false, "a..b": false,
		"": false, "a_b": false, strings.Repeat("a", 64): false, strings.Repeat("a.", 32) + "a": false,
	} {
		if err := validHostname(s); (err == nil) != ok {
			t.Errorf("validHostname(%q) = %v, want ok=%v", s, err, ok)
		}
	}
}

func TestLoggerStampsUptime(t *testing.T) {
	var buf bytes.Buffer
	var level slog.LevelVar
	up := 3214 * time.Millisecond
	w := &stampWriter{out: NewConsole(&buf), uptime: func() time.Duration { return up }}
	log := newLogger(w, &level)
	log.Info("hello", "k", "v")
	log.Debug("hidden")
	level.Set(slog.LevelDebug)
	log.Debug("shown")
	w.line("%s: %s", "agent", "started")
	want := "[   3.214] level=INFO msg=hello k=v\n[   3.214] level=DEBUG msg=shown\n[   3.214] agent: started\n"
	if buf.String() != want {
		t.Errorf("console:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestControlFlags(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		reboot, poweroff bool
		err              string
	}{
		{nil, false, false, ""},
		{[]string{"--reboot"}, true, false, ""},
		{[]string{"-poweroff"}, false, true, ""},
		{[]string{"--reboot", "--poweroff"}, false, false, "exclude"},
		{[]string{"now"}, false, false, "unexpected argument"},
		{[]string{"--halt"}, false, false, "not defined"},
	} {
		r, p, err := controlFlags(tc.args, io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || r != tc.reboot || p != tc.poweroff {
			t.Errorf("%q: %v %v %v", tc.args, r, p, err)
		}
	}
}

func TestKeeperRecovers(t *testing.T) {
	var buf bytes.Buffer
	rec := &fakeRec{}
	g := keeper{log: slog.New(slog.NewTextHandler(&buf, nil)), rec: rec}
	if !g.call("boom", func() { panic("nil map") }) {
		t.Fatal("panic not reported")
	}
	if g.call("calm", func() {}) {
		t.Fatal("no panic reported as one")
	}
	s, ok := rec.last("panic")
	if !ok || !regexp.MustCompile(`^boom: nil map`).MatchString(s.Detail) || !strings.Contains(buf.String(), "goroutine") {
		t.Errorf("report %+v, log %s", s, buf.String())
	}
}
