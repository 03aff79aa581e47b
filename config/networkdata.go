package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
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

	BondLinks      []string // "bond_links": member link IDs
	BondMode       string   // "bond_mode"
	BondMiimon     int      // "bond_miimon", a number or a string
	BondHashPolicy string   // "bond_xmit_hash_policy"

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
	Link string // the link's ID, when known
	Err  error
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
			BondMode:       r.text("bond_mode"),
			BondHashPolicy: r.text("bond_xmit_hash_policy"),
			VLANLink:       r.text("vlan_link"),
			VLANMAC:        r.text("vlan_mac_address"),
		}
		if p := r.intPtr("bond_miimon"); p != nil {
			l.BondMiimon = *p
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
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		r.problem(key, fmt.Errorf("%q is not an integer; ignored", s))
		return nil
	}
	n := int(f)
	return &n
}

// physicalTypes are the link types of an existing NIC (Nova writes the VIF
// type: a bare-metal "phy", or the hypervisor's plumbing of a VM's port).
var physicalTypes = map[string]bool{
	"phy": true, "ethernet": true, "bridge": true, "ovs": true, "vif": true,
	"tap": true, "vhostuser": true, "hw_veb": true, "hyperv": true, "dvs": true,
	"vrouter": true, "macvtap": true, "agilio_ovs": true, "midonet": true,
	"ivs": true, "iovisor": true, "802.1qbg": true, "802.1qbh": true, "other": true,
}

// bondModeNames maps the numeric bonding modes and a known misspelling
// (Nova's documentation shows "802.1ad") to the kernel's names.
var bondModeNames = map[string]string{
	"0": "balance-rr", "1": "active-backup", "2": "balance-xor", "3": "broadcast",
	"4": "802.3ad", "5": "balance-tlb", "6": "balance-alb", "802.1ad": "802.3ad", "lacp": "802.3ad",
}

// Underlay turns network_data.json into the normalised underlay. Every link
// and network that can be used is returned; each one that cannot (or a
// value that is ignored) is a Problem saying what was done instead.
func (n *NetworkData) Underlay() (Underlay, []Problem) {
	probs := slices.Clone(n.problems)
	add := func(path, link string, format string, args ...any) {
		probs = append(probs, Problem{Path: path, Link: link, Err: fmt.Errorf(format, args...)})
	}
	u := Underlay{Source: "network_data.json"}

	type cand struct {
		link Link
		ok   bool
	}
	cands := make([]cand, len(n.Links))
	byID := map[string]int{}
	names := map[string]bool{}
	macs := map[string]int{}
	linkPath := func(i int) string { return fmt.Sprintf("links[%d]", pos(n.linkPos, i, len(n.Links))) }
	for i, l := range n.Links {
		p := linkPath(i)
		c := &cands[i]
		if l.ID == "" {
			add(p+".id", "", "missing; link skipped")
			continue
		}
		if j, dup := byID[l.ID]; dup {
			add(p+".id", l.ID, "%q is already %s; link skipped", l.ID, linkPath(j))
			continue
		}
		byID[l.ID] = i
		c.link = Link{ID: l.ID, MTU: n.mtu(p, l, &probs)}
		typ := strings.ToLower(l.Type)
		switch {
		case physicalTypes[typ]:
			c.link.Kind = LinkPhy
			mac, err := parseMAC(l.MAC)
			switch {
			case err == nil:
				if j, dup := macs[mac.String()]; dup {
					add(p+".ethernet_mac_address", l.ID, "%s is already matched by %s; link skipped", mac, linkPath(j))
					continue
				}
				macs[mac.String()] = i
				c.link.Match.MAC = mac
			case l.Name != "" && ifnameOK(l.Name):
				c.link.Match.Name = l.Name
				if l.MAC != "" {
					add(p+".ethernet_mac_address", l.ID, "%v; matching by name %q instead", err, l.Name)
				}
			default:
				add(p+".ethernet_mac_address", l.ID, "%v; a NIC is matched by its MAC; link skipped", err)
				continue
			}
		case typ == "bond":
			c.link.Kind = LinkBond
			c.link.BondMiimon = l.BondMiimon
			if l.BondMiimon < 0 {
				add(p+".bond_miimon", l.ID, "%d is negative; the kernel default is used", l.BondMiimon)
				c.link.BondMiimon = 0
			}
			c.link.BondMode = strings.ToLower(l.BondMode)
			if m, ok := bondModeNames[c.link.BondMode]; ok {
				c.link.BondMode = m
			}
			if c.link.BondMode == "" {
				c.link.BondMode = "active-backup"
			} else if !bondModes[c.link.BondMode] {
				add(p+".bond_mode", l.ID, "%q is not a bonding mode; active-backup is used", l.BondMode)
				c.link.BondMode = "active-backup"
			}
			c.link.BondHashPolicy = l.BondHashPolicy
			c.link.MAC = n.optMAC(p+".ethernet_mac_address", l.ID, l.MAC, &probs)
		case typ == "vlan":
			c.link.Kind = LinkVLAN
			if l.VLANID < 1 || l.VLANID > 4094 {
				add(p+".vlan_id", l.ID, "%d is not a VLAN ID (1..4094); link skipped", l.VLANID)
				continue
			}
			c.link.VLANID = l.VLANID
			if l.VLANMAC != "" {
				c.link.MAC = n.optMAC(p+".vlan_mac_address", l.ID, l.VLANMAC, &probs)
			} else {
				c.link.MAC = n.optMAC(p+".ethernet_mac_address", l.ID, l.MAC, &probs)
			}
		case typ == "":
			add(p+".type", l.ID, "missing; link skipped")
			continue
		default:
			add(p+".type", l.ID, "%q is not a supported link type; link skipped", l.Type)
			continue
		}
		c.ok = true
	}
	usable := func(id string) (int, bool) {
		i, ok := byID[id]
		return i, ok && cands[i].ok
	}
	// Bonds and VLANs refer to other links; resolve them after all links
	// are known (they may be listed in any order). Bonds first: VLANs sit
	// on them.
	member := map[string]string{}
	for i, l := range n.Links {
		c := &cands[i]
		if !c.ok || c.link.Kind != LinkBond {
			continue
		}
		p := linkPath(i)
		for j, m := range l.BondLinks {
			mp := fmt.Sprintf("%s.bond_links[%d]", p, j)
			k, ok := usable(m)
			switch {
			case !ok && hasLink(byID, m):
				add(mp, l.ID, "member %q was skipped; bond has one member less", m)
			case !ok:
				add(mp, l.ID, "no link is called %q; bond has one member less", m)
			case cands[k].link.Kind != LinkPhy:
				add(mp, l.ID, "member %q is a %s, not a NIC; bond has one member less", m, cands[k].link.Kind)
			case member[m] != "":
				add(mp, l.ID, "member %q is already in bond %q; bond has one member less", m, member[m])
			default:
				member[m] = l.ID
				c.link.BondMembers = append(c.link.BondMembers, m)
			}
		}
		if len(c.link.BondMembers) == 0 {
			add(p+".bond_links", l.ID, "no usable member; link skipped")
			c.ok = false
			continue
		}
		c.link.Name = n.ifname(l.ID, "bond", i, names)
	}
	for i, l := range n.Links {
		c := &cands[i]
		if !c.ok || c.link.Kind != LinkVLAN {
			continue
		}
		p := linkPath(i)
		k, ok := usable(l.VLANLink)
		switch {
		case l.VLANLink == "":
			add(p+".vlan_link", l.ID, "missing; link skipped")
		case !ok && hasLink(byID, l.VLANLink):
			add(p+".vlan_link", l.ID, "parent %q was skipped; link skipped", l.VLANLink)
		case !ok:
			add(p+".vlan_link", l.ID, "no link is called %q; link skipped", l.VLANLink)
		case cands[k].link.Kind == LinkVLAN:
			add(p+".vlan_link", l.ID, "parent %q is a VLAN; stacked VLANs are not supported; link skipped", l.VLANLink)
		default:
			c.link.VLANParent = l.VLANLink
			c.link.Name = n.ifname(l.ID, "vlan", l.VLANID, names)
			continue
		}
		c.ok = false
	}
	// A NIC in a bond has no addressing of its own: networks attach to
	// the bond.
	for i, nw := range n.Networks {
		p := fmt.Sprintf("networks[%d]", pos(n.netPos, i, len(n.Networks)))
		k, ok := usable(nw.Link)
		switch {
		case nw.Link == "":
			add(p+".link", "", "missing; network skipped")
			continue
		case !ok && hasLink(byID, nw.Link):
			add(p+".link", nw.Link, "link %q was skipped; network skipped", nw.Link)
			continue
		case !ok:
			add(p+".link", nw.Link, "no link is called %q; network skipped", nw.Link)
			continue
		case member[nw.Link] != "":
			add(p+".link", nw.Link, "link %q is a member of bond %q; network skipped", nw.Link, member[nw.Link])
			continue
		}
		n.applyNetwork(p, nw, &cands[k].link, &probs)
	}
	for i, s := range n.Services {
		if !strings.EqualFold(s.Type, "dns") {
			continue
		}
		a, err := netip.ParseAddr(s.Address)
		if err != nil {
			add(fmt.Sprintf("services[%d].address", pos(n.svcPos, i, len(n.Services))), "", "%q is not an IP address; ignored", s.Address)
			continue
		}
		if !slices.Contains(u.DNS, a) {
			u.DNS = append(u.DNS, a)
		}
	}
	for i := range cands {
		if cands[i].ok {
			u.Links = append(u.Links, cands[i].link)
		}
	}
	return u, probs
}

func hasLink(byID map[string]int, id string) bool {
	_, ok := byID[id]
	return ok
}

// mtu reads a link's MTU: null means "not given"; 0 (as Neutron writes for
// networks without an MTU) and impossible values are ignored with a problem.
func (n *NetworkData) mtu(p string, l NetworkDataLink, probs *[]Problem) int {
	switch {
	case l.MTU == nil:
		return 0
	case *l.MTU == 0:
		*probs = append(*probs, Problem{Path: p + ".mtu", Link: l.ID, Err: errors.New("0 is not an MTU; ignored, the kernel or DHCP MTU is kept")})
		return 0
	}
	if err := CheckMTU(*l.MTU); err != nil {
		*probs = append(*probs, Problem{Path: p + ".mtu", Link: l.ID, Err: fmt.Errorf("%w; ignored, the kernel or DHCP MTU is kept", err)})
		return 0
	}
	return *l.MTU
}

func parseMAC(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	mac, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not a MAC address", s)
	}
	return mac, nil
}

// optMAC reads the MAC a bond or VLAN should get; a bad one is ignored.
func (n *NetworkData) optMAC(path, id, s string, probs *[]Problem) net.HardwareAddr {
	if s == "" {
		return nil
	}
	mac, err := parseMAC(s)
	if err != nil {
		*probs = append(*probs, Problem{Path: path, Link: id, Err: fmt.Errorf("%v; the kernel's MAC is kept", err)})
		return nil
	}
	return mac
}

// ifname picks the interface name of a created link: its ID when that is a
// valid name, else kind and number ("bond1", "vlan101").
func (n *NetworkData) ifname(id, kind string, num int, used map[string]bool) string {
	name := id
	if !ifnameOK(name) || used[name] {
		name = kind + strconv.Itoa(num)
		for k := 1; used[name]; k++ {
			name = fmt.Sprintf("%s%d-%d", kind, num, k)
		}
	}
	used[name] = true
	return name
}

func (n *NetworkData) applyNetwork(p string, nw NetworkDataNetwork, l *Link, probs *[]Problem) {
	add := func(path, format string, args ...any) {
		*probs = append(*probs, Problem{Path: path, Link: l.ID, Err: fmt.Errorf(format, args...)})
	}
	switch strings.ToLower(nw.Type) {
	case "ipv4", "ipv6":
		v6 := strings.EqualFold(nw.Type, "ipv6")
		pfx, err := parseAddrMask(nw.IPAddress, nw.Netmask)
		if err != nil {
			add(p, "%v; network skipped", err)
			return
		}
		if pfx.Addr().Is6() != v6 {
			add(p+".ip_address", "%s is not an %s address; network skipped", pfx.Addr(), nw.Type)
			return
		}
		if !slices.Contains(l.Addresses, pfx) {
			l.Addresses = append(l.Addresses, pfx)
		}
		for j, r := range nw.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, at(r.at, j))
			dst, err := parseAddrMask(r.Network, r.Netmask)
			if err != nil {
				add(rp, "%v; route skipped", err)
				continue
			}
			gw, err := netip.ParseAddr(r.Gateway)
			if err != nil || gw.Zone() != "" {
				add(rp+".gateway", "%q is not an IP address; route skipped", r.Gateway)
				continue
			}
			if gw.Is4() != dst.Addr().Is4() {
				add(rp+".gateway", "%s is not of the address family of %s; route skipped", gw, dst)
				continue
			}
			l.Routes = append(l.Routes, Route{Dst: dst.Masked(), Gateway: gw})
		}
		if nw.Gateway != "" {
			gw, err := netip.ParseAddr(nw.Gateway)
			switch {
			case err != nil || gw.Zone() != "":
				add(p+".gateway", "%q is not an IP address; ignored", nw.Gateway)
			case gw.Is6() != v6:
				add(p+".gateway", "%s is not an %s address; ignored", gw, nw.Type)
			case !hasDefault(l.Routes, v6):
				l.Routes = append(l.Routes, Route{Dst: defaultRoute(gw), Gateway: gw})
			}
		}
	case "ipv4_dhcp":
		l.DHCP4 = true
	case "ipv6_slaac", "ipv6_dhcpv6-stateless":
		l.SLAAC = true
	case "ipv6_dhcp", "ipv6_dhcpv6-stateful":
		l.SLAAC = true
		add(p+".type", "%s: DHCPv6 is not supported; the link accepts router advertisements (SLAAC) only", nw.Type)
	case "":
		add(p+".type", "missing; network skipped")
		return
	default:
		add(p+".type", "%q is not a supported network type; network skipped", nw.Type)
		return
	}
	for j, s := range nw.Services {
		if !strings.EqualFold(s.Type, "dns") {
			continue
		}
		a, err := netip.ParseAddr(s.Address)
		if err != nil {
			add(fmt.Sprintf("%s.services[%d].address", p, at(s.at, j)), "%q is not an IP address; ignored", s.Address)
			continue
		}
		if !slices.Contains(l.DNS, a) {
			l.DNS = append(l.DNS, a)
		}
	}
}

func hasDefault(rs []Route, v6 bool) bool {
	for _, r := range rs {
		if r.Dst.Bits() == 0 && r.Dst.Addr().Is6() == v6 {
			return true
		}
	}
	return false
}

// parseAddrMask reads an address with a netmask in any of the forms
// generators write: "10.0.0.5" + "255.255.255.0", "10.0.0.5" + "24",
// "10.0.0.5/24" (netmask empty), "2001:db8::5" + "ffff:ffff:ffff:ffff::".
func parseAddrMask(addr, mask string) (netip.Prefix, error) {
	addr, mask = strings.TrimSpace(addr), strings.TrimSpace(mask)
	if a, b, ok := strings.Cut(addr, "/"); ok {
		if mask == "" {
			mask = b
		}
		addr = a
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("ip_address %q is not an IP address", addr)
	}
	a = a.Unmap()
	if mask == "" {
		return netip.Prefix{}, fmt.Errorf("netmask missing for %s", a)
	}
	bits := -1
	if n, err := strconv.Atoi(strings.TrimPrefix(mask, "/")); err == nil {
		bits = n
	} else if m, err := netip.ParseAddr(mask); err == nil && m.Zone() == "" {
		m = m.Unmap()
		if m.Is4() == a.Is4() {
			ones, size := net.IPMask(m.AsSlice()).Size()
			if size != 0 {
				bits = ones
			}
		}
	}
	if bits < 0 || bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("netmask %q is not a mask for %s", mask, a)
	}
	return netip.PrefixFrom(a, bits), nil
}

// Summary is one line for operators.
func (n *NetworkData) Summary() string {
	kinds := map[string]int{}
	for _, l := range n.Links {
		t := strings.ToLower(l.Type)
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
