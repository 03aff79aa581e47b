package pid1

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/controller/fleetapi"
)

// TestControllerHTTP: weft.ca= pins the client; a malformed one fetches
// nothing (no silent fallback to the image's roots); https without a pin
// on an image without CA certificates says what to add.
func TestControllerHTTP(t *testing.T) {
	get := func(hc *http.Client, u string) error {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	pin := "sha256:" + strings.Repeat("ab", 32)
	hc, err := controllerHTTP(config.Cmdline{ConfigURL: "https://192.0.2.1:80/", CA: pin})
	if err != nil {
		t.Fatal(err)
	}
	// Pinned: plain http is refused before anything is sent.
	if err := get(hc, "http://192.0.2.1/"); err == nil || !strings.Contains(err.Error(), "the URL must be https") {
		t.Errorf("pinned, plain http: %v", err)
	}
	hc, err = controllerHTTP(config.Cmdline{ConfigURL: "https://192.0.2.1:80/", CA: "sha256:abc"})
	if err == nil || !strings.Contains(err.Error(), "weft.ca: ") {
		t.Errorf("malformed weft.ca: %v", err)
	}
	if err := get(hc, "https://192.0.2.1:80/"); err == nil || !strings.Contains(err.Error(), "weft.ca: ") {
		t.Errorf("malformed weft.ca, a fetch: %v", err)
	}
	_, err = controllerHTTP(config.Cmdline{ConfigURL: "https://192.0.2.1:80/"})
	if fleetapi.SystemRoots() {
		if err != nil {
			t.Errorf("https without weft.ca=, with system roots: %v", err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "add weft.ca=sha256:") {
		t.Errorf("https without weft.ca= and no system roots: %v", err)
	}
	if _, err := controllerHTTP(config.Cmdline{ConfigURL: "http://10.0.2.2/"}); err != nil {
		t.Errorf("plain http, no pin (another config server): %v", err)
	}
}
