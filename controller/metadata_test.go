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
	h := s.Handler()
	inv := s.Inventory()
	for _, n := range inv.Nodes {
		t.Run(n.Name, func(t *testing.T) {
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

func TestOpenStackPaths(t *testing.T) {
	s := testServer(t, "inventory/testdata/fleet.yaml")
	h := s.Handler()
	tests := []struct {
		method, path, addr, macs string
		code                     int
		body                     string // the whole body, or with a trailing "…" its start
	}{
		{"GET", "/openstack/", "192.0.2.1", "", 200, "latest"},
		{"HEAD", "/openstack/", "192.0.2.1", "", 200, "latest"}, // the server drops the body
		{"GET", "/openstack", "192.0.2.1", "", 200, "latest"},
		{"GET", "/openstack/latest", "10.0.2.16", "", 200, "meta_data.json\nuser_data"},
		{"GET", "/openstack/latest/", "10.0.2.16", "", 200, "meta_data.json\nuser_data"},
		{"GET", "/openstack/2018-08-27/meta_data.json", "10.0.2.16", "", 404, "weft controller: /openstack/2018-08-27/meta_data.json is not served: only openstack/latest/\n"},
		{"GET", "/openstack/latest/vendor_data.json", "10.0.2.16", "", 404, "weft controller: openstack/latest/vendor_data.json is not served: only meta_data.json, network_data.json and user_data\n"},
		{"POST", "/openstack/latest/meta_data.json", "10.0.2.16", "", 405, "weft controller: POST is not allowed here; the metadata is read with GET\n"},
		{"GET", "/openstack/latest/meta_data.json", "10.0.2.99", "02:00:00:00:00:09", 404,
			"weft controller: no node of the inventory <inv> has MAC 02:00:00:00:00:09 or address 10.0.2.99: add the node, with its MACs under macs\n"},
		{"GET", "/openstack/latest/user_data", "10.0.2.99", "52:54:00:00:00:01,52:54:00:00:00:03", 409, "weft controller: the request's MACs belong to nodes…"},
		{"GET", "/openstack/latest/user_data", "10.0.2.15", "bogus", 400, "weft controller: header X-Weft-MAC: \"bogus\" is not a MAC address (like 52:54:00:12:34:56)\n"},
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
		h.ServeHTTP(w, r)
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
