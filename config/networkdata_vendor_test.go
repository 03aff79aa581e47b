package config

import (
	"strings"
	"testing"
)

// ndUnderlay parses doc and converts it, as PID 1 does.
func ndUnderlay(t *testing.T, doc string) (Underlay, []Problem) {
	t.Helper()
	nd, err := ParseNetworkData([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return nd.Underlay()
}

func problemAt(probs []Problem, path string) (Problem, bool) {
	for _, p := range probs {
		if p.Path == path {
			return p, true
		}
	}
	return Problem{}, false
}

// Vendor link types keep their networks: cloud-init's physical list
// silently, any other type with a warning naming the link and the type.
func TestNetworkDataVendorLinkTypes(t *testing.T) {
	u, probs := ndUnderlay(t, `{"links":[
		{"id":"ovh","type":"bgpovs","ethernet_mac_address":"fa:16:3e:00:00:01"},
		{"id":"otc","type":"cascading","ethernet_mac_address":"fa:16:3e:00:00:02"},
		{"id":"none","ethernet_mac_address":"fa:16:3e:00:00:03"},
		{"id":"odd","type":" Fancy-VIF ","ethernet_mac_address":"fa:16:3e:00:00:04"}],
	 "networks":[
		{"id":"n0","type":"ipv4","link":"ovh","ip_address":"203.0.113.10","netmask":"255.255.255.0","gateway":"203.0.113.1"},
		{"id":"n1","type":"ipv4_dhcp","link":"otc"},
		{"id":"n2","type":"ipv4_dhcp","link":"none"},
		{"id":"n3","type":"ipv6_slaac","link":"odd"}]}`)
	assertIDs(t, u, "ovh", "otc", "none", "odd")
	for _, l := range u.Links {
		if l.Kind != LinkPhy || l.Match.MAC == nil {
			t.Errorf("%s: %+v", l.ID, l)
		}
	}
	if l := u.Links[0]; len(l.Addresses) != 1 || len(l.Routes) != 1 {
		t.Errorf("bgpovs link lost its network: %+v", l)
	}
	if !u.Links[1].DHCP4 || !u.Links[2].DHCP4 || !u.Links[3].SLAAC {
		t.Errorf("networks lost: %+v", u.Links)
	}
	if len(probs) != 1 {
		t.Fatalf("problems %v, want only the unknown type", probs)
	}
	p := probs[0]
	if p.Path != "links[3].type" || p.Link != "odd" || !p.Warning || !strings.Contains(p.Err.Error(), `" Fancy-VIF " is not a known link type; used as a NIC`) {
		t.Errorf("problem %+v", p)
	}
}

// Every bond option is normalised, and a bad one is a warning naming the
// link, the option and the value, with the kernel's default used: the bond
// and what sits on it stay.
func TestNetworkDataBondOptions(t *testing.T) {
	const members = `{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},
		{"id":"e1","type":"phy","ethernet_mac_address":"52:54:00:00:00:02"},`
	const rest = `,{"id":"v","type":"vlan","vlan_link":"b","vlan_id":7}],
		"networks":[{"id":"n","type":"ipv4","link":"v","ip_address":"10.0.0.2/24"}]}`
	tests := []struct {
		name             string
		bond             string
		mode, hash       string
		miimon           int
		warnPath, warnIs string // "" when no problem
	}{
		{name: "padded and upper case", bond: `"bond_mode":" 802.3AD ","bond_xmit_hash_policy":" Layer3+4 ","bond_miimon":" 100 "`,
			mode: "802.3ad", hash: "layer3+4", miimon: 100},
		{name: "numbers for names", bond: `"bond_mode":4,"bond_xmit_hash_policy":"2","bond_miimon":"100.0"`,
			mode: "802.3ad", hash: "layer2+3", miimon: 100},
		{name: "unknown hash policy", bond: `"bond_mode":"802.3ad","bond_xmit_hash_policy":"layer9"`,
			mode: "802.3ad", warnPath: "links[2].bond_xmit_hash_policy", warnIs: `"layer9" is not a transmit hash policy`},
		{name: "hash policy with inner space", bond: `"bond_mode":"802.3ad","bond_xmit_hash_policy":"layer 3+4"`,
			mode: "802.3ad", warnPath: "links[2].bond_xmit_hash_policy", warnIs: `"layer 3+4" is not a transmit hash policy`},
		{name: "unknown mode", bond: `"bond_mode":"fastest","bond_xmit_hash_policy":"layer2+3"`,
			mode: "active-backup", hash: "layer2+3", warnPath: "links[2].bond_mode", warnIs: `"fastest" is not a bonding mode; active-backup is used`},
		{name: "miimon junk", bond: `"bond_miimon":"often"`,
			mode: "active-backup", warnPath: "links[2].bond_miimon", warnIs: `"often" is not an integer; the kernel's default is used`},
		{name: "miimon negative", bond: `"bond_miimon":-5`,
			mode: "active-backup", warnPath: "links[2].bond_miimon", warnIs: "-5 is negative; the kernel's default is used"},
		{name: "miimon not text", bond: `"bond_miimon":{"ms":100}`,
			mode: "active-backup", warnPath: "links[2].bond_miimon", warnIs: "want text, got an object; the kernel's default is used"},
		{name: "option Weft does not apply", bond: `"bond_lacp_rate":"fast"`,
			mode: "active-backup", warnPath: "links[2].bond_lacp_rate", warnIs: `"fast" not applied`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, probs := ndUnderlay(t, `{"links":[`+members+`{"id":"b","type":"bond","bond_links":["e0","e1"],`+tc.bond+`}`+rest)
			assertIDs(t, u, "e0", "e1", "b", "v")
			if len(u.Links) != 4 {
				return
			}
			b := u.Links[2]
			if b.BondMode != tc.mode || b.BondHashPolicy != tc.hash || b.BondMiimon != tc.miimon {
				t.Errorf("bond mode %q hash %q miimon %d, want %q %q %d", b.BondMode, b.BondHashPolicy, b.BondMiimon, tc.mode, tc.hash, tc.miimon)
			}
			if len(u.Links[3].Addresses) != 1 {
				t.Errorf("the VLAN on the bond lost its address: %+v", u.Links[3])
			}
			if tc.warnPath == "" {
				if len(probs) != 0 {
					t.Errorf("problems %v", probs)
				}
				return
			}
			p, ok := problemAt(probs, tc.warnPath)
			if len(probs) != 1 || !ok || p.Link != "b" || !p.Warning || !strings.Contains(p.Err.Error(), tc.warnIs) {
				t.Errorf("problems %+v, want one warning at %s for link b: %q", probs, tc.warnPath, tc.warnIs)
			}
		})
	}
}

func TestNetworkDataMinor(t *testing.T) {
	t.Run("mtu 0 is not given", func(t *testing.T) {
		u, probs := ndUnderlay(t, `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","mtu":0},
			{"id":"e1","type":"phy","ethernet_mac_address":"52:54:00:00:00:02","mtu":"0"}]}`)
		assertMTUs(t, u, 0, 0)
		if len(probs) != 0 {
			t.Errorf("problems %v", probs)
		}
	})
	t.Run("vlan on itself", func(t *testing.T) {
		u, probs := ndUnderlay(t, `{"links":[{"id":"v","type":"vlan","vlan_link":"v","vlan_id":5}]}`)
		assertIDs(t, u)
		p, ok := problemAt(probs, "links[0].vlan_link")
		if len(probs) != 1 || !ok || p.Link != "v" || !strings.Contains(p.Err.Error(), "names the VLAN itself") || strings.Contains(p.Err.Error(), "stacked") {
			t.Errorf("problems %v", probs)
		}
	})
	t.Run("duplicate id is reported against the duplicate", func(t *testing.T) {
		u, probs := ndUnderlay(t, `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"},
			{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:02"}],
			"networks":[{"id":"n","type":"ipv4_dhcp","link":"e0"}]}`)
		assertIDs(t, u, "e0")
		if u.Links[0].Match.MAC.String() != "52:54:00:00:00:01" || !u.Links[0].DHCP4 {
			t.Errorf("the first link must stay as declared: %+v", u.Links[0])
		}
		p, ok := problemAt(probs, "links[1].id")
		if len(probs) != 1 || !ok || p.Link != "" || !strings.Contains(p.Err.Error(), `"e0" is already the id of links[0]; this second link is skipped`) {
			t.Errorf("problems %+v", probs)
		}
	})
	t.Run("infiniband address", func(t *testing.T) {
		const ib = "80:00:02:08:fe:80:00:00:00:00:00:00:f4:52:14:03:00:8d:52:51"
		u, probs := ndUnderlay(t, `{"links":[{"id":"ib0","type":"phy","ethernet_mac_address":"`+strings.ToUpper(ib)+`"},
			{"id":"eui","type":"phy","ethernet_mac_address":"00:11:22:33:44:55:66:77"}],
			"networks":[{"id":"n","type":"ipv4","link":"ib0","ip_address":"10.0.0.2/24"}]}`)
		assertIDs(t, u, "ib0")
		if len(u.Links) == 1 && u.Links[0].Match.MAC.String() != ib {
			t.Errorf("ib0 matches %s", u.Links[0].Match.MAC)
		}
		p, ok := problemAt(probs, "links[1].ethernet_mac_address")
		if len(probs) != 1 || !ok || !strings.Contains(p.Err.Error(), "not a MAC address (6 bytes) or an InfiniBand address (20 bytes)") {
			t.Errorf("problems %v", probs)
		}
	})
}

// cloud-init reads the network types static and static6 as ipv4 and ipv6.
func TestNetworkDataStaticTypes(t *testing.T) {
	u, probs := ndUnderlay(t, `{"links":[{"id":"e0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"}],
		"networks":[{"id":"a","type":"static","link":"e0","ip_address":"10.0.0.2","netmask":"255.255.255.0","gateway":"10.0.0.1"},
		{"id":"b","type":"STATIC6","link":"e0","ip_address":"2001:db8::2","netmask":"64"},
		{"id":"c","type":"static6","link":"e0","ip_address":"10.0.0.3/24"}]}`)
	if l := u.Links[0]; len(l.Addresses) != 2 || len(l.Routes) != 1 || l.Addresses[1].String() != "2001:db8::2/64" {
		t.Errorf("%+v", l)
	}
	if len(probs) != 1 || probs[0].Path != "networks[2].ip_address" || !strings.Contains(probs[0].Err.Error(), "10.0.0.3 is not an ipv6 address") {
		t.Errorf("problems %v", probs)
	}
}
