package openstack

import (
	"encoding/json"
	"errors"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/weftnet/weft/internal/oscall"
)

// Error is a failed OpenStack call (oscall's, as Ironic's are).
type Error = oscall.Error

// callError turns gophercloud's error into an Error.
func callError(call string, err error) error {
	e := &Error{Call: call, Message: err.Error(), Err: err}
	// A refused reauthentication does not unwrap to the refusal it carries.
	if re := (*gophercloud.ErrUnableToReauthenticate)(nil); errors.As(err, &re) && re.ErrOriginal != nil {
		err = re.ErrOriginal
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		e.Status, e.RequestID = ue.Actual, oscall.RequestID(ue.ResponseHeader)
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
