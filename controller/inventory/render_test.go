package inventory

import (
	"bytes"
	"compress/gzip"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
)

func TestUserDataWithPassword(t *testing.T) {
	ctl := netip.MustParseAddrPort("10.0.2.2:179")
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	tests := []struct {
		name string
		doc  []byte
		want []string // the passwords of bgp.controllers, in order
		same bool     // served byte for byte
		err  string
	}{
		{name: "block entry with password", doc: []byte("bgp:\n  asn: 64512\n  controllers:\n    - address: 10.0.2.2\n      password: fleet\n    - {address: 10.0.2.3, password: other}\n"),
			want: []string{"NODE", "other"}},
		{name: "flow entry without password", doc: []byte("bgp: {asn: 64512, controllers: [{address: 10.0.2.2}]}\n"), want: []string{"NODE"}},
		{name: "port 179 written out", doc: []byte("bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2, port: 179, password: x}]\n"), want: []string{"NODE"}},
		{name: "another port is another reflector", doc: []byte("bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2, port: 1179, password: x}]  # kept\n"), same: true},
		{name: "no entry: byte for byte", doc: []byte("# a comment\nbgp:\n    asn: 64512\n    controllers: [{address: 10.0.2.3}]\n"), same: true},
		{name: "gzip-compressed", doc: gz("bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2, password: fleet}]\n"), want: []string{"NODE"}},
		{name: "an anchored entry reused by a node override", doc: []byte("bgp:\n  asn: 64512\n  controllers:\n    - &c {address: 10.0.2.2, password: fleet}\nnodes:\n  - hostname: n1\n    bgp: {controllers: [*c]}\n"),
			want: []string{"NODE"}},
		// The address behind an alias is not recognised in the tree, but
		// the node would dial it: refused, rather than the fleet's served.
		{name: "the address an alias", doc: []byte("node: {routerID: &a 10.0.2.2}\nbgp:\n  asn: 64512\n  controllers: [{address: *a, password: fleet}]\n"), err: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := &Inventory{UserData: tt.doc}
			got, err := inv.UserDataWithPassword(ctl, "NODE")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q; got\n%s", err, tt.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.same {
				if !bytes.Equal(got, tt.doc) {
					t.Errorf("changed:\n%s", got)
				}
				return
			}
			c, err := config.Parse(got)
			if err != nil {
				t.Fatalf("%v\n%s", err, got)
			}
			var pws []string
			for _, ctl := range c.BGP.Controllers {
				pws = append(pws, ctl.Password)
			}
			if strings.Join(pws, ",") != strings.Join(tt.want, ",") || bytes.Contains(got, []byte("fleet")) {
				t.Errorf("passwords %q, want %q:\n%s", pws, tt.want, got)
			}
		})
	}
}
