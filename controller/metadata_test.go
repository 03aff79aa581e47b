package controller

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/config"
)

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMatch(t *testing.T) {
	inv, err := LoadInventory("testdata/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header []string // X-Weft-MAC values
		addr   string
		want   string // node name, or "" for an error
		err    error
		msg    string // in the error
	}{
		{name: "by MAC", header: []string{"52:54:00:00:00:02"}, addr: "192.0.2.99", want: "node-b"},
		{name: "by second MAC, any case and notation", header: []string{"52-54-00-00-00-11"}, want: "node-a"},
		{name: "unknown MACs with a known one", header: []string{"02:00:00:00:00:09, 52:54:00:00:00:03"}, want: "node-c"},
		{name: "repeated header", header: []string{"02:00:00:00:00:09", "52:54:00:00:00:03"}, want: "node-c"},
		{name: "MAC wins over address", header: []string{"52:54:00:00:00:02"}, addr: "10.0.2.15", want: "node-b"},
		{name: "by address", addr: "10.0.2.16", want: "node-b"},
		{name: "by IPv4-mapped address", addr: "::ffff:10.0.2.16", want: "node-b"},
		{name: "unknown MACs, known address", header: []string{"02:00:00:00:00:09"}, addr: "10.0.2.15", want: "node-a"},
		{name: "MACs of two nodes", header: []string{"52:54:00:00:00:01,52:54:00:00:00:02"}, err: ErrAmbiguousNode,
			msg: `the request's MACs belong to nodes "node-a" and "node-b" of the inventory testdata/fleet.yaml (X-Weft-MAC: 52:54:00:00:00:01,52:54:00:00:00:02)`},
		{name: "unknown", header: []string{"02:00:00:00:00:09,02:00:00:00:00:0a"}, addr: "10.0.2.99", err: ErrUnknownNode,
			msg: "no node of the inventory testdata/fleet.yaml has MAC 02:00:00:00:00:09 or 02:00:00:00:00:0a or address 10.0.2.99: add the node, with its MACs under macs"},
		{name: "unknown, no header", addr: "10.0.2.99", err: ErrUnknownNode,
			msg: "no node of the inventory testdata/fleet.yaml has address 10.0.2.99, and the request named no MAC (header X-Weft-MAC)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.header {
				h.Add(fleetapi.MACHeader, v)
			}
			macs, err := fleetapi.ParseMACHeader(h)
			if err != nil {
				t.Fatal(err)
			}
			var addr netip.Addr
			if tt.addr != "" {
				addr = netip.MustParseAddr(tt.addr)
			}
			n, err := inv.Match(macs, addr)
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("error %v, want %v containing %q", err, tt.err, tt.msg)
				}
			case err != nil:
				t.Errorf("error %v, want node %s", err, tt.want)
			case n.Name != tt.want:
				t.Errorf("node %s, want %s", n.Name, tt.want)
			}
		})
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
			h.Set(fleetapi.MACHeader, tt.in)
		}
		macs, err := fleetapi.ParseMACHeader(h)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case fleetapi.FormatMACHeader(macs) != tt.want:
			t.Errorf("%q: %q, want %q", tt.in, fleetapi.FormatMACHeader(macs), tt.want)
		}
	}
}

func manyMACs(n int) string {
	var s []string
	for i := range n {
		s = append(s, net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}.String())
	}
	return strings.Join(s, ",")
}

func testServer(t testing.TB, inventory string) *Server {
	t.Helper()
	s, err := New(Options{Inventory: inventory, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchInterval: -1})
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
	s := testServer(t, "testdata/fleet.yaml")
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
	s := testServer(t, "testdata/fleet.yaml")
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
