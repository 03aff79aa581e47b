package inventory

import (
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/strictyaml"
)

// FuzzParseInventory: no input panics or hangs the decoder, and what it
// accepts serves documents the node's parsers accept.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/fleet.yaml", "testdata/fleet-file.yaml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(baseConfig + "nodes:\n  - {name: a, macs: [\"52:54:00:00:00:01\"], networkData: {links: [{id: x, type: phy, ethernet_mac_address: \"52:54:00:00:00:01\"}]}}\n"))
	f.Add([]byte("configFile: weft.yaml\nnodes:\n  - {name: a, address: 10.0.2.15}\n"))
	f.Add([]byte("{config: {bgp: {asn: 1, controllers: [{address: 10.0.0.1}]}}, nodes: [{name: a, address: 10.0.0.2}]}"))
	f.Add([]byte("nodes: &n [{name: a, address: 10.0.0.2}]\nconfig:\n  bgp: {asn: 1, controllers: [{address: 10.0.0.1}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// No file is read: a configFile names testdata/weft.yaml or nothing.
		inv, err := parseInventory(data, "fuzz/inventory.yaml", fuzzFiles)
		if err != nil {
			if len(fieldErrors(err)) == 0 {
				t.Fatalf("an error that is no strictyaml.FieldError: %v", err)
			}
			return
		}
		if _, err := config.Parse(inv.UserData); err != nil && inv.ConfigPath == "" {
			t.Fatalf("accepted inline config reads back with errors: %v\n%q", err, inv.UserData)
		}
		for i := range inv.Nodes {
			n := &inv.Nodes[i]
			if _, err := config.ParseMetaData(n.MetaData); err != nil {
				t.Fatalf("meta_data.json of %s: %v", n.Name, err)
			}
			if n.NetworkData != nil {
				nd, err := config.ParseNetworkData(n.NetworkData)
				if err != nil {
					t.Fatalf("network_data.json of %s: %v", n.Name, err)
				}
				if _, probs := nd.Underlay(); len(probs) > 0 {
					t.Fatalf("network_data.json of %s has problems: %v", n.Name, probs)
				}
			}
			for _, m := range n.MACs {
				if got, err := inv.Match([]net.HardwareAddr{m}, netip.Addr{}); err != nil || got != n {
					t.Fatalf("MAC %s of %s matches %v, %v", m, n.Name, got, err)
				}
			}
			if n.Address.IsValid() {
				if got, err := inv.Match(nil, n.Address); err != nil || got != n {
					t.Fatalf("address %s of %s matches %v, %v", n.Address, n.Name, got, err)
				}
			}
		}
	})
}

// fuzzFiles stands in for the file system in FuzzParseInventory.
func fuzzFiles(path string, limit int64) ([]byte, error) {
	if path == "fuzz/weft.yaml" {
		return []byte("bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2}]\n"), nil
	}
	return nil, os.ErrNotExist
}

// fieldErrors lists the FieldErrors in err (as Load returns them
// joined), in order.
func fieldErrors(err error) []*strictyaml.FieldError {
	var out []*strictyaml.FieldError
	var walk func(error)
	walk = func(err error) {
		switch u := err.(type) {
		case *strictyaml.FieldError:
			out = append(out, u)
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
