package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// physicalTypes are the link types of an existing NIC: cloud-init's
// KNOWN_PHYSICAL_TYPES (a missing type; the VIF types Nova writes for a
// VM's port or a bare-metal "phy"; OVH's "bgpovs" and OpenTelekomCloud's
// "cascading", which upstream OpenStack does not know) and the other VIF
// types of Nova's network model, which cloud-init also takes as NICs but
// with a warning. Any other type is a NIC too, with a warning: its
// networks must not be lost for a vendor's name.
var physicalTypes = map[string]bool{
	"": true, "phy": true, "ethernet": true, "bridge": true, "ovs": true, "vif": true,
	"tap": true, "vhostuser": true, "hw_veb": true, "hyperv": true, "dvs": true,
	"bgpovs": true, "cascading": true,
	"vrouter": true, "macvtap": true, "agilio_ovs": true, "midonet": true,
	"ivs": true, "iovisor": true, "802.1qbg": true, "802.1qbh": true, "other": true,
}

// bondModeNames maps the numeric bonding modes and a known misspelling
// (Nova's documentation shows "802.1ad") to the kernel's names.
var bondModeNames = map[string]string{
	"0": "balance-rr", "1": "active-backup", "2": "balance-xor", "3": "broadcast",
	"4": "802.3ad", "5": "balance-tlb", "6": "balance-alb", "802.1ad": "802.3ad", "lacp": "802.3ad",
}

// bondHashPolicies are the kernel's transmit hash policies, by name and by
// the number sysfs also accepts.
var bondHashPolicies = map[string]string{
	"layer2": "layer2", "layer3+4": "layer3+4", "layer2+3": "layer2+3",
	"encap2+3": "encap2+3", "encap3+4": "encap3+4", "vlan+srcmac": "vlan+srcmac",
	"0": "layer2", "1": "layer3+4", "2": "layer2+3", "3": "encap2+3", "4": "encap3+4", "5": "vlan+srcmac",
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
			// Not tied to the ID: that is the first link's, which is fine.
			probs = append(probs, Problem{Path: p + ".id", Err: fmt.Errorf("%q is already the id of %s; this second link is skipped", l.ID, linkPath(j))})
			continue
		}
		byID[l.ID] = i
		c.link = Link{ID: l.ID, MTU: n.mtu(p, l, &probs)}
		switch typ := strings.ToLower(strings.TrimSpace(l.Type)); typ {
		case "bond":
			c.link.Kind = LinkBond
			c.link.BondMode, c.link.BondMiimon, c.link.BondHashPolicy = bondOptions(p, l, &probs)
			c.link.MAC = n.optMAC(p+".ethernet_mac_address", l.ID, l.MAC, &probs)
		case "vlan":
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
		default:
			if !physicalTypes[typ] {
				probs = append(probs, Problem{Path: p + ".type", Link: l.ID, Warning: true,
					Err: fmt.Errorf("%q is not a known link type; used as a NIC, as cloud-init does", l.Type)})
			}
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
		case l.VLANLink == l.ID:
			add(p+".vlan_link", l.ID, "names the VLAN itself; a VLAN sits on another link; link skipped")
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

// mtu reads a link's MTU: null and 0 (as Neutron writes for networks
// without an MTU) mean "not given"; impossible values are ignored with a
// problem.
func (n *NetworkData) mtu(p string, l NetworkDataLink, probs *[]Problem) int {
	if l.MTU == nil || *l.MTU == 0 {
		return 0
	}
	if err := CheckMTU(*l.MTU); err != nil {
		*probs = append(*probs, Problem{Path: p + ".mtu", Link: l.ID, Err: fmt.Errorf("%w; ignored, the kernel or DHCP MTU is kept", err)})
		return 0
	}
	return *l.MTU
}

// parseMAC reads the address of a NIC: an Ethernet MAC, or the 20-byte
// address of an InfiniBand (IPoIB) NIC, which cloud-init matches too.
func parseMAC(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	mac, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(mac) != 6 && len(mac) != 20 {
		return nil, fmt.Errorf("%q is not a MAC address (6 bytes) or an InfiniBand address (20 bytes)", s)
	}
	return mac, nil
}

// bondOptions normalises a bond's options (space, case, numbers for
// names). A value the kernel would refuse is a warning naming the option
// and the value, and the kernel's default is used: a bad option costs the
// option, never the bond, its VLANs and their addresses.
func bondOptions(p string, l NetworkDataLink, probs *[]Problem) (mode string, miimon int, hash string) {
	warn := func(key, format string, args ...any) {
		*probs = append(*probs, Problem{Path: p + "." + key, Link: l.ID, Err: fmt.Errorf(format, args...), Warning: true})
	}
	mode = strings.ToLower(strings.TrimSpace(l.BondMode))
	if m, ok := bondModeNames[mode]; ok {
		mode = m
	}
	switch {
	case mode == "":
		mode = "active-backup"
	case !bondModes[mode]:
		warn("bond_mode", "%q is not a bonding mode; active-backup is used", l.BondMode)
		mode = "active-backup"
	}
	if s := strings.TrimSpace(l.BondMiimon); s != "" {
		v, err := parseInt(s)
		switch {
		case err != nil:
			warn("bond_miimon", "%v; the kernel's default is used", err)
		case v < 0:
			warn("bond_miimon", "%d is negative; the kernel's default is used", v)
		default:
			miimon = v
		}
	}
	if s := strings.ToLower(strings.TrimSpace(l.BondHashPolicy)); s != "" {
		var ok bool
		if hash, ok = bondHashPolicies[s]; !ok {
			warn("bond_xmit_hash_policy", "%q is not a transmit hash policy (layer2, layer2+3, layer3+4, encap2+3, encap3+4, vlan+srcmac); the kernel's default, layer2, is used", l.BondHashPolicy)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(l.BondOther)) {
		warn(k, "%q not applied: Weft sets bond_mode, bond_miimon and bond_xmit_hash_policy only; the kernel's default is used", l.BondOther[k])
	}
	return mode, miimon, hash
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
	case "ipv4", "ipv6", "static", "static6": // cloud-init reads static and static6 as ipv4 and ipv6
		typ := strings.ToLower(nw.Type)
		v6 := typ == "ipv6" || typ == "static6"
		family := "ipv4"
		if v6 {
			family = "ipv6"
		}
		pfx, err := parseAddrMask(nw.IPAddress, nw.Netmask)
		if err != nil {
			add(p, "%v; network skipped", err)
			return
		}
		if pfx.Addr().Is6() != v6 {
			add(p+".ip_address", "%s is not an %s address; network skipped", pfx.Addr(), family)
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
				add(p+".gateway", "%s is not an %s address; ignored", gw, family)
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
