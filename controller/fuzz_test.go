package controller

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/config"
)

// FuzzParseInventory: no input panics or hangs the decoder, and what it
// accepts serves documents the node's parsers accept.
func FuzzParseInventory(f *testing.F) {
	for _, name := range []string{"testdata/fleet.yaml", "testdata/fleet-file.yaml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(baseConfig + "nodes:\n  - {name: a, macs: [\"52:54:00:00:00:01\"], networkData: {links: [{id: x, type: phy, ethernet_mac_address: \"52:54:00:00:00:01\"}]}}\n"))
	f.Add([]byte("configFile: weft.yaml\nnodes:\n  - {name: a, address: 10.0.2.15}\n"))
	f.Add([]byte("{config: {bgp: {asn: 1, controllers: [{address: 10.0.0.1}]}}, nodes: [{name: a, address: 10.0.0.2}]}"))
	f.Add([]byte("nodes: &n [{name: a, address: 10.0.0.2}]\nconfig:\n  bgp: {asn: 1, controllers: [{address: 10.0.0.1}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// No file is read: a configFile names testdata/weft.yaml or nothing.
		inv, err := parseInventory(data, "fuzz/inventory.yaml", fuzzFiles)
		if err != nil {
			if len(FieldErrors(err)) == 0 {
				t.Fatalf("an error that is no FieldError: %v", err)
			}
			return
		}
		if _, err := config.Parse(inv.UserData); err != nil && inv.ConfigPath == "" {
			t.Fatalf("accepted inline config reads back with errors: %v\n%q", err, inv.UserData)
		}
		for i := range inv.Nodes {
			n := &inv.Nodes[i]
			if _, err := config.ParseMetaData(n.MetaData); err != nil {
				t.Fatalf("meta_data.json of %s: %v", n.Name, err)
			}
			if n.NetworkData != nil {
				nd, err := config.ParseNetworkData(n.NetworkData)
				if err != nil {
					t.Fatalf("network_data.json of %s: %v", n.Name, err)
				}
				if _, probs := nd.Underlay(); len(probs) > 0 {
					t.Fatalf("network_data.json of %s has problems: %v", n.Name, probs)
				}
			}
			for _, m := range n.MACs {
				if got, err := inv.Match([]net.HardwareAddr{m}, netip.Addr{}); err != nil || got != n {
					t.Fatalf("MAC %s of %s matches %v, %v", m, n.Name, got, err)
				}
			}
			if n.Address.IsValid() {
				if got, err := inv.Match(nil, n.Address); err != nil || got != n {
					t.Fatalf("address %s of %s matches %v, %v", n.Address, n.Name, got, err)
				}
			}
		}
	})
}

// fuzzFiles stands in for the file system in FuzzParseInventory.
func fuzzFiles(path string, limit int64) ([]byte, error) {
	if path == "fuzz/weft.yaml" {
		return []byte("bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2}]\n"), nil
	}
	return nil, os.ErrNotExist
}

// FuzzDecodeReport: no input panics the decoder, and what it accepts
// survives a round trip through the JSON a node sends.
func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"intervalSeconds": 10, "time": "2026-01-02T15:04:05+02:00", "addresses": ["10.0.2.15", "fd00::1"],
		"steps": [{"name": "ready", "verdict": "ok", "attrs": {"k": "v"}, "time": "2026-01-02T15:04:05.123Z"}],
		"agent": {"routerID": "10.0.2.15", "bgp": [{"peer": "10.0.2.2", "state": "established"}], "endpoints": [{"name": "a", "network": "n", "address": "10.0.10.5/24"}]}}`))
	f.Add([]byte(`{"steps": [null, 1, "x"], "agent": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := fleetapi.DecodeReport(data)
		if err != nil {
			return
		}
		b1, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshalling an accepted report: %v", err)
		}
		r2, err := fleetapi.DecodeReport(b1)
		if err != nil {
			t.Fatalf("an accepted report does not decode again: %v\n%s", err, b1)
		}
		b2, _ := json.Marshal(r2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip changed the report:\n%s\n%s", b1, b2)
		}
	})
}

// FuzzDecodeProbeRequest: no document panics the decoder, and what it
// accepts reads back the same from its JSON, as fleetapi.Client.Probe sends it.
func FuzzDecodeProbeRequest(f *testing.F) {
	f.Add([]byte(`{"node":"node-1","endpoint":"red-1","to":"10.1.0.12","kind":"icmp","count":3,"timeoutMillis":2000}`))
	f.Add([]byte(`{"node":"node-1","endpoint":"db/pg-0","to":"fd00::12","kind":"tcp","port":5432}`))
	f.Add([]byte(`{"node":"n","endpoint":"e","to":"10.1.0.12","kind":"tcp","port":"22","x":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := fleetapi.DecodeProbeRequest(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "probe: ") {
				t.Fatalf("an error that does not say where: %v", err)
			}
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := fleetapi.DecodeProbeRequest(b); err != nil || r2 != r {
			t.Fatalf("%s reads back as %+v, %v; want %+v", b, r2, err, r)
		}
		if _, err := fleetapi.DecodeProbeResult(data); err != nil && !strings.HasPrefix(err.Error(), "probe result: ") {
			t.Fatalf("a result error that does not say where: %v", err)
		}
	})
}
