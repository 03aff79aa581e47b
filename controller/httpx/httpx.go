// Package httpx holds the few HTTP helpers every part of the controller
// answers with: plain-text errors, documents, JSON, long polls.
package httpx

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"
)

// RemoteAddr is the request's source address.
func RemoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// Plain answers with a plain-text message: the controller's errors.
func Plain(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format, args...)
	io.WriteString(w, "\n")
}

// Send answers 200 with body.
func Send(w http.ResponseWriter, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// JSON answers with v as indented JSON.
func JSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		Plain(w, http.StatusInternalServerError, "weft controller: %v", err)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
}

// ParseWait reads a request's wait= parameter: a Go duration, 0..max.
func ParseWait(r *http.Request, max time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("wait: %q is not a duration (like 25s)", v)
	}
	if d < 0 || d > max {
		return 0, fmt.Errorf("wait: %v is out of range 0..%v", d, max)
	}
	return d, nil
}

// LongPoll lets a response wait past the server's write timeout.
func LongPoll(w http.ResponseWriter, wait time.Duration) {
	if wait > 0 {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 10*time.Second))
	}
}

// Document reads a request's body (at most max bytes) and decodes it with
// decode. On failure it has answered (413 for a body too large or
// unreadable, 400 for one decode refuses, naming what) and ok is false.
func Document[T any](w http.ResponseWriter, r *http.Request, max int64, what string, decode func([]byte) (T, error)) (v T, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		Plain(w, http.StatusRequestEntityTooLarge, "weft controller: reading the %s: %v", what, err)
		return v, false
	}
	if v, err = decode(body); err != nil {
		Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return v, false
	}
	return v, true
}
