package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/controller/fleetapi"
)

// startController starts `weft controller` in the demo's namespace and
// waits until its API answers the demo's pinned client.
func (r *run) startController(ctx context.Context) error {
	inv := filepath.Join(r.dir, "inventory.yaml")
	if err := os.WriteFile(inv, []byte(r.inventory()), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.dir, "controller.log"))
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", r.opt.Netns, r.opt.Binary, "controller", "--inventory", inv, "--state", r.state(),
		"--listen", controllerIP + ":80", "--bgp-listen", controllerIP + ":179", "--dhcp", bridge, "--image", r.opt.Image}
	r.ctrl = exec.Command("ip", args...)
	r.ctrl.Stdout, r.ctrl.Stderr = logf, logf
	r.ctrl.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGTERM}
	if err := r.ctrl.Start(); err != nil {
		return fmt.Errorf("demo: starting the controller: %w", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := r.connect()
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = r.cc.Fleet(cctx)
			cancel()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("demo: the controller did not come up: %v\n%s", err, tail(string(log), 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.step("controller up: DHCP on %s, boot files on http://%s/, metadata and fleet view on %s (CA %s), route reflector on %s:179", bridge, controllerIP, controllerURL, r.pin, controllerIP)
	return nil
}

// controllerURL is the controller's API: https on the port that serves
// the boot files over plain http.
const controllerURL = "https://" + controllerIP + ":80/"

// state is the controller's state directory: its CA and operator token.
func (r *run) state() string { return filepath.Join(r.dir, "controller-state") }

// connect makes the demo's client of the controller once the controller
// has written its CA and token: pinned to the CA, with the operator
// token, dialling inside the namespace.
func (r *run) connect() error {
	pin, err := fleetapi.ReadPinFile(filepath.Join(r.state(), "ca.crt"))
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(r.state(), "operator.token"))
	if err != nil {
		return err
	}
	r.pin = pin
	r.cc = &fleetapi.Client{URL: controllerURL, Token: strings.TrimSpace(string(tok)), HTTP: fleetapi.HTTPClient(pin, r.nsDial)}
	return nil
}
