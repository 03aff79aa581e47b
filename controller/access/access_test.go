package access

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

const envPeer = "WEFT_ACCESS_TEST_PEER" // the socket the helper process calls

// TestMain: as the helper process, call the socket and print the answer.
func TestMain(m *testing.M) {
	if sock := os.Getenv(envPeer); sock != "" {
		fmt.Print(call(sock))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// call sends one operator request over the socket and returns the status
// line, or what failed.
func call(sock string) string {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	fmt.Fprint(c, "GET /weft/v1/fleet HTTP/1.0\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// TestSocket: the socket is 0600; this process's uid gets through
// without a token; another uid, even with the file opened to it, is
// closed at accept (SO_PEERCRED).
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "controller.sock")
	ln, err := ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewOperator("secret").Only(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fleet")
	})), ConnContext: ConnContext}
	go srv.Serve(ln)
	defer srv.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st, err)
	}
	if got := call(sock); got != "HTTP/1.0 200 OK" {
		t.Errorf("this uid: %q", got)
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "another uid's call needs root")
		return
	}
	// Open the way to everyone, so only SO_PEERCRED stands between.
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir()s parent
	os.Chmod(dir, 0o755)
	os.Chmod(sock, 0o666)
	exe := filepath.Join(dir, "peer")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envPeer+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "read: ") {
		t.Errorf("uid 65534 on the socket: %q %v, want the connection closed", out, err)
	}
}
