package config

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

func parseNDFile(t *testing.T, name string) *NetworkData {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := ParseNetworkData(b)
	if err != nil {
		t.Fatal(err)
	}
	return nd
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestNetworkDataBondVLAN(t *testing.T) {
	u, probs := parseNDFile(t, "testdata/network_data_bond_vlan.json").Underlay()
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	want := Underlay{
		Source: "network_data.json",
		DNS:    []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8:101::53")},
		Links: []Link{
			{ID: "interface0", Kind: LinkPhy, Match: LinkMatch{MAC: mustMAC("52:54:00:00:00:01")}, MTU: 9000},
			{ID: "interface1", Kind: LinkPhy, Match: LinkMatch{MAC: mustMAC("52:54:00:00:00:02")}, MTU: 9000},
			{ID: "bond0", Kind: LinkBond, Name: "bond0", MTU: 9000, BondMembers: []string{"interface0", "interface1"},
				BondMode: "802.3ad", BondMiimon: 100, BondHashPolicy: "layer3+4", MAC: mustMAC("52:54:00:00:00:01")},
			{ID: "vlan0", Kind: LinkVLAN, Name: "vlan0", MTU: 1500, VLANParent: "bond0", VLANID: 101,
				Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.11/24"), netip.MustParsePrefix("2001:db8:101::11/64")},
				Routes: []Route{
					{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("192.0.2.254")},
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1")},
				}},
		},
	}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("underlay:\n got %+v\nwant %+v", u, want)
	}
}

func TestNetworkDataVM(t *testing.T) {
	nd := parseNDFile(t, "testdata/network_data_vm.json")
	u, probs := nd.Underlay()
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	if len(u.Links) != 2 {
		t.Fatalf("links: %+v", u.Links)
	}
	l0, l1 := u.Links[0], u.Links[1]
	if l0.Kind != LinkPhy || l0.Match.MAC.String() != "fa:16:3e:9c:bf:3d" || !l0.DHCP4 || l0.MTU != 0 {
		t.Errorf("link 0 (upper-case MAC, mtu null, ipv4_dhcp): %+v", l0)
	}
	wantAddrs := []netip.Prefix{netip.MustParsePrefix("10.1.0.5/24"), netip.MustParsePrefix("2001:db8:1::5/64")}
	if l1.MTU != 1450 || !reflect.DeepEqual(l1.Addresses, wantAddrs) || len(l1.Routes) != 2 ||
		l1.Routes[1].Dst != netip.MustParsePrefix("::/0") || l1.DNS[0] != netip.MustParseAddr("10.1.0.2") {
		t.Errorf("link 1: %+v", l1)
	}
	if !strings.Contains(nd.Summary(), "2 links (2 phy)") {
		t.Errorf("summary %q", nd.Summary())
	}
}

func TestNetworkDataProblems(t *testing.T) {
	u, probs := parseNDFile(t, "testdata/network_data_bad.json").Underlay()
	got := map[string]string{}
	for _, p := range probs {
		got[p.Path] = p.Error()
		if p.Warning != (p.Path == "links[2].type") {
			t.Errorf("%s: warning %v", p.Path, p.Warning)
		}
	}
	// mtu 0 is "not given"; an unknown type is a NIC with a warning, so
	// its network stays.
	want := map[string]string{
		"links[2].type":          `links[2].type: "infiniband" is not a known link type; used as a NIC, as cloud-init does`,
		"links[3].bond_links[1]": `links[3].bond_links[1]: no link is called "eth9"; bond has one member less`,
		"networks[3].link":       `networks[3].link: no link is called "nowhere"; network skipped`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n got %v\nwant %v", got, want)
	}
	// The other links survive.
	var ids []string
	for _, l := range u.Links {
		ids = append(ids, l.ID)
	}
	if !reflect.DeepEqual(ids, []string{"eth0", "eth1", "ib0", "bond0"}) {
		t.Errorf("links %v", ids)
	}
	if !u.Links[0].DHCP4 || u.Links[0].MTU != 0 {
		t.Errorf("eth0 %+v", u.Links[0])
	}
	if ib := u.Links[2]; ib.Kind != LinkPhy || !ib.DHCP4 || ib.Match.MAC.String() != "52:54:00:12:34:58" {
		t.Errorf("ib0 %+v", ib)
	}
	if b := u.Links[3]; !reflect.DeepEqual(b.BondMembers, []string{"eth1"}) || b.Addresses[0] != netip.MustParsePrefix("10.9.0.2/24") {
		t.Errorf("bond0 %+v", b)
	}
}

// TestNetworkDataQuirks feeds one-link documents with the shapes real
// clouds write.
func TestNetworkDataQuirks(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		check     func(t *testing.T, u Underlay)
		wantProbs []string
	}{
		{name: "mtu as string and miimon as number",
			doc: `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","mtu":"1500"},
			{"id":"b0","type":"bond","bond_links":["e0"],"bond_miimon":100,"bond_mode":"4"}]}`,
			check: func(t *testing.T, u Underlay) {
				if u.Links[0].MTU != 1500 || u.Links[1].BondMiimon != 100 || u.Links[1].BondMode != "802.3ad" {
					t.Errorf("%+v", u.Links)
				}
			}},
		{name: "mtu float and negative",
			doc:       `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","mtu":9000.0},{"id":"e1","type":"tap","ethernet_mac_address":"52:54:00:00:00:02","mtu":-1}]}`,
			check:     func(t *testing.T, u Underlay) { assertMTUs(t, u, 9000, 0) },
			wantProbs: []string{"links[1].mtu: -1 is out of range 576..65535; ignored"}},
		{name: "same MAC twice",
			doc:       `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},{"id":"e1","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"}]}`,
			check:     func(t *testing.T, u Underlay) { assertIDs(t, u, "e0") },
			wantProbs: []string{"links[1].ethernet_mac_address: 52:54:00:00:00:01 is already matched by links[0]; link skipped"}},
		{name: "mtu junk",
			doc:       `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","mtu":"big"}]}`,
			check:     func(t *testing.T, u Underlay) { assertMTUs(t, u, 0) },
			wantProbs: []string{`links[0].mtu: "big" is not an integer; ignored`}},
		{name: "every physical type",
			doc: `{"links":[` + physLinks("phy", "ethernet", "bridge", "ovs", "vif", "tap", "vhostuser", "hw_veb", "hyperv", "dvs") + `]}`,
			check: func(t *testing.T, u Underlay) {
				if len(u.Links) != 10 {
					t.Errorf("%d links", len(u.Links))
				}
				for _, l := range u.Links {
					if l.Kind != LinkPhy || l.Match.MAC == nil {
						t.Errorf("%+v", l)
					}
				}
			}},
		{name: "missing mac",
			doc:       `{"links":[{"id":"e0","type":"phy"},{"id":"e1","type":"phy","ethernet_mac_address":"zz"},{"id":"e2","type":"phy","name":"eth2"}]}`,
			check:     func(t *testing.T, u Underlay) { assertIDs(t, u, "e2") },
			wantProbs: []string{"links[0].ethernet_mac_address: missing; a NIC is matched by its MAC; link skipped", `links[1].ethernet_mac_address: "zz" is not a MAC address`}},
		{name: "vlan id as string, vlan_mac_address null, falls back to ethernet_mac_address",
			doc: `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},
			{"id":"interface1","type":"vlan","vlan_link":"e0","vlan_id":"42","vlan_mac_address":null,"ethernet_mac_address":"52:54:00:00:00:09"}]}`,
			check: func(t *testing.T, u Underlay) {
				v := u.Links[1]
				if v.VLANID != 42 || v.VLANParent != "e0" || v.Name != "interface1" || v.MAC.String() != "52:54:00:00:00:09" {
					t.Errorf("%+v", v)
				}
			}},
		{name: "vlan problems",
			doc: `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},
			{"id":"v0","type":"vlan","vlan_link":"e0","vlan_id":5000},{"id":"v1","type":"vlan","vlan_link":"gone","vlan_id":1},
			{"id":"v2","type":"vlan","vlan_link":"e0","vlan_id":7},{"id":"v3","type":"vlan","vlan_link":"v2","vlan_id":8},
			{"id":"a-very-long-vlan-interface-id","type":"vlan","vlan_link":"e0","vlan_id":9}]}`,
			check: func(t *testing.T, u Underlay) {
				assertIDs(t, u, "e0", "v2", "a-very-long-vlan-interface-id")
				if u.Links[2].Name != "vlan9" {
					t.Errorf("generated name %q", u.Links[2].Name)
				}
			},
			wantProbs: []string{"links[1].vlan_id: 5000 is not a VLAN ID", `links[2].vlan_link: no link is called "gone"`, `links[4].vlan_link: parent "v2" is a VLAN`}},
		{name: "bond problems",
			doc: `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},
			{"id":"b0","type":"bond","bond_links":["e0"],"bond_mode":"fastest"},{"id":"b1","type":"bond","bond_links":["e0","b0"]},
			{"id":"b0","type":"phy","ethernet_mac_address":"52:54:00:00:00:02"}],
			"networks":[{"id":"n","type":"ipv4_dhcp","link":"e0"}]}`,
			check: func(t *testing.T, u Underlay) {
				assertIDs(t, u, "e0", "b0")
				if u.Links[1].BondMode != "active-backup" || u.Links[0].DHCP4 {
					t.Errorf("%+v", u.Links)
				}
			},
			wantProbs: []string{`links[1].bond_mode: "fastest" is not a bonding mode; active-backup is used`, `links[2].bond_links[0]: member "e0" is already in bond "b0"`,
				`links[2].bond_links[1]: member "b0" is a bond, not a NIC`, "links[2].bond_links: no usable member; link skipped", `links[3].id: "b0" is already the id of links[1]; this second link is skipped`,
				`networks[0].link: link "e0" is a member of bond "b0"`}},
		{name: "network kinds",
			doc: `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"}],
			"networks":[{"id":"a","type":"ipv6_slaac","link":"e0"},{"id":"b","type":"ipv6_dhcp","link":"e0"},{"id":"c","type":"ipv4","link":"e0","ip_address":"10.0.0.2","netmask":"/8","gateway":"10.0.0.1"},
			{"id":"d","type":"ipv4","link":"e0","ip_address":"10.0.0.3"},{"id":"e","type":"ipv6","link":"e0","ip_address":"10.0.0.4/8"},{"id":"f","type":"ipx","link":"e0"},
			{"id":"g","type":"ipv4","link":"e0","ip_address":"10.1.0.2","netmask":"255.0.255.0"},
			{"id":"h","type":"ipv4","link":"e0","ip_address":"10.2.0.2/16","routes":[{"network":"10.3.0.0","netmask":"16","gateway":"nope"},{"network":"10.4.0.0","netmask":"255.255.0.0","gateway":"2001:db8::1"}]}]}`,
			check: func(t *testing.T, u Underlay) {
				l := u.Links[0]
				want := []netip.Prefix{netip.MustParsePrefix("10.0.0.2/8"), netip.MustParsePrefix("10.2.0.2/16")}
				if !l.SLAAC || l.DHCP4 || !reflect.DeepEqual(l.Addresses, want) || len(l.Routes) != 1 || l.Routes[0].Dst.Bits() != 0 {
					t.Errorf("%+v", l)
				}
			},
			wantProbs: []string{"networks[1].type: ipv6_dhcp: DHCPv6 is not supported", "networks[3]: netmask missing for 10.0.0.3", "networks[4].ip_address: 10.0.0.4 is not an ipv6 address",
				`networks[5].type: "ipx" is not a supported network type`, `networks[6]: netmask "255.0.255.0" is not a mask`,
				`networks[7].routes[0].gateway: "nope" is not an IP address`, "networks[7].routes[1].gateway: 2001:db8::1 is not of the address family"}},
		{name: "wrong shapes are problems, not failures",
			doc: `{"links":[7,{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","bond_links":"x","vlan_id":{}},{"id":["x"]}],
			"networks":[null,{"id":"n","type":"ipv4_dhcp","link":"e0","routes":{},"services":5}],"services":[{"type":"dns","address":"x"},"y"]}`,
			check: func(t *testing.T, u Underlay) {
				if len(u.Links) != 1 || !u.Links[0].DHCP4 {
					t.Errorf("%+v", u.Links)
				}
			},
			wantProbs: []string{"links[0]: want an object, got a number; entry skipped", "links[1].bond_links: want a list, got a string", "links[1].vlan_id: want text, got an object",
				"links[2].id: want text, got a list", "links[2].id: missing; link skipped", "networks[0]: want an object, got null", "networks[1].routes: want a list, got an object",
				"networks[1].services: want a list, got a number", `services[0].address: "x" is not an IP address`, "services[1]: want an object, got a string"}},
		{name: "empty", doc: `{}`, check: func(t *testing.T, u Underlay) { assertIDs(t, u) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nd, err := ParseNetworkData([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			u, probs := nd.Underlay()
			tc.check(t, u)
			var msgs []string
			for _, p := range probs {
				msgs = append(msgs, p.Error())
			}
			all := strings.Join(msgs, "\n")
			for _, w := range tc.wantProbs {
				if !strings.Contains(all, w) {
					t.Errorf("problems lack %q; got:\n%s", w, all)
				}
			}
			if len(msgs) != len(tc.wantProbs) {
				t.Errorf("%d problems, want %d:\n%s", len(msgs), len(tc.wantProbs), all)
			}
		})
	}
}

func physLinks(types ...string) string {
	var parts []string
	for i, ty := range types {
		parts = append(parts, `{"id":"l`+itoa(i)+`","type":"`+ty+`","ethernet_mac_address":"52:54:00:00:01:0`+itoa(i)+`"}`)
	}
	return strings.Join(parts, ",")
}

func assertMTUs(t *testing.T, u Underlay, mtus ...int) {
	t.Helper()
	for i, m := range mtus {
		if i >= len(u.Links) || u.Links[i].MTU != m {
			t.Errorf("links %+v, want MTUs %v", u.Links, mtus)
			return
		}
	}
}

func assertIDs(t *testing.T, u Underlay, ids ...string) {
	t.Helper()
	var got []string
	for _, l := range u.Links {
		got = append(got, l.ID)
	}
	if !reflect.DeepEqual(got, ids) && (len(got) != 0 || len(ids) != 0) {
		t.Errorf("link IDs %v, want %v", got, ids)
	}
}

func TestParseNetworkDataErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{``, "network_data.json: EOF"},
		{`[]`, "want a JSON object"},
		{`null`, "want a JSON object, got null"},
		{"{\n\"links\": [,]}", "network_data.json: line 2 column"},
		{`{"links": {}}`, "network_data.json: links: want a list, got an object"},
		{`{"networks": 1}`, "networks: want a list, got a number"},
		{`{} {}`, "data after the JSON object"},
		{`{}}`, "data after the JSON object"},
		{`{"links":[]}]`, "data after the JSON object"},
	} {
		if _, err := ParseNetworkData([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestParseMetaData(t *testing.T) {
	b, _ := os.ReadFile("testdata/meta_data.json")
	m, err := ParseMetaData(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.UUID != "83679162-1378-4288-a2d4-70e13ec132aa" || m.Hostname != "pg1.novalocal" || m.Name != "pg1" || m.AvailabilityZone != "nova" {
		t.Errorf("%+v", m)
	}
	if m.Meta["role"] != "db" || m.Meta["rack"] != "12" || !strings.HasPrefix(m.PublicKeys["mykey"], "ssh-ed25519 ") {
		t.Errorf("meta %v keys %v", m.Meta, m.PublicKeys)
	}
	for _, tc := range []struct {
		doc  string
		ok   bool
		want string
	}{
		{`{"uuid": 5, "hostname": null, "meta": {"a": {"b": 1}, "c": true}}`, true, ""},
		{`{"keys": [{"name": "k", "type": "ssh", "data": "ssh-rsa AAA"}]}`, true, ""},
		{`{"hostname": {"x": 1}}`, false, "meta_data.json: hostname: want text, got an object"},
		{`{"meta": []}`, false, "meta_data.json: meta: want an object of strings"},
		{`"x"`, false, "want a JSON object"},
	} {
		m, err := ParseMetaData([]byte(tc.doc))
		if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %+v, %v", tc.doc, m, err)
		}
	}
	m, _ = ParseMetaData([]byte(`{"uuid": 5, "meta": {"a": {"b": 1}, "c": true}, "keys": [{"name": "k", "data": "ssh-rsa AAA"}]}`))
	if m.UUID != "5" || m.Meta["c"] != "true" || len(m.Meta) != 1 || m.PublicKeys["k"] != "ssh-rsa AAA" {
		t.Errorf("lenient: %+v", m)
	}
}

func FuzzParseNetworkData(f *testing.F) {
	for _, name := range []string{"testdata/network_data_vm.json", "testdata/network_data_bond_vlan.json", "testdata/network_data_bad.json"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"links":[{"id":"a","type":"vlan","vlan_link":"a","vlan_id":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		nd, err := ParseNetworkData(data)
		if err != nil {
			return
		}
		u, probs := nd.Underlay()
		ids := map[string]LinkKind{}
		for _, l := range u.Links {
			if _, dup := ids[l.ID]; dup || l.ID == "" {
				t.Fatalf("link ID %q empty or repeated", l.ID)
			}
			ids[l.ID] = l.Kind
		}
		names := map[string]bool{}
		for _, l := range u.Links {
			switch l.Kind {
			case LinkPhy:
				if l.Match.MAC == nil && l.Match.Name == "" {
					t.Fatalf("phy link %q matches nothing", l.ID)
				}
			case LinkBond:
				if len(l.BondMembers) == 0 {
					t.Fatalf("bond %q without members", l.ID)
				}
				for _, m := range l.BondMembers {
					if ids[m] != LinkPhy {
						t.Fatalf("bond %q member %q is %q", l.ID, m, ids[m])
					}
				}
			case LinkVLAN:
				if k := ids[l.VLANParent]; k != LinkPhy && k != LinkBond {
					t.Fatalf("vlan %q parent %q is %q", l.ID, l.VLANParent, k)
				}
				if l.VLANID < 1 || l.VLANID > 4094 {
					t.Fatalf("vlan id %d", l.VLANID)
				}
			default:
				t.Fatalf("kind %q", l.Kind)
			}
			if l.Kind != LinkPhy {
				if !ifnameOK(l.Name) || names[l.Name] {
					t.Fatalf("bad or repeated interface name %q", l.Name)
				}
				names[l.Name] = true
			}
			if l.MTU != 0 && CheckMTU(l.MTU) != nil {
				t.Fatalf("mtu %d", l.MTU)
			}
			for _, a := range l.Addresses {
				if !a.IsValid() {
					t.Fatal("invalid address")
				}
			}
		}
		for _, p := range probs {
			if p.Path == "" || p.Err == nil {
				t.Fatalf("problem without path or error: %+v", p)
			}
		}
		// The normalised form must serialise (init/underlay logs it and the
		// status API serves it).
		if _, err := json.Marshal(u); err != nil {
			t.Fatal(err)
		}
		_ = nd.Summary()
	})
}
