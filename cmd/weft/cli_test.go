package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/agent/agentapi"
)

// runCaptured runs the weft entry point with argv and returns its exit
// status, stdout and stderr.
func runCaptured(t *testing.T, argv ...string) (int, string, string) {
	t.Helper()
	files := [2]*os.File{}
	for i := range files {
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		files[i] = f
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = files[0], files[1]
	code := run(append([]string{"weft"}, argv...))
	os.Stdout, os.Stderr = oldOut, oldErr
	var out [2]string
	for i, f := range files {
		f.Seek(0, io.SeekStart)
		b, _ := io.ReadAll(f)
		f.Close()
		out[i] = string(b)
	}
	return code, out[0], out[1]
}

// The CLI is one tool: --help prints the command's usage and succeeds
// (no "flag: help requested"), each flag's default is shown once, a bad
// flag is reported once with the usage (status 2), and an error carries
// each prefix once.
func TestCLIUsageAndErrors(t *testing.T) {
	for _, tc := range []struct {
		argv     []string
		code     int
		want     []string // in stderr
		wantNot  []string
		exactErr string // stderr, exactly
	}{
		{argv: []string{"--help"}, code: 0, want: []string{"usage: weft <command>", "agent", "ctl", "--help shows a command's flags"}},
		{argv: []string{"agent", "--help"}, code: 0,
			want: []string{"usage: weft agent", "-config", `(default "/etc/weft/weft.yaml")`, "-vrouter-socket", "-api-socket", "-bgp-port", "-metrics"}},
		{argv: []string{"vrouter", "-h"}, code: 0, want: []string{"usage: weft vrouter", "-socket", "-underlay-dev"}},
		{argv: []string{"ctl", "--help"}, code: 0, want: []string{"usage: weft ctl COMMAND", "status", "peers", "endpoints add NAME"}},
		{argv: []string{"ctl"}, code: 2, want: []string{"usage: weft ctl COMMAND"}},
		{argv: []string{"ctl", "nope"}, code: 2, want: []string{`weft ctl: unknown command "nope"`}},
		{argv: []string{"ctl", "status", "--help"}, code: 0, want: []string{"usage: weft ctl status", "-agent", "$WEFT_AGENT"}},
		{argv: []string{"ctl", "routes", "--help"}, code: 0, want: []string{"usage: weft ctl routes [--network N]", "-network"}},
		{argv: []string{"ctl", "fleet", "--help"}, code: 0, want: []string{"usage: weft ctl fleet", "-controller", "$WEFT_CONTROLLER"}},
		{argv: []string{"ctl", "endpoints", "--help"}, code: 0,
			want: []string{"usage: weft ctl endpoints [flags]", "weft ctl endpoints add NAME --network N --address A/L", "weft ctl endpoints delete NAME"}},
		{argv: []string{"ctl", "endpoints", "add", "--help"}, code: 0, want: []string{"usage: weft ctl endpoints add NAME", "-address", "-network", "-netns", "-mac"}},
		{argv: []string{"ctl", "endpoints", "add"}, code: 2, want: []string{"NAME is required", "usage: weft ctl endpoints add"}},
		{argv: []string{"ctl", "config", "--help"}, code: 0, want: []string{"usage: weft ctl config [--reload]", "ctl config check", "-reload"}},
		{argv: []string{"ctl", "status", "--bogus"}, code: 2, want: []string{"flag provided but not defined: -bogus", "usage: weft ctl status"}},
		{argv: []string{"config", "--help"}, code: 0, want: []string{"usage: weft config COMMAND", "check"}},
		{argv: []string{"config", "check", "--help"}, code: 0, want: []string{"usage: weft config check", "-kind"}},
		{argv: []string{"qemu", "--help"}, code: 0, want: []string{"usage: weft qemu COMMAND", "run", "demo"}},
		{argv: []string{"image", "build", "--help"}, code: 0, want: []string{"usage: weft image build", "-out", "-cache"}},
		{argv: []string{"controller", "--help"}, code: 0, want: []string{"usage: weft controller", "-inventory"}},
		{argv: []string{"agent", "--config", "/nonexistent/weft.yaml"}, code: 1,
			exactErr: "weft agent: config: open /nonexistent/weft.yaml: no such file or directory\n"},
		{argv: []string{"agent", "stray"}, code: 1, exactErr: "weft agent: unexpected argument \"stray\"\n"},
	} {
		t.Run(strings.Join(tc.argv, " "), func(t *testing.T) {
			code, _, stderr := runCaptured(t, tc.argv...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tc.exactErr != "" && stderr != tc.exactErr {
				t.Errorf("stderr %q, want %q", stderr, tc.exactErr)
			}
			checkOneTool(t, stderr)
		})
	}
}

// doublePrefix finds "agent: agent: " or "weft agent: agent: " in l.
func doublePrefix(l string) string {
	segs := strings.Split(l, ": ")
	for i := 0; i+2 < len(segs); i++ {
		words := strings.Fields(segs[i])
		if len(words) > 0 && words[len(words)-1] == segs[i+1] {
			return segs[i] + ": " + segs[i+1] + ": "
		}
	}
	return ""
}

// checkOneTool holds for every output of the CLI.
func checkOneTool(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "help requested") {
		t.Errorf("stderr says help requested as an error:\n%s", stderr)
	}
	if strings.Count(stderr, "flag provided but not defined") > 1 {
		t.Errorf("the bad flag is reported twice:\n%s", stderr)
	}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Count(l, "(default") > 1 || strings.Contains(l, "default $") {
			t.Errorf("a default said twice: %q", l)
		}
		if m := doublePrefix(l); m != "" {
			t.Errorf("a prefix said twice (%q): %q", m, l)
		}
	}
}

// A reload the agent refuses reaches `weft ctl config --reload` with one
// "agent:" prefix (it had "weft ctl: agent: agent: config ...").
func TestCtlReloadErrorPrefix(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "weft.yaml")
	good := "bgp:\n  asn: 64512\n  controllers: [{address: 192.0.2.254}]\n"
	if err := os.WriteFile(cfgPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{ConfigPath: cfgPath, Hostname: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(good+"bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reloadErr := a.Reload()
	if reloadErr == nil {
		t.Fatal("the agent took a config with an unknown key")
	}
	// The agent's API answers a refused reload with the agent's error.
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(agentapi.Error{Error: reloadErr.Error()})
	})}
	go srv.Serve(ln)
	defer srv.Close()

	code, _, stderr := runCaptured(t, "ctl", "config", "--reload", "--agent", sock)
	if code != 1 || !strings.HasPrefix(stderr, "weft ctl: agent: config "+cfgPath+": ") {
		t.Errorf("exit %d, stderr %q; want 1 and \"weft ctl: agent: config %s: ...\"", code, stderr, cfgPath)
	}
	checkOneTool(t, stderr)
}
