package openstack

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
)

func TestEndpointOf(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name    string
		port    Port
		address string
		allowed []string
	}{
		{"one address", Port{ID: "0123456789", MAC: "fa:16:3e:00:00:01", PortSecurity: true, FixedIPs: []netip.Prefix{pfx("10.0.0.5/24")}},
			"10.0.0.5/24", nil},
		{"second fixed IP and a pair", Port{ID: "0123456789", PortSecurity: true, FixedIPs: []netip.Prefix{pfx("10.0.0.5/24"), pfx("fd00::5/64")},
			AllowedPairs: []netip.Prefix{pfx("10.0.0.50/32"), pfx("10.0.0.64/28")}},
			"10.0.0.5/24", []string{"fd00::5/128", "10.0.0.50/32", "10.0.0.64/28"}},
		{"port security off", Port{ID: "0123456789", FixedIPs: []netip.Prefix{pfx("10.0.0.5/24")}, AllowedPairs: []netip.Prefix{pfx("10.0.0.50/32")}},
			"10.0.0.5/24", []string{"10.0.0.50/32", "0.0.0.0/0", "::/0"}},
	}
	for _, tc := range tests {
		e, err := endpointOf(tc.port, "db")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if e.Name != "os-01234567" || e.Network != "db" || e.Address != tc.address || e.MAC != tc.port.MAC || e.NeutronPort != tc.port.ID ||
			!slices.Equal(e.AllowedSources, tc.allowed) {
			t.Errorf("%s: %+v, want address %s allowed %v", tc.name, e, tc.address, tc.allowed)
		}
	}
	if _, err := endpointOf(Port{ID: "p"}, "db"); err == nil || !strings.Contains(err.Error(), "no fixed IP") {
		t.Errorf("a port without fixed IPs: %v, want an error", err)
	}
}

func TestMappingRules(t *testing.T) {
	cfg := &config.Config{Networks: []config.VirtualNetwork{{Name: "a", VNI: 10}, {Name: "b", VNI: 20}},
		Join: config.Join{OpenStack: &config.OpenStackJoin{Networks: []config.NeutronNetwork{{Neutron: "net-x", Network: "a"}, {Neutron: "id-1", Network: "b"}}}}}
	m := NewMapping(cfg)
	for _, tc := range []struct {
		n    Network
		want string
	}{
		{Network{ID: "id-1", Name: "net-x"}, "b"},                // the ID wins over a name
		{Network{ID: "id-2", Name: "net-x"}, "a"},                // by name
		{Network{ID: "id-3", Name: "y", SegmentationID: 20}, ""}, // matchVNI off
	} {
		got, err := m.Resolve(tc.n)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%+v: %q, %v; want %q", tc.n, got, err, tc.want)
		}
	}
	cfg.Join.OpenStack.MatchVNI = true
	if got, err := m.Resolve(Network{ID: "id-3", Name: "y", SegmentationID: 20}); got != "b" || err != nil {
		t.Errorf("matchVNI: %q, %v; want b", got, err)
	}
}
