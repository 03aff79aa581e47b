package source

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// Each file of a drive stands or falls on its own (issue 10, item 7): a
// truncated network_data.json is reported with the byte where it ends, a
// broken meta_data.json with its line, column and byte, and the files
// that are fine are kept.
func TestReadOpenStackTreeEachFileAlone(t *testing.T) {
	const ud = "node:\n  hostname: n1\n"
	nd := `{"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:01"}, {"id": "eth1", "ty`
	for _, c := range []struct {
		name      string
		files     map[string]string
		broken    string // the file reported broken
		why       []string
		meta, net bool // kept
	}{
		{"truncated network_data.json", map[string]string{"meta_data.json": `{"uuid": "u-1", "name": "n1"}`, "network_data.json": nd, "user_data": ud},
			"network_data.json", []string{"network_data.json: truncated", "at byte " + fmt.Sprint(len(nd)), "unexpected EOF"}, true, false},
		{"broken meta_data.json", map[string]string{"meta_data.json": "{\"uuid\": \"u-1\",\n \"name\" \"n1\"}", "network_data.json": `{"links": []}`, "user_data": ud},
			"meta_data.json", []string{"meta_data.json: line 2 column 10 (byte 25)", "after object key"}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, body := range c.files {
				fsys["openstack/latest/"+name] = &fstest.MapFile{Data: []byte(body)}
			}
			b, err := readOpenStackTree(fsys, "config-drive /dev/vdb")
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(b.Broken) != 1 || b.Broken[0].File != c.broken {
				t.Fatalf("broken: %v, want %s only", b.Broken, c.broken)
			}
			for _, w := range c.why {
				if !strings.Contains(b.Broken[0].Error(), w) {
					t.Errorf("%q does not say %q", b.Broken[0].Error(), w)
				}
			}
			if (b.MetaData != nil) != c.meta || (b.NetworkData != nil) != c.net || string(b.UserData) != ud {
				t.Errorf("kept: meta_data %v network_data %v user_data %q", b.MetaData != nil, b.NetworkData != nil, b.UserData)
			}
		})
	}
}

// vendor_data2.json (the node's own join.openstack credential) is kept as
// read, for weft init to hand to the agent.
func TestReadOpenStackTreeVendorData2(t *testing.T) {
	const vd = `{"weft": {"openstack": {"applicationCredential": {"id": "i", "secret": "s"}}}}`
	fsys := fstest.MapFS{
		"openstack/latest/meta_data.json":    &fstest.MapFile{Data: []byte(`{"uuid": "u-1"}`)},
		"openstack/latest/vendor_data2.json": &fstest.MapFile{Data: []byte(vd)},
	}
	b, err := readOpenStackTree(fsys, "config-drive /dev/vdb")
	if err != nil || string(b.VendorData2) != vd {
		t.Fatalf("vendor_data2.json: %q, %v", b.VendorData2, err)
	}
	delete(fsys, "openstack/latest/vendor_data2.json")
	if b, err = readOpenStackTree(fsys, "config-drive /dev/vdb"); err != nil || b.VendorData2 != nil || len(b.Broken) != 0 {
		t.Fatalf("without vendor_data2.json: %q, broken %v, %v", b.VendorData2, b.Broken, err)
	}
}
