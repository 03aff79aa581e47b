package openstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// RequestIDHeader is the header every OpenStack service answers with.
const RequestIDHeader = "X-Openstack-Request-Id"

// Error is a failed OpenStack call: which call, the HTTP status (0 when
// there was no answer) and the request id to look up in the service's
// log, and the service's own message.
type Error struct {
	Call      string // "neutron GET /v2.0/ports"
	Status    int
	RequestID string
	Message   string // the service's error message, else gophercloud's
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
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// callError turns gophercloud's error into an Error.
func callError(call string, err error) error {
	e := &Error{Call: call, Message: err.Error(), Err: err}
	// A refused reauthentication does not unwrap to the refusal it carries.
	if re := (*gophercloud.ErrUnableToReauthenticate)(nil); errors.As(err, &re) && re.ErrOriginal != nil {
		err = re.ErrOriginal
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		e.Status, e.RequestID = ue.Actual, ue.ResponseHeader.Get(RequestIDHeader)
		if m := serviceMessage(ue.Body); m != "" {
			e.Message = m
		}
	}
	return e
}

// serviceMessage reads the message of Keystone's {"error": {"message"}}
// and Neutron's {"NeutronError": {"message"}} bodies.
func serviceMessage(body []byte) string {
	var doc map[string]struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	for _, k := range []string{"error", "NeutronError"} {
		if m := doc[k].Message; m != "" {
			return m
		}
	}
	return ""
}
