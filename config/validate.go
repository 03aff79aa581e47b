package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/strictyaml"
)

// validator checks what the decoder cannot: required fields, references
// between sections, uniqueness, addresses that must fit together.
type validator struct {
	lines map[string]int
	errs  []error
}

// fail records an error at path, with the line of the nearest enclosing
// value the document has (a missing key is reported at its parent).
func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Line: v.line(path), Err: fmt.Errorf(format, args...)})
}

func (v *validator) line(path string) int {
	for path != "" {
		if l, ok := v.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func idx(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func itoa(i int) string { return strconv.Itoa(i) }

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	hashRE  = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)
)

func (v *validator) config(c *Config) {
	v.node(c.Node)
	if c.UnderlaySpec != nil {
		v.underlay(c.UnderlaySpec)
	}
	if c.BGP != nil {
		v.bgp(c.BGP)
	}
	v.overlay(c.Overlay)
	v.networks(c.Networks)
	v.policies(c, c.Policies)
	v.endpoints(c, c.Endpoints)
	v.join(c)
	v.nodes(c)
}

func (v *validator) node(n Node) {
	if n.Hostname != "" {
		if err := checkHostname(n.Hostname); err != nil {
			v.fail("node.hostname", "%v", err)
		}
	}
	if n.RouterID.IsValid() && (!n.RouterID.Is4() || n.RouterID.IsUnspecified()) {
		v.fail("node.routerID", "%s is not a usable router ID (an IPv4 address, or auto)", n.RouterID)
	}
}

func checkHostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("hostname is %d characters, more than 253", len(h))
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("%q is not a valid hostname (labels of letters, digits and inner hyphens, up to 63 each)", h)
		}
	}
	return nil
}

// ifnameOK says whether s can be a Linux interface name (IFNAMSIZ-1 bytes,
// no '/', ':' or white space).
func ifnameOK(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n\r\x00")
}

var bondModes = map[string]bool{
	"balance-rr": true, "active-backup": true, "balance-xor": true, "broadcast": true,
	"802.3ad": true, "balance-tlb": true, "balance-alb": true,
}

func (v *validator) underlay(u *UnderlaySpec) {
	ids := map[string]int{}
	macs := map[string]int{}
	for i, l := range u.Links {
		p := idx("underlay.links", i)
		id := l.ID(i)
		if j, dup := ids[id]; dup {
			v.fail(p, "link %q is already defined at underlay.links[%d]", id, j)
		}
		ids[id] = i
		if l.Bond != nil && l.VLAN != nil {
			v.fail(p, "a link is a bond or a vlan, not both")
		}
		switch l.Kind() {
		case LinkPhy:
			if l.Match.MAC == nil && l.Match.Name == "" {
				v.fail(p+".match", "a NIC needs match.mac or match.name (or give it bond or vlan to create one)")
			}
			if l.Match.Name != "" && !ifnameOK(l.Match.Name) {
				v.fail(p+".match.name", "%q is not an interface name", l.Match.Name)
			}
			if l.Match.MAC != nil {
				if j, dup := macs[l.Match.MAC.String()]; dup {
					v.fail(p+".match.mac", "%s is already matched by underlay.links[%d]", l.Match.MAC, j)
				}
				macs[l.Match.MAC.String()] = i
			}
		default:
			if l.Match.MAC != nil || l.Match.Name != "" {
				v.fail(p+".match", "match selects an existing NIC; a bond or vlan is created and named by name")
			}
			if l.Name == "" {
				v.fail(p+".name", "required: the interface name of the bond or vlan to create")
			} else if !ifnameOK(l.Name) {
				v.fail(p+".name", "%q is not an interface name (up to 15 characters, no '/', ':' or spaces)", l.Name)
			}
		}
		if l.Bond != nil {
			bp := p + ".bond"
			if len(l.Bond.Members) == 0 {
				v.fail(bp+".members", "a bond needs at least one member link")
			}
			if l.Bond.Mode != "" && !bondModes[l.Bond.Mode] {
				v.fail(bp+".mode", "%q is not a bonding mode (balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb)", l.Bond.Mode)
			}
		}
		if l.VLAN != nil {
			if l.VLAN.Parent == "" {
				v.fail(p+".vlan.parent", "required: the link the VLAN is on")
			}
			if l.VLAN.ID == 0 {
				v.fail(p+".vlan.id", "required: the VLAN ID (1..4094)")
			}
		}
		if l.MTU != 0 {
			if err := CheckMTU(l.MTU); err != nil {
				v.fail(p+".mtu", "%v", err)
			}
		}
		for j, a := range l.Addresses {
			if a.Addr().IsUnspecified() || a.Addr().IsMulticast() {
				v.fail(idx(p+".addresses", j), "%s is not a usable interface address", a)
			}
		}
		for j, r := range l.Routes {
			rp := idx(p+".routes", j)
			if !r.To.IsValid() {
				v.fail(rp+".to", "required: the destination prefix")
			} else if r.To != r.To.Masked() {
				v.fail(rp+".to", "%s has host bits set; did you mean %s?", r.To, r.To.Masked())
			}
			if r.Via.IsValid() && r.To.IsValid() && r.Via.Is4() != r.To.Addr().Is4() {
				v.fail(rp+".via", "%s is not of the address family of %s", r.Via, r.To)
			}
		}
		if l.Gateway.IsValid() && (l.Gateway.IsUnspecified() || l.Gateway.IsMulticast()) {
			v.fail(p+".gateway", "%s is not a usable gateway", l.Gateway)
		}
	}
	// References need every ID known, so they are checked afterwards.
	used := map[string]string{}
	for i, l := range u.Links {
		p := idx("underlay.links", i)
		if l.Bond != nil {
			for j, m := range l.Bond.Members {
				mp := idx(p+".bond.members", j)
				k, ok := ids[m]
				switch {
				case !ok:
					v.fail(mp, "no underlay link is called %q", m)
				case u.Links[k].Kind() != LinkPhy:
					v.fail(mp, "%q is not a NIC; bond members are NICs", m)
				case used[m] != "":
					v.fail(mp, "%q is already a member of %s", m, used[m])
				default:
					used[m] = l.ID(i)
				}
			}
		}
		if l.VLAN != nil && l.VLAN.Parent != "" {
			k, ok := ids[l.VLAN.Parent]
			switch {
			case !ok:
				v.fail(p+".vlan.parent", "no underlay link is called %q", l.VLAN.Parent)
			case u.Links[k].Kind() == LinkVLAN:
				v.fail(p+".vlan.parent", "%q is a VLAN; VLANs sit on a NIC or a bond", l.VLAN.Parent)
			}
		}
	}
}

func (v *validator) bgp(b *BGP) {
	if b.ASN == 0 {
		v.fail("bgp.asn", "required: the node's AS number (1..4294967295)")
	}
	if b.RouterID.IsValid() && (!b.RouterID.Is4() || b.RouterID.IsUnspecified()) {
		v.fail("bgp.routerID", "%s is not a usable router ID (an IPv4 address, or auto)", b.RouterID)
	}
	v.holdTime("bgp.holdTime", b.HoldTime)
	if b.Keepalive != 0 {
		hold := b.HoldTime
		if hold == 0 {
			hold = 90
		}
		if b.Keepalive*3 > hold {
			v.fail("bgp.keepalive", "%d s is more than a third of the hold time (%d s)", b.Keepalive, hold)
		}
	}
	if len(b.Controllers) == 0 {
		v.fail("bgp.controllers", "required: at least one controller to peer with")
	}
	v.controllers("bgp.controllers", b.Controllers)
	switch b.TunnelAttribute {
	case "", TunnelAttrFirst, TunnelAttrAll, TunnelAttrNone:
	default:
		v.fail("bgp.tunnelAttribute", "%q: want first, all or none", b.TunnelAttribute)
	}
}

// controllers checks a list of BGP peers at path.
func (v *validator) controllers(path string, cs []Controller) {
	seen := map[netip.Addr]int{}
	for i, c := range cs {
		p := idx(path, i)
		switch {
		case !c.Address.IsValid():
			v.fail(p+".address", "required: the controller's IP address")
		case c.Address.IsUnspecified() || c.Address.IsMulticast() || c.Address.IsLoopback():
			v.fail(p+".address", "%s is not a usable peer address", c.Address)
		default:
			if j, dup := seen[c.Address]; dup {
				v.fail(p+".address", "%s is already %s[%d]", c.Address, path, j)
			}
			seen[c.Address] = i
		}
		if len(c.Password) > 80 {
			v.fail(p+".password", "%d characters; TCP MD5 keys are at most 80", len(c.Password))
		}
		v.holdTime(p+".holdTime", c.HoldTime)
	}
}

// holdTime checks RFC 4271: zero (no keepalives) or at least 3 s. Zero here
// means "default", so only 1 and 2 are refused.
func (v *validator) holdTime(path string, h int) {
	if h == 1 || h == 2 {
		v.fail(path, "%d s is not a valid hold time (0 = default, or 3..65535)", h)
	}
}

func (v *validator) overlay(o Overlay) {
	seen := map[Encapsulation]int{}
	for i, e := range o.Encapsulation {
		if j, dup := seen[e]; dup {
			v.fail(idx("overlay.encapsulation", i), "%s is already listed at overlay.encapsulation[%d]", e, j)
		}
		seen[e] = i
	}
	for i, p := range o.TunnelEndpoints {
		if p != p.Masked() {
			v.fail(idx("overlay.tunnelEndpoints", i), "%v has host bits set (want %v)", p, p.Masked())
		}
	}
}

func (v *validator) networks(nets []VirtualNetwork) {
	names := map[string]int{}
	vnis := map[uint32]int{}
	for i, n := range nets {
		p := idx("networks", i)
		switch {
		case n.Name == "":
			v.fail(p+".name", "required")
		case !nameRE.MatchString(n.Name):
			v.fail(p+".name", "%q is not a network name (letters, digits, '.', '_', '-'; up to 63)", n.Name)
		default:
			if j, dup := names[n.Name]; dup {
				v.fail(p+".name", "network %q is already defined at networks[%d]", n.Name, j)
			}
			names[n.Name] = i
		}
		if n.VNI == 0 {
			v.fail(p+".vni", "required: the network's VNI (1..16777215)")
		} else {
			if j, dup := vnis[n.VNI]; dup {
				v.fail(p+".vni", "VNI %d is already used by networks[%d]", n.VNI, j)
			}
			vnis[n.VNI] = i
		}
		v.routeTargets(p+".routeTargets.import", n.RouteTargets.Import)
		v.routeTargets(p+".routeTargets.export", n.RouteTargets.Export)
		for j, s := range n.Subnets {
			sp := idx(p+".subnets", j)
			if s != s.Masked() {
				v.fail(sp, "%s has host bits set; did you mean %s?", s, s.Masked())
				continue
			}
			for k := range j {
				if o := n.Subnets[k]; o.Overlaps(s) {
					v.fail(sp, "%s overlaps %s (subnets[%d])", s, o, k)
				}
			}
		}
		if n.Gateway.IsValid() {
			if len(n.Subnets) == 0 {
				v.fail(p+".gateway", "a gateway needs subnets to sit in")
			} else if s, ok := subnetOf(n.Subnets, n.Gateway); !ok {
				v.fail(p+".gateway", "%s is in none of the network's subnets", n.Gateway)
			} else if !hostAddr(s, n.Gateway) {
				v.fail(p+".gateway", "%s is the network or broadcast address of %s", n.Gateway, s)
			}
		}
	}
}

func (v *validator) routeTargets(path string, rts []RouteTarget) {
	seen := map[RouteTarget]int{}
	for i, rt := range rts {
		if j, dup := seen[rt]; dup {
			v.fail(idx(path, i), "%s is already listed at %s[%d]", rt, path, j)
		}
		seen[rt] = i
	}
}

func subnetOf(subnets []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, s := range subnets {
		if s.Contains(a) {
			return s, true
		}
	}
	return netip.Prefix{}, false
}

// hostAddr says whether a is usable as a host address of s: not the network
// address, nor the IPv4 broadcast address (for prefixes shorter than /31).
func hostAddr(s netip.Prefix, a netip.Addr) bool {
	if s.Bits() >= a.BitLen()-1 {
		return true
	}
	if a == s.Masked().Addr() {
		return false
	}
	if a.Is4() {
		b := a.As4()
		m := s.Masked().Addr().As4()
		host := 32 - s.Bits()
		bcast := (uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])) | (1<<host - 1)
		return uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]) != bcast
	}
	return true
}

func (v *validator) policies(c *Config, ps []Policy) {
	for i, p := range ps {
		pp := idx("policies", i)
		for _, side := range []struct{ key, name string }{{"from", p.From}, {"to", p.To}} {
			switch {
			case side.name == "":
				v.fail(pp+"."+side.key, "required: a network name")
			case c.Network(side.name) == nil:
				v.fail(pp+"."+side.key, "no network is called %q%s", side.name, closestNetwork(c, side.name))
			}
		}
		if len(p.Allow) == 0 {
			v.fail(pp+".allow", "required: at least one rule (a policy without rules allows nothing, like no policy)")
		}
		for j, r := range p.Allow {
			rp := idx(pp+".allow", j)
			if len(r.Ports) > 0 && r.Protocol != ProtoTCP && r.Protocol != ProtoUDP {
				proto := r.Protocol
				if proto == "" {
					proto = ProtoAny
				}
				v.fail(rp+".ports", "ports need protocol tcp or udp, not %s", proto)
			}
			if r.CIDR.IsValid() {
				if r.CIDR != r.CIDR.Masked() {
					v.fail(rp+".cidr", "%s has host bits set; did you mean %s?", r.CIDR, r.CIDR.Masked())
				} else if n := c.Network(p.To); n != nil && len(n.Subnets) > 0 && !overlapsAny(n.Subnets, r.CIDR) {
					v.fail(rp+".cidr", "%s is outside every subnet of network %q", r.CIDR, p.To)
				}
			}
		}
	}
}

func overlapsAny(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q.Overlaps(p) {
			return true
		}
	}
	return false
}

func closestNetwork(c *Config, name string) string {
	names := make([]string, len(c.Networks))
	for i, n := range c.Networks {
		names[i] = n.Name
	}
	best, ok := strictyaml.Closest(name, names)
	if !ok {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func (v *validator) endpoints(c *Config, eps []Endpoint) {
	names := map[string]int{}
	type key struct {
		net  string
		addr netip.Addr
	}
	addrs := map[key]int{}
	for i, e := range eps {
		p := idx("endpoints", i)
		switch {
		case e.Name == "":
			v.fail(p+".name", "required")
		case !nameRE.MatchString(e.Name):
			v.fail(p+".name", "%q is not an endpoint name (letters, digits, '.', '_', '-'; up to 63)", e.Name)
		default:
			if j, dup := names[e.Name]; dup {
				v.fail(p+".name", "endpoint %q is already defined at endpoints[%d]", e.Name, j)
			}
			names[e.Name] = i
		}
		var n *VirtualNetwork
		if e.Network == "" {
			v.fail(p+".network", "required: the network the endpoint is in")
		} else if n = c.Network(e.Network); n == nil {
			v.fail(p+".network", "no network is called %q%s", e.Network, closestNetwork(c, e.Network))
		}
		switch {
		case !e.Address.IsValid():
			v.fail(p+".address", "required: the endpoint's address with prefix length (10.0.100.3/24)")
		case e.Address.Addr().IsUnspecified() || e.Address.Addr().IsMulticast() || e.Address.Addr().IsLoopback():
			v.fail(p+".address", "%s is not a usable endpoint address", e.Address)
		default:
			if n != nil && len(n.Subnets) > 0 {
				if s, ok := subnetOf(n.Subnets, e.Address.Addr()); !ok {
					v.fail(p+".address", "%s is in none of the subnets of network %q (%s)", e.Address.Addr(), n.Name, prefixList(n.Subnets))
				} else if !hostAddr(s, e.Address.Addr()) {
					v.fail(p+".address", "%s is the network or broadcast address of %s", e.Address.Addr(), s)
				} else if n.Gateway == e.Address.Addr() {
					v.fail(p+".address", "%s is the gateway of network %q", e.Address.Addr(), n.Name)
				}
			}
			k := key{e.Network, e.Address.Addr()}
			if j, dup := addrs[k]; dup {
				o := eps[j]
				switch {
				case !e.Anycast || !o.Anycast:
					v.fail(p+".address", "%s is already endpoints[%d]'s address in network %q (set anycast: true on both to share it)", e.Address.Addr(), j, e.Network)
				case e.Node == "" || o.Node == "" || e.Node == o.Node:
					v.fail(p+".node", "anycast address %s: endpoints[%d] is on the same node; anycast endpoints need node set, one per node", e.Address.Addr(), j)
				}
			}
			addrs[k] = i
		}
		if e.MAC != nil && (e.MAC[0]&1 == 1 || isZero(e.MAC)) {
			v.fail(p+".mac", "%s is not a unicast MAC address", e.MAC)
		}
		if e.Node != "" {
			if err := checkHostname(e.Node); err != nil {
				v.fail(p+".node", "%v", err)
			}
		}
		if e.Netns != "" && (strings.ContainsAny(e.Netns, "/\x00") || e.Netns == "." || e.Netns == ".." || len(e.Netns) > 255) {
			v.fail(p+".netns", "%q is not a network namespace name", e.Netns)
		}
	}
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func (v *validator) join(c *Config) {
	j := c.Join
	if k := j.Kubernetes; k != nil {
		v.kubernetes(c, k)
	}
	if o := j.OpenStack; o != nil {
		v.openstack(c, o)
	}
}

func (v *validator) kubernetes(c *Config, k *KubernetesJoin) {
	if k.DefaultNetwork != "" && c.Network(k.DefaultNetwork) == nil {
		v.fail("join.kubernetes.defaultNetwork", "no network is called %q", k.DefaultNetwork)
	}
	if k.Kubeconfig != "" {
		if !strings.HasPrefix(k.Kubeconfig, "/") {
			v.fail("join.kubernetes.kubeconfig", "%q is not an absolute path", k.Kubeconfig)
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"server", k.Server != ""}, {"token", k.Token != ""}, {"caCertHashes", len(k.CACertHashes) > 0}} {
			if f.set {
				v.fail("join.kubernetes."+f.name, "give kubeconfig (a node with a credential) or server, token and caCertHashes (a bootstrap), not both")
			}
		}
		return
	}
	v.url("join.kubernetes.server", k.Server, true)
	switch {
	case k.Token == "":
		v.fail("join.kubernetes.token", "required: a bootstrap token")
	case !tokenRE.MatchString(k.Token):
		v.fail("join.kubernetes.token", "not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})")
	}
	if len(k.CACertHashes) == 0 {
		v.fail("join.kubernetes.caCertHashes", "required: at least one sha256:<hex> hash of the cluster CA's public key")
	}
	for i, h := range k.CACertHashes {
		if !hashRE.MatchString(h) {
			v.fail(idx("join.kubernetes.caCertHashes", i), "%q is not sha256:<64 hex digits>", h)
		}
	}
}

func (v *validator) url(path, s string, httpsOnly bool) {
	if s == "" {
		v.fail(path, "required: a URL")
		return
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && (httpsOnly || u.Scheme != "http")) {
		want := "an http(s):// URL"
		if httpsOnly {
			want = "an https:// URL"
		}
		v.fail(path, "%q is not %s", s, want)
	}
}
