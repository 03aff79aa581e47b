package pid1

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/controller/fleetapi"
)

// controllerHTTP is the client for the weft.config= URL and for the
// controller's phone-home and probes. With weft.ca=, it accepts only an
// https server whose chain holds the pinned CA and whose certificate is
// that CA's for the dialled address. Without it, https is verified with
// the image's CA certificates, and the error says so when there are
// none. A malformed weft.ca= fetches nothing: falling back to no pin
// would trust what the operator meant to exclude.
func controllerHTTP(cl config.Cmdline) (*http.Client, error) {
	if cl.CA == "" {
		hc := fleetapi.HTTPClient(fleetapi.Pin{}, nil)
		if strings.HasPrefix(cl.ConfigURL, "https://") && !fleetapi.SystemRoots() {
			return hc, fmt.Errorf("weft.config=%s is https, but there is no weft.ca= and the image has no CA certificates to verify it with: add weft.ca=sha256:… (weft controller ca-hash prints it)", cl.ConfigURL)
		}
		return hc, nil
	}
	pin, err := fleetapi.ParsePin(cl.CA)
	if err != nil {
		err = fmt.Errorf("weft.ca: %w: nothing is fetched from weft.config= until it is fixed", err)
		return &http.Client{Transport: refuse{err}}, err
	}
	return fleetapi.HTTPClient(pin, nil), nil
}

// refuse fails every request with err.
type refuse struct{ err error }

func (r refuse) RoundTrip(*http.Request) (*http.Response, error) { return nil, r.err }
