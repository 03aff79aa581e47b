package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// NetworkData is OpenStack's network_data.json as read, field by field,
// tolerantly: values are kept as written (strings for addresses) and
// checked by Underlay, so that one bad link costs that link only.
type NetworkData struct {
	Links    []NetworkDataLink
	Networks []NetworkDataNetwork
	Services []NetworkDataService

	problems []Problem // entries or fields that could not be read at all
	raw      []byte
	// Positions in the document of Links, Networks and Services (entries
	// that are not objects are left out of those), for problem paths.
	linkPos, netPos, svcPos []int
}

// pos is the document position of entry i of a list of n entries.
func pos(p []int, i, n int) int {
	if len(p) == n {
		return p[i]
	}
	return i
}

// NetworkDataLink is one entry of "links".
type NetworkDataLink struct {
	ID   string // "id"
	Type string // "type": phy, bond, vlan, ovs, bridge, ...
	MAC  string // "ethernet_mac_address", any case
	Name string // "name", written by some generators; used when MAC is missing
	MTU  *int   // "mtu"; nil when absent or null

	BondLinks []string // "bond_links": member link IDs
	// Bond options as written (a number is kept as its text): Underlay
	// normalises them and degrades a bad one to the kernel's default.
	BondMode       string // "bond_mode"
	BondMiimon     string // "bond_miimon", a number or a string
	BondHashPolicy string // "bond_xmit_hash_policy"
	// BondOther holds the other "bond_*" keys (cloud-init passes them to
	// its renderer; Weft reports them as not applied), by key.
	BondOther map[string]string

	VLANLink string // "vlan_link": parent link ID
	VLANID   int    // "vlan_id", a number or a string
	VLANMAC  string // "vlan_mac_address"; "" when null
}

// NetworkDataNetwork is one entry of "networks": addressing on a link.
type NetworkDataNetwork struct {
	ID        string // "id"
	Type      string // ipv4, ipv6, ipv4_dhcp, ipv6_dhcp, ipv6_slaac, ipv6_dhcpv6-stateful, ipv6_dhcpv6-stateless
	Link      string // "link": a link ID
	NetworkID string // "network_id" (Neutron's UUID)
	IPAddress string // "ip_address": an address, or address/prefix
	Netmask   string // "netmask": dotted, IPv6 mask form, or a prefix length
	Gateway   string // "gateway" (not Nova's, written by some generators)
	Routes    []NetworkDataRoute
	Services  []NetworkDataService
}

// NetworkDataRoute is a route of a network.
type NetworkDataRoute struct {
	Network, Netmask, Gateway string

	at int // 1 + position in the document (0: unknown), for problem paths
}

// NetworkDataService is a service entry; Weft uses type "dns".
type NetworkDataService struct {
	Type, Address string

	at int // 1 + position in the document (0: unknown)
}

// at returns the document position of an entry: its recorded one, else i.
func at(recorded, i int) int {
	if recorded > 0 {
		return recorded - 1
	}
	return i
}

// Problem is one thing in network_data.json that Weft could not use as
// written: the link or network it concerns is skipped or used without the
// bad value, as Err says. Problems become per-link verdicts at boot.
type Problem struct {
	Path string // "links[2].type"
	Link string // the link's ID, when known and the problem is that link's
	Err  error
	// Warning: the link is used, with a default in place of what was
	// written (an unknown link type taken as a NIC, a bond option at the
	// kernel's default), where cloud-init would log a warning. Otherwise
	// the entry or the value is dropped.
	Warning bool
}

func (p Problem) Error() string { return p.Path + ": " + p.Err.Error() }
func (p Problem) Unwrap() error { return p.Err }

// Raw returns the document NetworkData was parsed from.
func (n *NetworkData) Raw() []byte { return n.raw }

// ParseNetworkData reads network_data.json. Only a document that is not a
// JSON object, or whose links/networks/services are not lists, is an error;
// everything below that is read field by field, and what cannot be read
// becomes a Problem reported by Underlay.
func ParseNetworkData(b []byte) (*NetworkData, error) {
	top, err := jsonObject(b, "network_data.json")
	if err != nil {
		return nil, err
	}
	nd := &NetworkData{raw: bytes.Clone(b)}
	links, err := jsonList(top["links"])
	if err != nil {
		return nil, fmt.Errorf("network_data.json: links: %w", err)
	}
	networks, err := jsonList(top["networks"])
	if err != nil {
		return nil, fmt.Errorf("network_data.json: networks: %w", err)
	}
	services, err := jsonList(top["services"])
	if err != nil {
		return nil, fmt.Errorf("network_data.json: services: %w", err)
	}
	for i, raw := range links {
		r := nd.reader(fmt.Sprintf("links[%d]", i), raw)
		if r == nil {
			continue
		}
		l := NetworkDataLink{
			ID:             r.text("id"),
			Type:           r.text("type"),
			MAC:            r.text("ethernet_mac_address"),
			Name:           r.text("name"),
			MTU:            r.intPtr("mtu"),
			BondLinks:      r.texts("bond_links"),
			BondMode:       r.option("bond_mode"),
			BondMiimon:     r.option("bond_miimon"),
			BondHashPolicy: r.option("bond_xmit_hash_policy"),
			VLANLink:       r.text("vlan_link"),
			VLANMAC:        r.text("vlan_mac_address"),
			BondOther:      r.otherBondOptions(),
		}
		if p := r.intPtr("vlan_id"); p != nil {
			l.VLANID = *p
		}
		for k := range r.problems {
			r.problems[k].Link = l.ID
		}
		nd.problems = append(nd.problems, r.problems...)
		nd.Links = append(nd.Links, l)
		nd.linkPos = append(nd.linkPos, i)
	}
	for i, raw := range networks {
		path := fmt.Sprintf("networks[%d]", i)
		r := nd.reader(path, raw)
		if r == nil {
			continue
		}
		n := NetworkDataNetwork{
			ID:        r.text("id"),
			Type:      r.text("type"),
			Link:      r.text("link"),
			NetworkID: r.text("network_id"),
			IPAddress: r.text("ip_address"),
			Netmask:   r.text("netmask"),
			Gateway:   r.text("gateway"),
		}
		routes, err := jsonList(r.obj["routes"])
		if err != nil {
			r.problem("routes", err)
		}
		for j, raw := range routes {
			rr := nd.reader(fmt.Sprintf("%s.routes[%d]", path, j), raw)
			if rr == nil {
				continue
			}
			n.Routes = append(n.Routes, NetworkDataRoute{Network: rr.text("network"), Netmask: rr.text("netmask"), Gateway: rr.text("gateway"), at: j + 1})
			nd.problems = append(nd.problems, rr.problems...)
		}
		n.Services = nd.services(path+".services", r.obj["services"])
		nd.problems = append(nd.problems, r.problems...)
		nd.Networks = append(nd.Networks, n)
		nd.netPos = append(nd.netPos, i)
	}
	for i, raw := range services {
		r := nd.reader(fmt.Sprintf("services[%d]", i), raw)
		if r == nil {
			continue
		}
		nd.Services = append(nd.Services, NetworkDataService{Type: r.text("type"), Address: r.text("address")})
		nd.problems = append(nd.problems, r.problems...)
		nd.svcPos = append(nd.svcPos, i)
	}
	return nd, nil
}

func (nd *NetworkData) services(path string, raw json.RawMessage) []NetworkDataService {
	list, err := jsonList(raw)
	if err != nil {
		nd.problems = append(nd.problems, Problem{Path: path, Err: err})
		return nil
	}
	var out []NetworkDataService
	for i, raw := range list {
		r := nd.reader(fmt.Sprintf("%s[%d]", path, i), raw)
		if r == nil {
			continue
		}
		out = append(out, NetworkDataService{Type: r.text("type"), Address: r.text("address"), at: i + 1})
		nd.problems = append(nd.problems, r.problems...)
	}
	return out
}

// jsonList reads a JSON list; absent and null are empty.
func jsonList(raw json.RawMessage) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var l []json.RawMessage
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("want a list, got %s", jsonKind(raw))
	}
	return l, nil
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// fieldReader reads the fields of one JSON object leniently, collecting
// problems with their paths.
type fieldReader struct {
	path     string
	obj      map[string]json.RawMessage
	problems []Problem
}

func (nd *NetworkData) reader(path string, raw json.RawMessage) *fieldReader {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		nd.problems = append(nd.problems, Problem{Path: path, Err: fmt.Errorf("want an object, got %s; entry skipped", jsonKind(bytes.TrimSpace(raw)))})
		return nil
	}
	return &fieldReader{path: path, obj: obj}
}

func (r *fieldReader) problem(key string, err error) {
	r.problems = append(r.problems, Problem{Path: r.path + "." + key, Err: err})
}

func (r *fieldReader) text(key string) string {
	s, err := jsonText(r.obj[key])
	if err != nil {
		r.problem(key, fmt.Errorf("%w; ignored", err))
	}
	return s
}

// option reads a bond option: one that is not text is a warning, and the
// kernel's default is used.
func (r *fieldReader) option(key string) string {
	s, err := jsonText(r.obj[key])
	if err != nil {
		r.problems = append(r.problems, Problem{Path: r.path + "." + key, Err: fmt.Errorf("%w; the kernel's default is used", err), Warning: true})
	}
	return s
}

func (r *fieldReader) texts(key string) []string {
	list, err := jsonList(r.obj[key])
	if err != nil {
		r.problem(key, fmt.Errorf("%w; ignored", err))
		return nil
	}
	var out []string
	for i, raw := range list {
		s, err := jsonText(raw)
		if err != nil {
			r.problem(fmt.Sprintf("%s[%d]", key, i), fmt.Errorf("%w; ignored", err))
			continue
		}
		out = append(out, s)
	}
	return out
}

// intPtr reads a number written as a JSON number or a string ("100"), as
// clouds write bond_miimon and vlan_id both ways. Absent, null and "" are
// nil.
func (r *fieldReader) intPtr(key string) *int {
	raw := bytes.TrimSpace(r.obj[key])
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	s, err := jsonText(raw)
	if err != nil {
		r.problem(key, fmt.Errorf("%w; ignored", err))
		return nil
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	n, err := parseInt(s)
	if err != nil {
		r.problem(key, fmt.Errorf("%w; ignored", err))
		return nil
	}
	return &n
}

// parseInt reads an integer written as an integer or an integral float
// ("9000.0"), as some generators write numbers.
func parseInt(s string) (int, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return int(f), nil
}

// knownBondKeys are the "bond_*" keys Weft reads.
var knownBondKeys = map[string]bool{"bond_links": true, "bond_mode": true, "bond_miimon": true, "bond_xmit_hash_policy": true}

// otherBondOptions collects the "bond_*" keys Weft does not apply, as text
// (a value that is not text is kept as written).
func (r *fieldReader) otherBondOptions() map[string]string {
	var out map[string]string
	for k, raw := range r.obj {
		if !strings.HasPrefix(k, "bond_") || knownBondKeys[k] {
			continue
		}
		v, err := jsonText(raw)
		if err != nil {
			v = string(bytes.TrimSpace(raw))
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// Summary is one line for operators.
func (n *NetworkData) Summary() string {
	kinds := map[string]int{}
	for _, l := range n.Links {
		t := strings.ToLower(strings.TrimSpace(l.Type))
		if physicalTypes[t] {
			t = "phy"
		}
		kinds[t]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	types := map[string]int{}
	for _, nw := range n.Networks {
		types[nw.Type]++
	}
	var nparts []string
	for _, k := range slices.Sorted(maps.Keys(types)) {
		nparts = append(nparts, fmt.Sprintf("%d %s", types[k], k))
	}
	list := func(n int, what string, parts []string) string {
		if n == 0 {
			return plural(n, what)
		}
		return plural(n, what) + " (" + strings.Join(parts, ", ") + ")"
	}
	s := list(len(n.Links), "link", parts) + ", " + list(len(n.Networks), "network", nparts)
	var dns []string
	for _, sv := range n.Services {
		if strings.EqualFold(sv.Type, "dns") {
			dns = append(dns, sv.Address)
		}
	}
	if len(dns) > 0 {
		s += ", dns " + strings.Join(dns, " ")
	}
	return s
}
