package inventory

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"
)

func TestMatch(t *testing.T) {
	inv, err := Load("testdata/fleet.yaml")
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
