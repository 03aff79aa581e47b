package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/controller"
)

// TestCtlReachesController: `weft controller ca-hash` prints the pin;
// `weft ctl fleet` reaches the controller over its unix socket (no
// token) and over https with the CA (pin or ca.crt) and the token, and a
// wrong token or another pin is refused.
func TestCtlReachesController(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if code, _, stderr := runCaptured(t, "controller", "ca-hash", "--state", state); code == 0 || !strings.Contains(stderr, "ca.crt") {
		t.Errorf("ca-hash before the first start: %d %s", code, stderr)
	}
	s, err := controller.New(controller.Options{Inventory: "../../controller/inventory/testdata/fleet.yaml", State: state, WatchInterval: -1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	url := "https://" + ln.Addr().String() + "/"
	// Serve opens the socket once the server certificate is issued.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(state, controller.SocketFile)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the controller's socket did not appear")
		}
	}

	if code, out, stderr := runCaptured(t, "controller", "ca-hash", "--state", state); code != 0 || out != s.CA().String()+"\n" {
		t.Errorf("ca-hash: %d %q %s", code, out, stderr)
	}
	t.Setenv("WEFT_CONTROLLER", "")
	t.Setenv("WEFT_TOKEN", "")
	t.Setenv("WEFT_CA", "")
	for _, argv := range [][]string{
		{"--state", state},                      // the socket
		{"--state", state, "--controller", url}, // ca.crt and operator.token from the state
		{"--state", "/nonexistent", "--controller", url, "--ca", s.CA().String(), "--token-file", filepath.Join(state, "operator.token")},
	} {
		code, out, stderr := runCaptured(t, append([]string{"ctl", "fleet", "-o", "json"}, argv...)...)
		if code != 0 || !strings.Contains(out, `"node-a"`) {
			t.Errorf("ctl fleet %v: %d %s %s", argv, code, out, stderr)
		}
	}
	other := "sha256:" + strings.Repeat("11", 32)
	if code, _, stderr := runCaptured(t, "ctl", "fleet", "--state", state, "--controller", url, "--ca", other); code == 0 || !strings.Contains(stderr, "pinned key "+other) {
		t.Errorf("another pin: %d %s", code, stderr)
	}
	t.Setenv("WEFT_TOKEN", "wrong")
	if code, _, stderr := runCaptured(t, "ctl", "fleet", "--state", state, "--controller", url); code == 0 || !strings.Contains(stderr, "403") {
		t.Errorf("a wrong token: %d %s", code, stderr)
	}
}
