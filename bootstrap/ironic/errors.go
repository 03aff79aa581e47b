package ironic

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// requestID is the id Ironic gave the request: it answers with
// Openstack-Request-Id (its hooks), other services and proxies with
// X-Openstack-Request-Id.
func requestID(h http.Header) string {
	if id := h.Get("Openstack-Request-Id"); id != "" {
		return id
	}
	return h.Get("X-Openstack-Request-Id")
}

// Error is a failed call to Ironic: which call, the HTTP status (0 when
// there was no answer), the request id to look up in Ironic's log, and
// Ironic's own message.
type Error struct {
	Call      string // "ironic GET http://…/v1/lookup"
	Status    int
	RequestID string
	Message   string
	Err       error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Call)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	} else {
		b.WriteString(": no answer")
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, ", request %s", e.RequestID)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// faultString reads Ironic's error body: {"error_message": "<JSON with
// faultstring>"}, the inner document being a string.
func faultString(body []byte) string {
	var outer struct {
		ErrorMessage string `json:"error_message"`
	}
	if json.Unmarshal(body, &outer) != nil || outer.ErrorMessage == "" {
		return strings.TrimSpace(string(clip(body, 300)))
	}
	var inner struct {
		FaultString string `json:"faultstring"`
	}
	if json.Unmarshal([]byte(outer.ErrorMessage), &inner) == nil && inner.FaultString != "" {
		return inner.FaultString
	}
	return outer.ErrorMessage
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
