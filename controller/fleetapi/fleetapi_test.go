package fleetapi

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeReport(t *testing.T) {
	good := `{"intervalSeconds": 10, "time": "2026-01-02T15:04:05Z", "version": "v1.2.3",
	  "addresses": ["10.0.2.15", "fd00::15"],
	  "steps": [{"name": "metadata", "verdict": "failed", "detail": "HTTP 404", "attrs": {"source": "url"}, "time": "2026-01-02T15:04:01.5Z"},
	            {"name": "network-data", "verdict": "failed", "detail": "b is a bond; no usable member", "causes": ["b is a bond", "no usable member"], "attrs": {"link": "b1"}, "time": "2026-01-02T15:04:01Z"}],
	  "agent": {"routerID": "10.0.2.15", "bgp": [{"peer": "10.0.2.2", "state": "established"}, {"peer": "10.0.2.3", "state": "active", "lastError": "hold timer expired"}],
	            "endpoints": [{"name": "web1", "network": "leonardo", "address": "10.0.10.5/24"}, {"name": "pod"}]},
	  "future": {"a field": "a newer node sends"}}`
	r, err := DecodeReport([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := &Report{
		IntervalSeconds: 10, Time: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), Version: "v1.2.3",
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.2.15"), netip.MustParseAddr("fd00::15")},
		Steps: []Step{{Name: "metadata", Verdict: VerdictFailed, Detail: "HTTP 404", Attrs: map[string]string{"source": "url"},
			Time: time.Date(2026, 1, 2, 15, 4, 1, 5e8, time.UTC)},
			{Name: "network-data", Verdict: VerdictFailed, Detail: "b is a bond; no usable member", Causes: []string{"b is a bond", "no usable member"},
				Attrs: map[string]string{"link": "b1"}, Time: time.Date(2026, 1, 2, 15, 4, 1, 0, time.UTC)}},
		Agent: &AgentStatus{
			RouterID: netip.MustParseAddr("10.0.2.15"),
			BGP: []BGPSession{{Peer: netip.MustParseAddr("10.0.2.2"), State: "established"},
				{Peer: netip.MustParseAddr("10.0.2.3"), State: "active", LastError: "hold timer expired"}},
			Endpoints: []Endpoint{{Name: "web1", Network: "leonardo", Address: netip.MustParsePrefix("10.0.10.5/24")}, {Name: "pod"}},
		},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", r, want)
	}
	// What a node marshals decodes to the same.
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if r2, err := DecodeReport(b); err != nil || !reflect.DeepEqual(r2, want) {
		t.Errorf("round trip of %s: %+v, %v", b, r2, err)
	}
	if r, err := DecodeReport([]byte(`{}`)); err != nil || r.Interval() != DefaultReportInterval {
		t.Errorf("empty report: %+v %v", r, err)
	}

	bad := []struct{ doc, err string }{
		{``, "report: want a JSON object"},
		{`[1]`, "report: want a JSON object"},
		{`{"steps": [}`, "report: not valid JSON"},
		{`{} {}`, "report: data after the JSON value"},
		{`{"intervalSeconds": "30"}`, "report: intervalSeconds: want a number, got JSON string"},
		{`{"intervalSeconds": 86400}`, "report: intervalSeconds: 86400 is out of range 0..3600"},
		{`{"time": "yesterday"}`, `report: time: "yesterday" is not an RFC 3339 time`},
		{`{"addresses": ["10.0.2.300"]}`, `report: addresses[0]: "10.0.2.300" is not an IP address`},
		{`{"steps": [null]}`, "report: steps[0]: want an object, got null"},
		{`{"steps": [{"verdict": "ok"}]}`, "report: steps[0].name: required"},
		{`{"steps": [{"name": "a", "verdict": "ok"}, {"name": "b"}]}`, "report: steps[1].verdict: required"},
		{`{"steps": [{"name": "a", "verdict": 1}]}`, "report: steps[0].verdict: want a string, got JSON number"},
		{`{"steps": [{"name": "a", "verdict": "ok", "attrs": {"x": 1}}]}`, "report: steps[0].attrs: want a string, got JSON number"},
		{`{"steps": [{"name": "a", "verdict": "ok", "causes": "x"}]}`, "report: steps[0].causes: want a list, got JSON string"},
		{`{"steps": [{"name": "a", "verdict": "ok", "time": "noon"}]}`, `report: steps[0].time: "noon" is not an RFC 3339 time`},
		{`{"agent": {"routerID": "fd00::1"}}`, `report: agent.routerID: "fd00::1" is not a router ID`},
		{`{"agent": {"bgp": [{"peer": "10.0.2.2", "state": "established"}, {"peer": "ten", "state": "idle"}]}}`, `report: agent.bgp[1].peer: "ten" is not an IP address`},
		{`{"agent": {"bgp": [{"peer": "10.0.2.2"}]}}`, "report: agent.bgp[0].state: required"},
		{`{"agent": {"endpoints": [{"name": "a", "address": "10.0.10.5"}]}}`, `report: agent.endpoints[0].address: "10.0.10.5" is not an address with a prefix length`},
		{`{"agent": {"endpoints": [{"address": "10.0.10.5/24"}]}}`, "report: agent.endpoints[0].name: required"},
		{`{"agent": {"bgp": {"peer": "10.0.2.2"}}}`, "report: agent.bgp: want a list, got JSON object"},
		{`{"steps": [` + strings.Repeat(`{"name":"a","verdict":"ok"},`, 4096) + `{"name":"a","verdict":"ok"}]}`, "report: steps: 4097 entries, more than the 4096 allowed"},
	}
	for _, tt := range bad {
		_, err := DecodeReport([]byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			doc := tt.doc
			if len(doc) > 80 {
				doc = doc[:80] + "…"
			}
			t.Errorf("%s: error %v, want %q", doc, err, tt.err)
		}
	}
}

func TestFleetTable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &Fleet{
		Time: now, Inventory: "/etc/weft/fleet.yaml", InventoryError: "fleet.yaml: nodes[2].macs[0] (line 9): \"x\" is not a MAC address",
		Reflector: &ReflectorInfo{Listen: "10.0.2.2:179"},
		Nodes: []NodeStatus{{
			Name: "node-a", Address: netip.MustParseAddr("10.0.2.15"), Phase: PhaseReady, Ready: true, LastSeen: now.Add(-4 * time.Second),
			LastStep:  &Step{Name: "ready", Verdict: VerdictOK},
			BGP:       &BGPSummary{Up: 2, Total: 2},
			Endpoints: []Endpoint{{Name: "web1"}, {Name: "web2"}},
			Reflector: &ReflectorSession{State: "established"},
		}, {
			Name: "node-b", Phase: PhaseStuck, LastSeen: now.Add(-70 * time.Second),
			LastStep:  &Step{Name: "config", Verdict: VerdictFailed},
			Problems:  []Step{{Name: "config", Verdict: VerdictFailed, Detail: "user_data: bgp.asn (line 3):\n  0 is out of range"}},
			Reflector: &ReflectorSession{State: "none"},
		}, {
			Name: "node-c", Phase: PhaseBooting, ConfigFetched: now.Add(-2 * time.Hour), Reflector: &ReflectorSession{State: "none"},
		}},
	}
	var b strings.Builder
	if err := f.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `inventory /etc/weft/fleet.yaml: its current content was refused; serving the last good one:
  fleet.yaml: nodes[2].macs[0] (line 9): "x" is not a MAC address

NODE    ADDRESS    PHASE    LAST STEP  VERDICT  READY  BGP UP  ENDPOINTS  LAST SEEN                 REFLECTOR
node-a  10.0.2.15  ready    ready      ok       yes    2/2     2          4s ago                    established
node-b  -          stuck    config     failed   no     -       0          1m10s ago                 none
node-c  -          booting  -          -        no     -       0          fetched config 2h00m ago  none

not ready:
  node-b: step config failed: user_data: bgp.asn (line 3): 0 is out of range
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		-time.Second: "just now", 0: "0s ago", 59 * time.Second: "59s ago", 61 * time.Second: "1m01s ago",
		3*time.Hour + 5*time.Minute: "3h05m ago", 72 * time.Hour: "3d ago",
	} {
		if got := Ago(now.Add(-d), now); got != want {
			t.Errorf("Ago(%v) = %q, want %q", d, got, want)
		}
	}
	if Ago(time.Time{}, now) != "never" {
		t.Error("zero time")
	}
}

func TestParseMACHeader(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  string
	}{
		{in: "", want: ""},
		{in: "52:54:00:00:00:01", want: "52:54:00:00:00:01"},
		{in: " 52:54:00:00:00:01 ,52:54:00:00:00:02,, ", want: "52:54:00:00:00:01,52:54:00:00:00:02"},
		{in: "52:54:00:00:00:01,52:54:00:00:00:01", want: "52:54:00:00:00:01"},
		{in: "5254.0000.0001", want: "52:54:00:00:00:01"},
		{in: "52:54:00:00:00:01,nope", err: `header X-Weft-MAC: "nope" is not a MAC address`},
		{in: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", err: "is not a MAC address"},
		{in: strings.Repeat("52:54:00:00:00:01,", 0) + manyMACs(65), err: "more than 64 MACs"},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.in != "" {
			h.Set(MACHeader, tt.in)
		}
		macs, err := ParseMACHeader(h)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case FormatMACHeader(macs) != tt.want:
			t.Errorf("%q: %q, want %q", tt.in, FormatMACHeader(macs), tt.want)
		}
	}
}

func TestDecodeProbeRequest(t *testing.T) {
	r, err := DecodeProbeRequest([]byte(`{"node":"node-1","endpoint":"red-1","to":"10.1.0.12","kind":"icmp","count":3,"timeoutMillis":2000}`))
	if want := (ProbeRequest{Node: "node-1", Endpoint: "red-1", To: netip.MustParseAddr("10.1.0.12"), Kind: ProbeICMP, Count: 3, TimeoutMillis: 2000}); err != nil || r != want {
		t.Errorf("%+v %v", r, err)
	}
	r, err = DecodeProbeRequest([]byte(`{"node":"node-1","endpoint":"db/pg-0","to":"::ffff:10.1.0.12","kind":"tcp","port":5432}`))
	if want := (ProbeRequest{Node: "node-1", Endpoint: "db/pg-0", To: netip.MustParseAddr("10.1.0.12"), Kind: ProbeTCP, Port: 5432, Count: 1, TimeoutMillis: 2000}); err != nil || r != want {
		t.Errorf("%+v %v", r, err)
	}
	const ok = `"node":"n","endpoint":"e","to":"10.1.0.12"`
	for _, tc := range []struct{ doc, err string }{
		{``, "probe: want a JSON object"},
		{`{"node": "n"} {}`, "probe: data after the JSON value"},
		{`{` + ok + `,"kind":"icmp","timeout":5}`, `probe: unknown field "timeout" (known: node, endpoint, to, kind, port, count, timeoutMillis)`},
		{`{"endpoint":"e","to":"10.1.0.12","kind":"icmp"}`, "probe: node: required"},
		{`{"node":"a b","endpoint":"e","to":"10.1.0.12","kind":"icmp"}`, `probe: node: "a b" is not a valid hostname`},
		{`{"node":"n","to":"10.1.0.12","kind":"icmp"}`, "probe: endpoint: required"},
		{`{"node":"n","endpoint":"a\tb","to":"10.1.0.12","kind":"icmp"}`, "probe: endpoint: \"a\\tb\": no white space or control characters"},
		{`{"node":"n","endpoint":"e","kind":"icmp"}`, "probe: to: required"},
		{`{"node":"n","endpoint":"e","to":"10.1.0.300","kind":"icmp"}`, `probe: to: "10.1.0.300" is not an IP address`},
		{`{"node":"n","endpoint":"e","to":"fe80::1%eth0","kind":"icmp"}`, `probe: to: "fe80::1%eth0" is not an IP address`},
		{`{"node":"n","endpoint":"e","to":"224.0.0.1","kind":"icmp"}`, "probe: to: 224.0.0.1 is not a unicast address"},
		{`{` + ok + `}`, "probe: kind: required (icmp or tcp)"},
		{`{` + ok + `,"kind":"udp"}`, `probe: kind: "udp": want icmp or tcp`},
		{`{` + ok + `,"kind":"icmp","port":22}`, "probe: port: only for kind tcp"},
		{`{` + ok + `,"kind":"tcp"}`, "probe: port: required for kind tcp"},
		{`{` + ok + `,"kind":"tcp","port":70000}`, "probe: port: 70000 is out of range 1..65535"},
		{`{` + ok + `,"kind":"tcp","port":"22"}`, "probe: port: want a number, got JSON string"},
		{`{` + ok + `,"kind":"icmp","count":1000}`, "probe: count: 1000 is out of range 1..100"},
		{`{` + ok + `,"kind":"icmp","timeoutMillis":-1}`, "probe: timeoutMillis: -1 is out of range 1..10000"},
		{`{` + ok + `,"kind":"icmp","timeoutMillis":60000}`, "probe: timeoutMillis: 60000 is out of range 1..10000"},
		{`{` + ok + `,"kind":"icmp","count":100,"timeoutMillis":2000}`, "probe: count × timeoutMillis: 100 × 2000 ms = 3m20s, more than the 10s a node runs a probe for"},
		{`{` + ok + `,"kind":"icmp","count":6}`, "probe: count × timeoutMillis: 6 × 2000 ms = 12s, more than the 10s"},
	} {
		if _, err := DecodeProbeRequest([]byte(tc.doc)); err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.err)
		}
	}
	for _, tc := range []struct{ doc, err string }{
		{`{"detail":"x"}`, "probe result: ok: required"},
		{`{"ok":"yes"}`, "probe result: ok: want true or false, got JSON string"},
		{`{"ok":true,"rttMicros":-5}`, "probe result: rttMicros: -5 is out of range"},
		{`{"ok":true,"detail":"` + strings.Repeat("x", 5000) + `"}`, "probe result: detail: 5000 bytes, more than the 4096 allowed"},
		{`[]`, "probe result: want a JSON object"},
	} {
		if _, err := DecodeProbeResult([]byte(tc.doc)); err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.err)
		}
	}
	if r, err := DecodeProbeResult([]byte(`{"ok":true,"detail":"1/1","rttMicros":5,"newer":"field"}`)); err != nil || r != (ProbeResult{OK: true, Detail: "1/1", RTTMicros: 5}) {
		t.Errorf("a newer agent's result: %+v %v", r, err)
	}
}

func manyMACs(n int) string {
	var s []string
	for i := range n {
		s = append(s, net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}.String())
	}
	return strings.Join(s, ",")
}
