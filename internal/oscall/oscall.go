// Package oscall is the error of a failed call to an OpenStack service
// (Keystone, Neutron, Ironic): which call, the HTTP status, the request
// id to look up in the service's log, and the service's own message, so
// that every such error reads the same.
package oscall

import (
	"fmt"
	"net/http"
	"strings"
)

// Error is a failed call: Status is 0 when there was no answer.
type Error struct {
	Call      string // "neutron GET /v2.0/ports", "ironic GET http://…/v1/lookup"
	Status    int
	RequestID string
	Message   string // the service's error message, else the client's
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

// RequestID is the id the service gave the request: X-Openstack-Request-Id
// as most services (and proxies) send it, or Openstack-Request-Id as
// Ironic's hooks do.
func RequestID(h http.Header) string {
	if id := h.Get("X-Openstack-Request-Id"); id != "" {
		return id
	}
	return h.Get("Openstack-Request-Id")
}
