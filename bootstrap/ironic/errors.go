package ironic

import (
	"encoding/json"
	"strings"

	"github.com/weftnet/weft/internal/oscall"
)

// Error is a failed call to Ironic (oscall's, as Keystone's and
// Neutron's are).
type Error = oscall.Error

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
