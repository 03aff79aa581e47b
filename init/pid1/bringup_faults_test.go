package pid1

// Issue 10: a node reports ready only with an underlay address the vRouter
// can bind, a config drive's files stand or fall alone, and a link keeps
// every cause of its failure. The documents go through the functions PID 1
// uses: the file-tree reader of the config drive, the network_data.json
// parser and the step recorder.

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/init/steps"
)

// A usable link without an address is not ready: the vRouter could not
// bind. Once a lease brings one, the config is applied again (the services
// start) and the node is ready.
func TestBringupReadyNeedsUnderlayAddress(t *testing.T) {
	h := newHarness(t)
	h.drive.results = []fetchResult{{bundle: bundle("config-drive /dev/vda", goodYAML)}}
	calls := 0
	h.b.UnderlayAddr = func(cfg *config.Config) (netip.Addr, error) {
		calls++
		if calls <= 3 {
			return netip.Addr{}, errors.New("no underlay address: no route to a controller and no IPv4 address on any interface")
		}
		return netip.MustParseAddr("10.0.2.15"), nil
	}
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var waiting *steps.Step
	for _, s := range h.rec.all() {
		if s.Name == StepReady && s.Verdict == steps.Waiting {
			waiting = &s
		}
	}
	if waiting == nil || !strings.Contains(waiting.Detail, "no underlay address the vRouter can bind") || !strings.Contains(waiting.Detail, "step=dhcp") {
		t.Fatalf("ready before the address: %+v", waiting)
	}
	if strings.Contains(waiting.Detail, "step=config") {
		t.Errorf("the config was there; the hint must name only what is missing: %s", waiting.Detail)
	}
	s, _ := h.rec.last(StepReady)
	if s.Verdict != steps.OK || s.Attrs["underlay"] != "10.0.2.15" {
		t.Errorf("ready: %s", s.Line())
	}
	if len(h.applied) != 2 {
		t.Errorf("config applied %d times, want twice (again once the address is there, to start the vRouter)", len(h.applied))
	}
	// Waiting only for the address, the bring-up looks again soon.
	for _, d := range h.clock.slept() {
		if d > h.b.RetryMin {
			t.Errorf("slept %v while only the address was missing", d)
		}
	}
}

// Without an address ever, the node never says ready and keeps looking.
func TestBringupNoAddressNeverReady(t *testing.T) {
	h := newHarness(t)
	h.drive.results = []fetchResult{{bundle: bundle("config-drive /dev/vda", goodYAML)}}
	h.b.UnderlayAddr = func(*config.Config) (netip.Addr, error) {
		return netip.Addr{}, errors.New("no underlay address")
	}
	h.clock.cancelAfter = 20
	if err := h.run(t); err == nil {
		t.Fatal("Run returned nil: it gave up or called the node ready without an address")
	}
	for _, s := range h.rec.all() {
		if s.Name == StepReady && s.Verdict == steps.OK {
			t.Fatalf("ready without an underlay address: %s", s.Line())
		}
	}
	if n := len(h.applied); n != 1 {
		t.Errorf("config applied %d times, want once", n)
	}
}

// writeDrive writes an OpenStack tree and returns the source PID 1 would
// read it with (the config drive and a file URL share the reader).
func writeDrive(t *testing.T, files map[string]string) source.Source {
	t.Helper()
	dir := t.TempDir()
	latest := filepath.Join(dir, "openstack", "latest")
	if err := os.MkdirAll(latest, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(latest, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return source.NewURL("file://"+dir+"/", nil, nil)
}

// A truncated network_data.json is reported as what it is; the drive's
// meta_data.json and weft.yaml still make the node ready, on DHCP.
func TestBringupTruncatedNetworkDataKeepsTheDrive(t *testing.T) {
	h := newHarness(t)
	nd := `{"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:01"}], "networks": [{"id": "n0", "type": "ipv4", "li`
	h.b.Drive = writeDrive(t, map[string]string{
		"meta_data.json":    `{"uuid": "u-1", "name": "node-a"}`,
		"network_data.json": nd,
		"user_data":         goodYAML,
	})
	var seen *config.Bundle
	h.b.Fetched = func(b *config.Bundle) { seen = b }
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var ok, bad *steps.Step
	for _, s := range h.rec.all() {
		switch {
		case s.Name == StepConfigDrive && s.Verdict == steps.OK && ok == nil:
			ok = &s
		case s.Name == StepConfigDrive && s.Verdict == steps.Failed:
			bad = &s
		}
	}
	if ok == nil || ok.Attrs["broken"] != "network_data.json" || ok.Attrs["meta_data"] != "true" {
		t.Fatalf("config-drive: %+v", ok)
	}
	if bad == nil || bad.Attrs["file"] != "network_data.json" {
		t.Fatalf("no verdict of its own for the broken file: %+v", bad)
	}
	for _, w := range []string{"network_data.json: truncated", fmt.Sprintf("byte %d", len(nd)), "DHCP on every NIC"} {
		if !strings.Contains(bad.Detail, w) {
			t.Errorf("%q does not say %q", bad.Detail, w)
		}
	}
	if strings.Contains(h.rec.lines(), "filesystem") {
		t.Error("a hint blames the drive's filesystem")
	}
	if len(h.net.applied) != 1 || h.net.applied[0].Source != "default (DHCP)" {
		t.Errorf("underlay applied: %+v", h.net.applied)
	}
	if len(h.applied) != 1 || h.applied[0].Config.Node.Hostname != "n1" || seen == nil || seen.MetaData == nil || seen.MetaData.Name != "node-a" {
		t.Errorf("the drive's weft.yaml or meta_data.json was lost: applied %+v", h.applied)
	}
	if s, _ := h.rec.last(StepReady); s.Verdict != steps.OK {
		t.Errorf("ready: %s", s.Line())
	}
}

// Through the bring-up and the real recorder, a link keeps its root cause
// after its consequences (issue 10, item 5).
func TestBringupLinkKeepsEveryCause(t *testing.T) {
	h := newHarness(t)
	rec := steps.New(nil, "", nil)
	h.b.Rec = rec
	h.b.Drive = writeDrive(t, map[string]string{
		"network_data.json": `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},
			{"id":"b0","type":"bond","bond_links":["e0"],"bond_mode":"active-backup"},{"id":"b1","type":"bond","bond_links":["b0"]}],
			"networks":[{"id":"n","type":"ipv4_dhcp","link":"b0"}]}`,
		"user_data": goodYAML,
	})
	if err := h.b.Run(h.ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var b1 *steps.Step
	for _, s := range rec.Steps() {
		t.Log(s.Line())
		if s.Name == StepNetworkData && s.Attrs["link"] == "b1" {
			b1 = &s
		}
	}
	if b1 == nil || len(b1.Causes) < 2 || !strings.Contains(b1.Causes[0], `"b0" is a bond`) {
		t.Fatalf("b1 lost its root cause: %+v", b1)
	}
	if !slices.ContainsFunc(b1.Causes[1:], func(c string) bool { return strings.Contains(c, "no usable member") }) {
		t.Errorf("b1's consequence is missing: %q", b1.Causes)
	}
}
