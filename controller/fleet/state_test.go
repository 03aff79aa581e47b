package fleet

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"
)

// TestSessionAttribution: the reflector's sessions are matched to nodes by
// the inventory address, the addresses the node reports, its router ID,
// and last the address its reports come from.
func TestSessionAttribution(t *testing.T) {
	ip := netip.MustParseAddr
	ix := newSessionIndex([]fleetapi.ReflectorSession{
		{Peer: ip("10.0.2.15"), State: "established", RouterID: ip("1.1.1.1")},
		{Peer: ip("10.0.3.7"), State: "established", RouterID: ip("2.2.2.2")},
		{Peer: ip("10.0.4.1"), State: "idle", RouterID: ip("3.3.3.3")},
		{Peer: ip("10.0.4.2"), State: "established", RouterID: ip("3.3.3.3")}, // the same router, back from another address
		{Peer: ip("192.0.2.1"), State: "established"},
	})
	tests := []struct {
		name           string
		addrs          []netip.Addr
		routerID, from netip.Addr
		want           string // peer, or "" for none
	}{
		{"inventory address", []netip.Addr{ip("10.0.2.15")}, netip.Addr{}, netip.Addr{}, "10.0.2.15"},
		{"reported address", []netip.Addr{{}, ip("10.0.3.7")}, ip("9.9.9.9"), netip.Addr{}, "10.0.3.7"},
		{"router ID, the established session", []netip.Addr{{}}, ip("3.3.3.3"), netip.Addr{}, "10.0.4.2"},
		{"address before router ID", []netip.Addr{ip("10.0.2.15")}, ip("2.2.2.2"), netip.Addr{}, "10.0.2.15"},
		{"router ID before the report's source", []netip.Addr{{}}, ip("2.2.2.2"), ip("192.0.2.1"), "10.0.3.7"},
		{"the report's source, last", []netip.Addr{{}}, netip.Addr{}, ip("192.0.2.1"), "192.0.2.1"},
		{"none", []netip.Addr{ip("10.9.9.9")}, ip("9.9.9.9"), ip("10.9.9.8"), ""},
	}
	for _, tt := range tests {
		got := ix.find(tt.addrs, tt.routerID, tt.from)
		switch {
		case tt.want == "" && got != nil:
			t.Errorf("%s: %+v, want none", tt.name, got)
		case tt.want != "" && (got == nil || got.Peer.String() != tt.want):
			t.Errorf("%s: %+v, want %s", tt.name, got, tt.want)
		}
	}
}
