package underlay

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
)

// fuzzHost is the fixed set of NICs the fuzzed documents meet: the MACs
// the seeds use, an InfiniBand NIC, loopback and a bond the bonding module
// made at load.
var fuzzHost = []hostLink{
	{Name: "lo", Index: 1, Kind: "device", Loopback: true, MAC: mac("00:00:00:00:00:00"), MTU: 65536},
	{Name: "eth0", Index: 2, Kind: "device", MAC: mac("52:54:00:00:00:01"), MTU: 1500, Phys: true},
	{Name: "eth1", Index: 3, Kind: "device", MAC: mac("52:54:00:00:00:02"), MTU: 1500, Phys: true},
	{Name: "ens3", Index: 4, Kind: "device", MAC: mac("fa:16:3e:00:00:01"), MTU: 1500, Phys: true},
	{Name: "ens4", Index: 5, Kind: "device", MAC: mac("fa:16:3e:00:00:02"), MTU: 1500, Phys: true},
	{Name: "ib0", Index: 6, Kind: "device", MAC: mac("80:00:02:08:fe:80:00:00:00:00:00:00:f4:52:14:03:00:8d:52:51"), MTU: 2044, Phys: true},
	{Name: "bond0", Index: 7, Kind: "bond", MAC: mac("52:54:00:00:00:01"), MTU: 1500},
}

// vendorDocs are network_data.json documents in the shapes clouds write,
// and the hostile ones issue 10 found.
var vendorDocs = []string{
	// OVH: the public NIC is "bgpovs", a /32 with an on-link gateway.
	`{"links":[{"id":"tap4a2b","vif_id":"4a2b","type":"bgpovs","mtu":1500,"ethernet_mac_address":"fa:16:3e:00:00:01"}],
	  "networks":[{"id":"network0","type":"ipv4","link":"tap4a2b","ip_address":"203.0.113.10","netmask":"255.255.255.255",
	    "routes":[{"network":"0.0.0.0","netmask":"0.0.0.0","gateway":"203.0.113.1"}],"network_id":"b5c3"},
	    {"id":"network1","type":"ipv6","link":"tap4a2b","ip_address":"2001:db8:1::10","netmask":"ffff:ffff:ffff:ffff::",
	    "routes":[{"network":"::","netmask":"::","gateway":"2001:db8:1::1"}],"network_id":"b5c3"}],
	  "services":[{"type":"dns","address":"213.186.33.99"}]}`,
	// OpenTelekomCloud: "cascading" links, DHCP.
	`{"links":[{"id":"tap1","type":"cascading","ethernet_mac_address":"FA:16:3E:00:00:02","mtu":null,"vif_id":"1"}],
	  "networks":[{"id":"network0","type":"ipv4_dhcp","link":"tap1","network_id":"c1"}],"services":[]}`,
	// A bond with bad options: padded mode, unknown and padded hash
	// policies, miimon as junk, an option Weft does not apply.
	`{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","mtu":0},
	  {"id":"e1","type":"phy","ethernet_mac_address":"52:54:00:00:00:02","mtu":"0"},
	  {"id":"b","type":"bond","bond_links":["e0","e1"],"bond_mode":" 802.3AD ","bond_xmit_hash_policy":"layer9","bond_miimon":"often","bond_lacp_rate":"fast"},
	  {"id":"b2","type":"bond","bond_links":["e0"],"bond_xmit_hash_policy":" layer3+4 "},
	  {"id":"v","type":"vlan","vlan_link":"b","vlan_id":"100","vlan_mac_address":null}],
	  "networks":[{"id":"n","type":"ipv4","link":"v","ip_address":"10.0.0.2","netmask":"24","gateway":"10.0.0.1"}]}`,
	// InfiniBand: by its 20-byte address and by OpenStack's 6-byte form.
	`{"links":[{"id":"ib0","type":"phy","ethernet_mac_address":"80:00:02:08:fe:80:00:00:00:00:00:00:f4:52:14:03:00:8d:52:51"},
	  {"id":"ib1","type":"infiniband","ethernet_mac_address":"f4:52:14:8d:52:51"}],
	  "networks":[{"id":"n","type":"ipv4","link":"ib0","ip_address":"10.1.0.2/24"},{"id":"m","type":"ipv4_dhcp","link":"ib1"}]}`,
	// A VLAN on itself, a VLAN loop, a bond of itself.
	`{"links":[{"id":"v","type":"vlan","vlan_link":"v","vlan_id":5},{"id":"w","type":"vlan","vlan_link":"x","vlan_id":6},
	  {"id":"x","type":"vlan","vlan_link":"w","vlan_id":7},{"id":"b","type":"bond","bond_links":["b"]}],
	  "networks":[{"id":"n","type":"ipv4_dhcp","link":"v"}]}`,
	// Duplicates: an id, a MAC, a member in two bonds.
	`{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:02"},
	  {"id":"e1","type":"ethernet","ethernet_mac_address":"52:54:00:00:00:01"},{"id":"b1","type":"bond","bond_links":["e0"]},
	  {"id":"b2","type":"bond","bond_links":["e0"]},{"id":"b1","type":"vlan","vlan_link":"e0","vlan_id":1}],
	  "networks":[{"id":"n","type":"ipv4_dhcp","link":"e0"}]}`,
	// Wrong shapes, unknown and missing types, ids that are not text.
	`{"links":[7,null,{"id":1,"ethernet_mac_address":"fa:16:3e:00:00:01"},{"id":true,"type":"weird","name":"eth1"},
	  {"id":["x"],"type":"phy"},{"type":"phy","ethernet_mac_address":"fa:16:3e:00:00:02"},{"id":" s ","type":" PHY ","ethernet_mac_address":"52:54:00:00:00:09"}]}`,
}

// FuzzNetworkDataLayout feeds network_data.json documents through what
// PID 1 does with one: parse, convert to an Underlay, lay it out on a
// fixed set of NICs (before and after the NIC wait). Nothing panics, and
// every link of the document gets a verdict: its layout (ready, waiting
// or failed with a reason), or a problem naming it; a link that is
// dropped is dropped with a failed problem, never silently.
func FuzzNetworkDataLayout(f *testing.F) {
	for _, doc := range vendorDocs {
		f.Add([]byte(doc))
	}
	for _, name := range []string{"network_data_vm.json", "network_data_bond_vlan.json", "network_data_bad.json"} {
		if b, err := os.ReadFile("../../config/testdata/" + name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		nd, err := config.ParseNetworkData(data)
		if err != nil {
			return
		}
		u, probs := nd.Underlay()
		failedFor := map[string]bool{} // link ID -> has a failed problem
		failedAt := map[int]bool{}     // document position -> has a failed problem
		for _, p := range probs {
			if p.Path == "" || p.Err == nil {
				t.Fatalf("problem without path or error: %+v", p)
			}
			if p.Warning {
				continue
			}
			if p.Link != "" {
				failedFor[p.Link] = true
			}
			if i, ok := linkPosition(p.Path); ok {
				failedAt[i] = true
			}
		}
		for _, opts := range []layoutOpts{{}, {GaveUpAfter: 30 * time.Second}} {
			p := makeLayout(u, fuzzHost, opts)
			laid := map[string]bool{}
			names := map[string]string{}
			for _, ll := range p.Links {
				laid[ll.ID] = true
				switch ll.State {
				case stateReady:
					if ll.Name == "" {
						t.Fatalf("%s: ready without a name", ll.ID)
					}
					if other, dup := names[ll.Name]; dup {
						t.Fatalf("%s and %s both on %s", ll.ID, other, ll.Name)
					}
					names[ll.Name] = ll.ID
				case stateWaiting, stateFailed:
					if ll.Reason == "" {
						t.Fatalf("%s: %s without a reason", ll.ID, ll.State)
					}
				}
				if ll.State == stateWaiting && opts.GaveUpAfter > 0 {
					t.Fatalf("%s still waiting after the NIC wait: %s", ll.ID, ll.Reason)
				}
			}
			if len(p.Links) != len(u.Links) {
				t.Fatalf("%d layouts for %d links", len(p.Links), len(u.Links))
			}
			first := map[string]bool{}
			for i, id := range docLinkIDs(t, data) {
				var ok bool
				if id != "" && !first[id] {
					first[id] = true
					ok = laid[id] || failedFor[id] || failedAt[i]
				} else {
					ok = failedAt[i] // no id, or a second link with it
				}
				if !ok {
					t.Fatalf("links[%d] (id %q) got no verdict; problems %v", i, id, probs)
				}
			}
		}
	})
}

// linkPosition reads i from a problem path "links[i]..." .
func linkPosition(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "links[")
	if !ok {
		return 0, false
	}
	n, _, ok := strings.Cut(rest, "]")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}

// docLinkIDs reads the id of every entry of "links", independently of
// config: "" where an entry is not an object or its id is missing, null,
// an object or a list; a number or boolean as written.
func docLinkIDs(t *testing.T, data []byte) []string {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("ParseNetworkData accepted what encoding/json refuses (%v): %q", err, data)
	}
	var links []json.RawMessage
	if raw := bytes.TrimSpace(top["links"]); len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &links); err != nil {
			t.Fatalf("ParseNetworkData accepted links that are not a list (%v): %q", err, data)
		}
	}
	ids := make([]string, len(links))
	for i, raw := range links {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			continue
		}
		id := bytes.TrimSpace(obj["id"])
		switch {
		case len(id) == 0 || string(id) == "null" || id[0] == '{' || id[0] == '[':
		case id[0] == '"':
			_ = json.Unmarshal(id, &ids[i])
		default:
			ids[i] = string(id)
		}
	}
	return ids
}
