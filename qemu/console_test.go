package qemu

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestStripANSI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain line\n", "plain line\n"},
		{"crlf\r\nline\r\n", "crlf\nline\n"},
		{"\x1b[2J\x1b[01;01Hclear", "clear"},
		{"\x1b[1;37;40mSeaBIOS\x1b[0m (version)", "SeaBIOS (version)"},
		{"\x1b[?25l\x1b[?7hiPXE", "iPXE"},
		{"\x1bcreset", "reset"},
		{"\x1b(Bcharset", "charset"},
		{"\x1b]0;title\x07after", "after"},
		{"\x1b]2;title\x1b\\after", "after"},
		{"bell\x07 back\bspace\x00nul\x7f", "bell backspacenul"},
		{"tab\tkept", "tab\tkept"},
		{"utf-8 ✓ kept", "utf-8 ✓ kept"},
		{"broken \x1b[12\nnext", "broken \nnext"},
		{"\x1b\x1b[31mred", "red"},
	}
	for _, tt := range tests {
		if got := StripANSI(tt.in); got != tt.want {
			t.Errorf("StripANSI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzStripANSI: stripping in pieces gives what stripping at once gives
// (escape sequences split across pipe reads), and nothing a terminal would
// interpret survives.
func FuzzStripANSI(f *testing.F) {
	f.Add([]byte("\x1b[1;37mSeaBIOS\x1b[0m\r\n"), uint8(3))
	f.Add([]byte("\x1b]0;t\x1b\\x\x1b(B"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		var whole stripper
		all := whole.strip(nil, in)
		var parts stripper
		var got []byte
		for rest, n := in, int(cut)%8+1; len(rest) > 0; {
			k := min(n, len(rest))
			got = parts.strip(got, rest[:k])
			rest = rest[k:]
		}
		if !bytes.Equal(all, got) {
			t.Fatalf("split stripping %q = %q, whole = %q", in, got, all)
		}
		for _, c := range all {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				t.Fatalf("control byte %#x left in %q", c, all)
			}
		}
	})
}

func TestConsoleLines(t *testing.T) {
	var log bytes.Buffer
	c := newConsole(time.Now(), &log, nil)
	for _, p := range []string{"fir", "st\r\n\x1b[3", "1msecond\x1b[0m\r\nthi", "rd"} {
		c.Write([]byte(p))
	}
	if got, want := c.String(), "first\nsecond\nthird"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got := log.String(); got != "first\nsecond\nthird" {
		t.Fatalf("log = %q", got)
	}
	if got := c.tail(2); strings.Join(got, "|") != "second|third" {
		t.Fatalf("tail(2) = %q", got)
	}
	if got := c.tail(10); strings.Join(got, "|") != "first|second|third" {
		t.Fatalf("tail(10) = %q", got)
	}
}

// fakeVM is a VM without QEMU: tests write its console and end it.
func fakeVM() *VM {
	start := time.Now()
	return &VM{name: "fake", start: start, con: newConsole(start), errb: &ringBuffer{max: 64}, done: make(chan struct{})}
}

func TestWaitFor(t *testing.T) {
	vm := fakeVM()
	vm.con.Write([]byte("weft: step=mounts verdict=ok\nweft: step=dhcp verdict=ok link=eth0\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// A marker that arrived before the call is found.
	sm, at, err := vm.WaitFor(ctx, regexp.MustCompile(`step=dhcp verdict=(\w+) link=(\S+)`))
	if err != nil || len(sm) != 3 || sm[1] != "ok" || sm[2] != "eth0" {
		t.Fatalf("WaitFor = %q, %v", sm, err)
	}
	if at <= 0 || at > time.Since(vm.start) {
		t.Fatalf("elapsed %v out of range", at)
	}
	// And again: each call starts from the beginning.
	if _, _, err := vm.WaitFor(ctx, regexp.MustCompile(`step=mounts`)); err != nil {
		t.Fatal(err)
	}

	// A marker written later, in pieces: half a line does not match.
	go func() {
		time.Sleep(50 * time.Millisecond)
		vm.con.Write([]byte("noise\nweft: step=ready verdict=o"))
		time.Sleep(50 * time.Millisecond)
		vm.con.Write([]byte("k\x1b[0m\r"))
		time.Sleep(50 * time.Millisecond)
		vm.con.Write([]byte("\n"))
	}()
	sm, _, err = vm.WaitFor(ctx, regexp.MustCompile(`^weft: step=ready verdict=(\w+)$`))
	if err != nil || sm[1] != "ok" {
		t.Fatalf("WaitFor(ready) = %q, %v", sm, err)
	}
}

func TestWaitForTimeout(t *testing.T) {
	vm := fakeVM()
	for i := range 40 {
		vm.con.Write([]byte(strings.Repeat("x", i%3) + "line " + string(rune('A'+i%26)) + "\n"))
	}
	vm.con.Write([]byte("last words"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := vm.WaitFor(ctx, regexp.MustCompile(`never`))
	var we *WaitError
	if !errors.As(err, &we) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a *WaitError wrapping DeadlineExceeded", err)
	}
	if len(we.Tail) != tailLines || we.Tail[len(we.Tail)-1] != "last words" || we.Exit != "running" {
		t.Fatalf("WaitError = %+v", we)
	}
	if !strings.Contains(err.Error(), "| last words") || !strings.Contains(err.Error(), "/never/") {
		t.Fatalf("error text lacks the tail or pattern:\n%v", err)
	}
}

func TestWaitForExit(t *testing.T) {
	vm := fakeVM()
	vm.errb.Write([]byte("qemu-system-x86_64: -kernel nope: could not load kernel\n"))
	go func() {
		time.Sleep(50 * time.Millisecond)
		vm.con.Write([]byte("final line before exit\nno newline"))
		vm.exitErr = errors.New("exit status 1")
		close(vm.done)
	}()
	_, _, err := vm.WaitFor(context.Background(), regexp.MustCompile(`^final line`))
	if err != nil {
		t.Fatalf("a line written before exit must still match: %v", err)
	}
	if _, _, err := vm.WaitFor(context.Background(), regexp.MustCompile(`^no newline$`)); err != nil {
		t.Fatalf("the unterminated last line must match after exit: %v", err)
	}
	_, _, err = vm.WaitFor(context.Background(), regexp.MustCompile(`ready`))
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "could not load kernel") {
		t.Fatalf("err = %v", err)
	}
}

func TestRingBuffer(t *testing.T) {
	r := &ringBuffer{max: 8}
	r.Write([]byte("0123456"))
	r.Write([]byte("789ab"))
	if got := r.String(); got != "456789ab" {
		t.Fatalf("ring = %q", got)
	}
}
