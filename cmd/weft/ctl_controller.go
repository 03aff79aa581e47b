package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/controller"
	"github.com/weftnet/weft/controller/access"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/pki"
)

// controllerFlags say how `weft ctl` reaches the controller: its https
// URL with its CA pinned and the operator token, or, without a URL, the
// controller's unix socket on this host (its uid or root, no token).
type controllerFlags struct {
	url, state, ca, tokenFile *string
}

func addControllerFlags(fs *flag.FlagSet) *controllerFlags {
	return &controllerFlags{
		url:       fs.String("controller", os.Getenv("WEFT_CONTROLLER"), "the controller's URL, https://HOST:PORT/ (taken from $WEFT_CONTROLLER when set); none = its unix socket in --state"),
		state:     fs.String("state", defaultState, "the controller's state `DIR` on this host: the socket, and the defaults of --ca and --token-file"),
		ca:        fs.String("ca", os.Getenv("WEFT_CA"), "the controller's CA: its pin sha256:… (weft controller ca-hash) or its ca.crt (taken from $WEFT_CA when set; default DIR/ca.crt)"),
		tokenFile: fs.String("token-file", "", "the operator token's `FILE` (default DIR/operator.token; $WEFT_TOKEN, when set, is the token itself)"),
	}
}

// client is the fleet API client the flags describe.
func (f *controllerFlags) client() (*fleetapi.Client, error) {
	if *f.url == "" {
		sock := filepath.Join(*f.state, controller.SocketFile)
		if _, err := os.Stat(sock); err != nil {
			return nil, fmt.Errorf("--controller is required (or set WEFT_CONTROLLER) unless the controller runs here: %w", err)
		}
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		return &fleetapi.Client{URL: "http://localhost/", HTTP: fleetapi.HTTPClient(fleetapi.Pin{}, dial)}, nil
	}
	c := &fleetapi.Client{URL: *f.url}
	if strings.HasPrefix(*f.url, "https://") {
		pin, err := f.pin()
		if err != nil {
			return nil, err
		}
		c.HTTP = fleetapi.HTTPClient(pin, nil)
	}
	tok, err := f.token()
	if err != nil {
		return nil, err
	}
	c.Token = tok
	return c, nil
}

func (f *controllerFlags) pin() (fleetapi.Pin, error) {
	if strings.HasPrefix(*f.ca, "sha256:") {
		p, err := fleetapi.ParsePin(*f.ca)
		if err != nil {
			return p, fmt.Errorf("--ca: %w", err)
		}
		return p, nil
	}
	file := *f.ca
	if file == "" {
		file = filepath.Join(*f.state, pki.CertFile)
	}
	p, err := fleetapi.ReadPinFile(file)
	if errors.Is(err, fs.ErrNotExist) && *f.ca == "" {
		return p, fmt.Errorf("--ca: give the controller's CA pin (weft controller ca-hash on its host) or its ca.crt: %w", err)
	}
	if err != nil {
		return p, fmt.Errorf("--ca: %w", err)
	}
	return p, nil
}

func (f *controllerFlags) token() (string, error) {
	if t := strings.TrimSpace(os.Getenv("WEFT_TOKEN")); t != "" && *f.tokenFile == "" {
		return t, nil
	}
	file := *f.tokenFile
	if file == "" {
		file = filepath.Join(*f.state, access.TokenFile)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--token-file: the operator token (or set WEFT_TOKEN): %w", err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("--token-file %s: empty", file)
	}
	return t, nil
}
