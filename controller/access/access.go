// Package access decides who may call the controller's operator API: a
// client that shows the operator token (Authorization: Bearer, or, for a
// browser's GET, HTTP Basic with the token as the password), or a local
// process of the controller's uid or root on its unix socket. It also
// closes the API to cross-site requests: every POST must be JSON, and
// credentials are taken from the Authorization header only (no cookie,
// no query parameter), so a web page an operator visits can send neither.
package access

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/controller/httpx"
)

// TokenFile is the operator token's file in the state directory.
const TokenFile = "operator.token"

// LoadToken reads dir's operator token, writing a new random one (0600)
// when there is none: deleting the file and restarting rotates it. A
// file that is there but unreadable or empty is an error naming it.
func LoadToken(dir string) (token string, created bool, err error) {
	path := filepath.Join(dir, TokenFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var b [32]byte
		rand.Read(b[:])
		token = base64.RawURLEncoding.EncodeToString(b[:])
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", false, err
		}
		if _, err := f.WriteString(token + "\n"); err != nil {
			f.Close()
			return "", false, fmt.Errorf("%s: %w", path, err)
		}
		return token, true, f.Close()
	case err != nil:
		return "", false, err
	}
	token = strings.TrimSpace(string(data))
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", false, fmt.Errorf("%s: want one token on one line (delete the file to have a new one made at start)", path)
	}
	return token, false, nil
}

// Operator admits operators to the handlers it wraps.
type Operator struct {
	token []byte
}

// NewOperator admits the bearers of token (and local peers, see Socket).
func NewOperator(token string) *Operator { return &Operator{token: []byte(token)} }

// Only serves next to operators; anyone else gets 401 (no credential)
// or 403 (a wrong one), with a line saying what to send.
func (o *Operator) Only(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if local, _ := r.Context().Value(localKey{}).(bool); local {
			next.ServeHTTP(w, r)
			return
		}
		got, how := o.credential(r)
		switch {
		case how == "":
			w.Header().Add("WWW-Authenticate", `Bearer realm="weft controller"`)
			if r.Method == http.MethodGet {
				w.Header().Add("WWW-Authenticate", `Basic realm="weft controller (password: the operator token)"`)
			}
			httpx.Plain(w, http.StatusUnauthorized, "weft controller: %s needs the operator token: Authorization: Bearer <the controller's %s>", r.URL.Path, TokenFile)
		case subtle.ConstantTimeCompare([]byte(got), o.token) != 1:
			httpx.Plain(w, http.StatusForbidden, "weft controller: %s: that is not the operator token", how)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// credential is the token the request shows and where ("" = none).
// Basic is for browsers, which cannot be told to send a bearer token,
// and only for GET: a browser replays Basic credentials on its own,
// so a form on another site could ride them to a POST.
func (o *Operator) credential(r *http.Request) (token, how string) {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t), "the bearer token"
	}
	if _, pw, ok := r.BasicAuth(); ok {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return "", ""
		}
		return pw, "the Basic password"
	}
	return "", ""
}

// JSONPosts refuses a POST whose body is not declared JSON (415): an
// HTML form or a "simple" cross-site request cannot declare it, and a
// script that does needs a CORS preflight the controller never grants.
func JSONPosts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				httpx.Plain(w, http.StatusUnsupportedMediaType, "weft controller: POST %s: the body must be Content-Type: application/json (got %q)", r.URL.Path, r.Header.Get("Content-Type"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

type localKey struct{}

// Socket is the operators' local door: a unix socket (0600) whose peers
// are checked by SO_PEERCRED; the controller's own uid and root are
// operators without a token, anyone else is refused at accept.
type Socket struct {
	net.Listener
	uid uint32
}

// ListenSocket listens on path (a stale socket there is replaced).
func ListenSocket(path string) (*Socket, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode()&fs.ModeSocket != 0 {
		os.Remove(path)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return &Socket{Listener: ln, uid: uint32(os.Getuid())}, nil
}

// Accept returns the next connection from an operator; others are
// closed.
func (s *Socket) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if uc, ok := c.(*net.UnixConn); ok && s.allowed(uc) {
			return operatorConn{c}, nil
		}
		c.Close()
	}
}

func (s *Socket) allowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || cred.Uid == s.uid
}

// operatorConn is a connection Socket admitted.
type operatorConn struct{ net.Conn }

// ConnContext marks requests on connections Socket admitted as an
// operator's (http.Server.ConnContext).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(operatorConn); ok {
		return context.WithValue(ctx, localKey{}, true)
	}
	return ctx
}
