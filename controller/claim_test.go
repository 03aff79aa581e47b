package controller

import (
	"os/exec"

	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/testrig/testenv"

	"github.com/weftnet/weft/controller/fleetapi"
)

// TestClaim: the claim endpoint's answers, each with a reason, and the
// operator's re-arming. What the metadata service used to match a node by
// (MACs, else the address) is what the claim matches it by now.
func TestClaim(t *testing.T) {
	s, _ := fleetServer(t)
	h := s.Handler()
	for _, tc := range []struct {
		path, addr, macs, body string
		code                   int
		want                   string // the body, or with a trailing "…" its start
	}{
		{fleetapi.ClaimPath, "10.0.2.99", "02:00:00:00:00:09", "{}", 404,
			"weft controller: no node of the inventory <inv> has MAC 02:00:00:00:00:09 or address 10.0.2.99: add the node, with its MACs under macs\n"},
		{fleetapi.ClaimPath, "10.0.2.99", "52:54:00:00:00:01,52:54:00:00:00:03", "{}", 409, "weft controller: the request's MACs belong to nodes…"},
		{fleetapi.ClaimPath, "10.0.2.15", "bogus", "{}", 400, "weft controller: header X-Weft-MAC: \"bogus\" is not a MAC address (like 52:54:00:12:34:56)\n"},
		{fleetapi.ClaimPath, "10.0.2.15", "", `{"node":"node-b"}`, 400, "weft controller: claim: json: unknown field \"node\"\n"},
		// node-c has no inventory address: nothing armed it.
		{fleetapi.ClaimPath, "10.0.2.17", "52:54:00:00:00:03", "{}", 403, "weft controller: node node-c's claim is not armed…"},
		// Armed at the start for node-a's inventory address only.
		{fleetapi.ClaimPath, "10.0.2.16", "52:54:00:00:00:01", "", 403, "weft controller: node node-a's claim is armed for address 10.0.2.15 (start, …"},
		{fleetapi.ClaimPath, "10.0.2.15", "52:54:00:00:00:11", "", 200, `{…`},
		{fleetapi.ClaimPath, "10.0.2.15", "52:54:00:00:00:01", "{}", 403, "weft controller: node node-a's identity was claimed already…"},
		// By address, without MACs.
		{fleetapi.ClaimPath, "10.0.2.16", "", "{}", 200, `{…`},
		{"/weft/v1/nodes/node-x/arm", "127.0.0.1", "", "", 404, `weft controller: no node "node-x" in the inventory…`},
		{"/weft/v1/nodes/node-c/arm", "127.0.0.1", "", "", 409, "weft controller: node node-c has no address in the inventory…"},
		{"/weft/v1/nodes/node-c/arm", "127.0.0.1", "", `{"address":"10.0.2.17"}`, 200, `{…`},
		{fleetapi.ClaimPath, "10.0.2.17", "52:54:00:00:00:03", "{}", 200, `{…`},
		{"/weft/v1/nodes/node-a/arm", "127.0.0.1", "", "{}", 200, `{…`},
		{fleetapi.ClaimPath, "10.0.2.15", "52:54:00:00:00:01", "{}", 200, `{…`},
	} {
		r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
		r.RemoteAddr = net.JoinHostPort(tc.addr, "40000")
		r.Header.Set("Content-Type", "application/json")
		if strings.HasSuffix(tc.path, "/arm") {
			r.Header.Set("Authorization", "Bearer "+operatorToken(t, s))
		}
		if tc.macs != "" {
			r.Header.Set(fleetapi.MACHeader, tc.macs)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		want := strings.ReplaceAll(tc.want, "<inv>", s.Inventory().Path)
		got := w.Body.String()
		ok := got == want
		if prefix, cut := strings.CutSuffix(want, "…"); cut {
			ok = strings.HasPrefix(got, prefix)
		}
		if w.Code != tc.code || !ok {
			t.Errorf("POST %s from %s (%s) %s: %d %q, want %d %q", tc.path, tc.addr, tc.macs, tc.body, w.Code, got, tc.code, want)
		}
		if tc.path == fleetapi.ClaimPath && w.Header().Get(fleetapi.ControllerHeader) != "1" {
			t.Errorf("a claim's answer without %s", fleetapi.ControllerHeader)
		}
	}
	f := s.Fleet()
	if id := f.Nodes[0].Identity; id == nil || id.Refused == nil || !id.Refused.Twice || id.Refused.From.String() != "10.0.2.15" || id.Armed != nil {
		t.Errorf("node-a's identity: %+v", id)
	}
	if id := f.Nodes[2].Identity; id == nil || id.Claimed.IsZero() || id.ClaimedFrom.String() != "10.0.2.17" {
		t.Errorf("node-c's identity: %+v", id)
	}
}

// TestCtlFleetArm: `weft ctl fleet arm` re-arms a node's claim.
func TestCtlFleetArm(t *testing.T) {
	testenv.SkipIfShort(t)
	bin := weftBin(t)
	s, _ := fleetServer(t)
	ts := startAPI(t, s)
	out, err := exec.Command(bin, "ctl", "fleet", "arm", "node-c", "--address", "10.0.2.17", "--controller", ts.URL, "--state", s.opt.State).CombinedOutput()
	if err != nil || string(out) != "node node-c: its next identity claim from 10.0.2.17 is accepted (once)\n" {
		t.Errorf("arm: %v %s", err, out)
	}
	if a, ok := s.ids.Armed("node-c"); !ok || a.By != "operator" || a.Address.String() != "10.0.2.17" {
		t.Errorf("node-c: %+v %v", a, ok)
	}
	out, err = exec.Command(bin, "ctl", "fleet", "arm", "node-c", "--controller", ts.URL, "--state", s.opt.State).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "node node-c has no address in the inventory") {
		t.Errorf("arm without an address: %v %s", err, out)
	}
}
