package fleetsim

import (
	"net/netip"
	"testing"
)

// TestShape: every network has the same number of hosts, addresses and
// labels do not repeat within a network, and Total counts the routes.
func TestShape(t *testing.T) {
	f := Fleet{Nodes: 1000, Networks: 300, PerNode: 3, Endpoints: 2, ASN: 64512, FirstNode: netip.MustParseAddr("198.18.0.1")}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for m := range f.Networks {
		rs := f.RoutesOf(m)
		total += len(rs)
		if len(rs) != 20 {
			t.Fatalf("network %d: %d routes, want 10 hosts x 2", m, len(rs))
		}
		seen := map[netip.Prefix]bool{}
		for _, r := range rs {
			if seen[r.Prefix] || !Subnet.Contains(r.Prefix.Addr()) || r.Prefix.Addr().As4()[2] == 255 || r.Label < 16 {
				t.Fatalf("network %d: route %+v repeats or is out of place", m, r)
			}
			seen[r.Prefix] = true
		}
	}
	if total != f.Total() || f.Node(999) != netip.MustParseAddr("198.18.3.232") {
		t.Errorf("total %d (Total %d), node 999 %v", total, f.Total(), f.Node(999))
	}
	ups, err := f.updates()
	if err != nil || len(ups) != 3000 {
		t.Fatalf("%d updates, %v", len(ups), err)
	}
	for _, bad := range []Fleet{{}, {Nodes: 1, Networks: 1, PerNode: 2, Endpoints: 1, ASN: 1, FirstNode: f.FirstNode},
		{Nodes: 70000, Networks: 1, PerNode: 1, Endpoints: 1, ASN: 1, FirstNode: f.FirstNode}} {
		if bad.Validate() == nil {
			t.Errorf("%+v: valid", bad)
		}
	}
}
