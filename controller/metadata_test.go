package controller

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/config"
)

func testServer(t testing.TB, inventory string) *Server {
	t.Helper()
	s, err := New(Options{State: t.TempDir(), Inventory: inventory, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get sends a request to h as if from addr, with the X-Weft-MAC header
// when macs is not empty.
func get(h http.Handler, path, addr, macs string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = net.JoinHostPort(addr, "40000")
	if macs != "" {
		r.Header.Set(fleetapi.MACHeader, macs)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestMetadataRoundTrip: what the controller serves is, byte for byte,
// what config's parsers read back, and they read the inventory's values.
func TestMetadataRoundTrip(t *testing.T) {
	s := testServer(t, "inventory/testdata/fleet.yaml")
	inv := s.Inventory()
	for _, n := range inv.Nodes {
		t.Run(n.Name, func(t *testing.T) {
			h := asNode(t, s, n.Name)
			macs := fleetapi.FormatMACHeader(n.MACs)
			md := get(h, "/openstack/latest/meta_data.json", "192.0.2.200", macs)
			if md.Code != 200 || md.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("meta_data.json: %d %s: %s", md.Code, md.Header().Get("Content-Type"), md.Body)
			}
			m, err := config.ParseMetaData(md.Body.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Raw(), md.Body.Bytes()) || m.UUID != n.UUID || m.Name != n.Name || m.Hostname != n.Name {
				t.Errorf("meta_data.json read back as %+v (raw %s), want uuid %s name %s", m, m.Raw(), n.UUID, n.Name)
			}

			nd := get(h, "/openstack/latest/network_data.json", "192.0.2.200", macs)
			if n.NetworkData == nil {
				if nd.Code != 404 || !strings.Contains(nd.Body.String(), "node "+n.Name+" has no networkData in the inventory") {
					t.Errorf("network_data.json of a node without: %d %s", nd.Code, nd.Body)
				}
			} else {
				if nd.Code != 200 {
					t.Fatalf("network_data.json: %d %s", nd.Code, nd.Body)
				}
				d, err := config.ParseNetworkData(nd.Body.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(d.Raw(), nd.Body.Bytes()) || !bytes.Equal(nd.Body.Bytes(), n.NetworkData) {
					t.Errorf("network_data.json raw %s, served %s", d.Raw(), nd.Body)
				}
				u, probs := d.Underlay()
				if len(probs) > 0 {
					t.Errorf("problems: %v", probs)
				}
				if len(u.Links) != 1 || u.Links[0].Match.MAC.String() != "52:54:00:00:00:01" || u.Links[0].MTU != 9000 ||
					len(u.Links[0].Addresses) != 1 || u.Links[0].Addresses[0].String() != "10.0.2.15/24" ||
					len(u.DNS) != 1 || u.DNS[0].String() != "10.0.2.3" {
					t.Errorf("underlay %+v", u)
				}
			}

			ud := get(h, "/openstack/latest/user_data", "192.0.2.200", macs)
			if ud.Code != 200 || !bytes.Equal(ud.Body.Bytes(), inv.UserData) {
				t.Fatalf("user_data: %d %q", ud.Code, ud.Body)
			}
			b := &config.Bundle{Source: "test", MetaData: m, UserData: ud.Body.Bytes()}
			c, err := b.Config()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.Raw(), inv.UserData) || c.BGP.Controllers[0].Password != "s3cret" || len(c.LocalEndpoints(m.Hostname)) != map[string]int{"node-a": 1}[n.Name] {
				t.Errorf("user_data read back: raw %q, %+v", c.Raw(), c.BGP)
			}

			list := get(h, "/openstack/latest/", "192.0.2.200", macs)
			want := "meta_data.json\nuser_data"
			if n.NetworkData != nil {
				want += "\nnetwork_data.json"
			}
			if list.Code != 200 || list.Body.String() != want {
				t.Errorf("listing %d %q, want %q", list.Code, list.Body, want)
			}
		})
	}
}

// TestOpenStackPaths: the version list is public; a node's documents are
// served for its credential only, whatever MACs or address the request
// shows (what the claim matches, TestClaim, no longer selects here).
func TestOpenStackPaths(t *testing.T) {
	s := testServer(t, "inventory/testdata/fleet.yaml")
	tests := []struct {
		cred, method, path, addr, macs string // cred: whose credential, "" none, "bogus" a made-up one
		code                           int
		body                           string // the whole body, or with a trailing "…" its start
	}{
		{"", "GET", "/openstack/", "192.0.2.1", "", 200, "latest"},
		{"", "HEAD", "/openstack/", "192.0.2.1", "", 200, "latest"}, // the server drops the body
		{"", "GET", "/openstack", "192.0.2.1", "", 200, "latest"},
		{"node-b", "GET", "/openstack/latest", "10.0.2.16", "", 200, "meta_data.json\nuser_data"},
		{"node-b", "GET", "/openstack/latest/", "10.0.2.16", "", 200, "meta_data.json\nuser_data"},
		{"node-b", "GET", "/openstack/2018-08-27/meta_data.json", "10.0.2.16", "", 404, "weft controller: /openstack/2018-08-27/meta_data.json is not served: only openstack/latest/\n"},
		{"node-b", "GET", "/openstack/latest/vendor_data.json", "10.0.2.16", "", 404, "weft controller: openstack/latest/vendor_data.json is not served: only meta_data.json, network_data.json and user_data\n"},
		{"node-b", "POST", "/openstack/latest/meta_data.json", "10.0.2.16", "", 405, "weft controller: POST is not allowed here; the metadata is read with GET\n"},
		// The header and the address select nothing: node-b's credential
		// gets node-b's documents, with node-a's MACs and address.
		{"node-b", "GET", "/openstack/latest/meta_data.json", "10.0.2.15", "52:54:00:00:00:01", 200, `{"uuid"…`},
		{"", "GET", "/openstack/latest/meta_data.json", "10.0.2.16", "52:54:00:00:00:02", 401,
			"weft controller: no node credential (Authorization: Bearer): a node claims one first (POST /weft/v1/nodes/claim)\n"},
		{"", "GET", "/openstack/latest/user_data", "10.0.2.16", "", 401, "weft controller: no node credential…"},
		{"bogus", "GET", "/openstack/latest/user_data", "10.0.2.16", "52:54:00:00:00:02", 401,
			"weft controller: the node credential is not (or no longer) valid: claim again (POST /weft/v1/nodes/claim)\n"},
		{"", "GET", "/openstack/latest/", "10.0.2.16", "", 401, "weft controller: no node credential…"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.method == http.MethodPost {
			r.Header.Set("Content-Type", "application/json") // past the CSRF check, to the handler's 405
		}
		r.RemoteAddr = net.JoinHostPort(tt.addr, "40000")
		if tt.macs != "" {
			r.Header.Set(fleetapi.MACHeader, tt.macs)
		}
		w := httptest.NewRecorder()
		switch tt.cred {
		case "":
			s.Handler().ServeHTTP(w, r)
		case "bogus":
			fleetapi.SetAuth(r.Header, "0123456789abcdef.c2VjcmV0")
			s.Handler().ServeHTTP(w, r)
		default:
			asNode(t, s, tt.cred).ServeHTTP(w, r)
		}
		if tt.path == "/openstack/latest/meta_data.json" && w.Code == 200 && !strings.Contains(w.Body.String(), `"name":"node-b"`) {
			t.Errorf("%s with node-b's credential: %s", tt.path, w.Body)
		}
		body := strings.ReplaceAll(tt.body, "<inv>", s.Inventory().Path)
		got := w.Body.String()
		ok := got == body
		if prefix, cut := strings.CutSuffix(body, "…"); cut {
			ok = strings.HasPrefix(got, prefix)
		}
		if w.Code != tt.code || !ok {
			t.Errorf("%s %s from %s (%s): %d %q, want %d %q", tt.method, tt.path, tt.addr, tt.macs, w.Code, got, tt.code, body)
		}
	}
}
