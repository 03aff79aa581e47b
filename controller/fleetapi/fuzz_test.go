package fleetapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeReport: no input panics the decoder, and what it accepts
// survives a round trip through the JSON a node sends.
func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"intervalSeconds": 10, "time": "2026-01-02T15:04:05+02:00", "addresses": ["10.0.2.15", "fd00::1"],
		"steps": [{"name": "ready", "verdict": "ok", "attrs": {"k": "v"}, "time": "2026-01-02T15:04:05.123Z"}],
		"agent": {"routerID": "10.0.2.15", "bgp": [{"peer": "10.0.2.2", "state": "established"}], "endpoints": [{"name": "a", "network": "n", "address": "10.0.10.5/24"}]}}`))
	f.Add([]byte(`{"steps": [null, 1, "x"], "agent": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeReport(data)
		if err != nil {
			return
		}
		b1, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshalling an accepted report: %v", err)
		}
		r2, err := DecodeReport(b1)
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
// accepts reads back the same from its JSON, as Client.Probe sends it.
func FuzzDecodeProbeRequest(f *testing.F) {
	f.Add([]byte(`{"node":"node-1","endpoint":"red-1","to":"10.1.0.12","kind":"icmp","count":3,"timeoutMillis":2000}`))
	f.Add([]byte(`{"node":"node-1","endpoint":"db/pg-0","to":"fd00::12","kind":"tcp","port":5432}`))
	f.Add([]byte(`{"node":"n","endpoint":"e","to":"10.1.0.12","kind":"tcp","port":"22","x":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeProbeRequest(data)
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
		if r2, err := DecodeProbeRequest(b); err != nil || r2 != r {
			t.Fatalf("%s reads back as %+v, %v; want %+v", b, r2, err, r)
		}
		if _, err := DecodeProbeResult(data); err != nil && !strings.HasPrefix(err.Error(), "probe result: ") {
			t.Fatalf("a result error that does not say where: %v", err)
		}
	})
}
