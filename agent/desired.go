package agent

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
)

// Path is one route a peer advertised, reduced to what forwarding needs:
// where the prefix lives (the remote vRouter's underlay address) and how to
// reach it with each encapsulation the remote offers. The VPN route (label)
// and the EVPN type-5 route (VNI) of one remote endpoint share RD and
// prefix and are merged into one Path.
type Path struct {
	RD       string // the remote's route distinguisher, as printed
	Prefix   netip.Prefix
	NextHop  netip.Addr // remote underlay: the route's tunnel endpoint (bgp.Route.Endpoint)
	From     netip.Addr // the BGP peer the path came from
	RTs      []bgp.RouteTarget
	OriginVN uint32 // the network the route comes from (its VNI); 0 = unknown

	// MPLS: from the VPN route; Encaps are its encapsulation communities
	// (empty: none advertised, read as MPLSoGRE per RFC 4364 practice).
	Label  uint32
	Encaps []packet.Encap
	HasVPN bool

	// VXLAN: from the EVPN type-5 route.
	VNI       uint32
	RouterMAC packet.MAC
	HasEVPN   bool
}

// LocalEndpoint is an endpoint this node hosts, as the agent has placed it.
type LocalEndpoint struct {
	Name    string
	Network string
	Address netip.Prefix
	MAC     packet.MAC // requested; zero = the vRouter picks
	Netns   string
	Anycast bool
	// Address6 is a CNI attachment's IPv6 address beside its IPv4
	// Address (a dual-stack pod); zero = none.
	Address6 netip.Prefix
	// IfName is the interface's name in Netns; "" = eth0.
	IfName string
	// AllowedSources are further prefixes the endpoint may send from
	// (Neutron's allowed address pairs); they are routed to it too.
	AllowedSources []netip.Prefix
	// NeutronPort is the Neutron port the endpoint came from
	// (bootstrap/openstack), "" for others.
	NeutronPort string
	// Device is the existing host netdev the vRouter attaches to with
	// AF_PACKET (a VM's tap); "" = a TAP in Netns.
	Device string
}

// addresses are the endpoint's addresses, Address first.
func (ep LocalEndpoint) addresses() []netip.Prefix {
	if ep.Address6.IsValid() {
		return []netip.Prefix{ep.Address, ep.Address6}
	}
	return []netip.Prefix{ep.Address}
}

// routed are the prefixes that lead to the endpoint: its addresses (host
// routes) and its allowed sources, but for "any" (a Neutron port without
// port security may send from anywhere; it does not become the network's
// default route).
func (ep LocalEndpoint) routed() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range ep.addresses() {
		out = append(out, hostPrefix(a.Addr()))
	}
	for _, a := range ep.AllowedSources {
		if a.Bits() > 0 {
			out = append(out, a)
		}
	}
	return out
}

// samePlacement reports whether two endpoints differ at most in what the
// vRouter can change on a running port (allowed sources, origin).
func (ep LocalEndpoint) samePlacement(o LocalEndpoint) bool {
	return ep.Name == o.Name && ep.Network == o.Network && ep.Address == o.Address && ep.Address6 == o.Address6 && ep.MAC == o.MAC &&
		ep.Netns == o.Netns && ep.IfName == o.IfName && ep.Anycast == o.Anycast && ep.Device == o.Device
}

// Inputs are everything desired state is computed from.
type Inputs struct {
	Config    *config.Config
	Underlay  netip.Addr // this node's
	Endpoints []LocalEndpoint
	Paths     []Path
	// Encaps this vRouter has tunnels for (a subset of the config's).
	Tunnels []packet.Encap
}

// Desired is the vRouter state the agent wants, by semantic key; IDs are
// assigned afterwards (MakePlan, plan.go) so that a restart reuses what is installed.
type Desired struct {
	VRFs  map[string]*vrouterv1.Vrf // by network name
	Ports map[string]*vrouterv1.Port
	// PortNetwork is each endpoint's network.
	PortNetwork map[string]string
	NextHops    map[string]*vrouterv1.NextHop // by nhKey
	// Composite members are nhKeys here; they become IDs when assigned.
	Composites map[string][]string
	Routes     map[routeKey]string // -> nhKey
	Labels     map[string]string   // endpoint name -> nhKey of its port
	VNIs       map[uint32]string   // vni -> network name
	Rules      []*vrouterv1.Rule
	// ImportTargets are the route targets whose routes some VRF takes: a
	// hosted network's imports and the exports of the networks it is
	// joined with by policy, sorted. With route target constraint the
	// speaker advertises exactly these (RFC 4684).
	ImportTargets []bgp.RouteTarget
	// Imported counts, per network with a VRF here, the received paths
	// it imports and those of them that became a route.
	Imported map[string]PathCounts
}

// PathCounts are a network's received paths: Received, those its VRF
// imports (by route target, or the origin VN of a network joined to it;
// not our own routes reflected back); Accepted, those of them with an
// encapsulation both ends have, which became a route (several paths to
// one prefix make one ECMP route).
type PathCounts struct{ Received, Accepted int }

type routeKey struct {
	Network string
	Prefix  netip.Prefix
}

// nhKey names a next hop by what it does.
func portNHKey(endpoint string) string { return "port:" + endpoint }

// tunnelNHKey is "tunnel:ENCAP:UNDERLAY:LABEL:VNI:RMAC:NETWORK", built
// without fmt: it runs for every received path at every reconcile.
func tunnelNHKey(enc packet.Encap, underlay netip.Addr, label, vni uint32, rmac packet.MAC, network uint32) string {
	b := make([]byte, 0, 64)
	b = append(b, "tunnel:"...)
	b = append(b, enc.String()...)
	b = append(b, ':')
	b = underlay.AppendTo(b)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(label), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(vni), 10)
	b = append(b, ':')
	b = append(b, rmac.String()...)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(network), 10)
	return string(b)
}

func compositeNHKey(members []string, network uint32) string {
	return "ecmp:" + strconv.FormatUint(uint64(network), 10) + ":" + strings.Join(members, ",")
}

// Compute derives the desired vRouter state.
//
// A network gets a VRF on this node when it has a local endpoint. A VRF
// holds the routes of its own network, of every network whose exported
// route targets it imports, and of every network a policy connects it with
// (either way: replies need the route back; policy decides what passes).
// Several paths to one prefix become an ECMP next hop.
func Compute(in Inputs) *Desired {
	c := in.Config
	d := &Desired{
		VRFs: map[string]*vrouterv1.Vrf{}, Ports: map[string]*vrouterv1.Port{}, PortNetwork: map[string]string{},
		NextHops: map[string]*vrouterv1.NextHop{}, Composites: map[string][]string{},
		Routes: map[routeKey]string{}, Labels: map[string]string{}, VNIs: map[uint32]string{},
		Imported: map[string]PathCounts{},
	}
	nets := map[string]*config.VirtualNetwork{}
	byVNI := map[uint32]string{}
	for i := range c.Networks {
		n := &c.Networks[i]
		nets[n.Name] = n
		byVNI[n.VNI] = n.Name
	}
	for _, ep := range in.Endpoints {
		n := nets[ep.Network]
		if n == nil {
			continue
		}
		if d.VRFs[n.Name] == nil {
			d.VRFs[n.Name] = &vrouterv1.Vrf{Name: n.Name, Network: n.VNI}
			if n.VNI != 0 && slices.Contains(in.Tunnels, packet.EncapVXLAN) {
				d.VNIs[n.VNI] = n.Name
			}
		}
		p := &vrouterv1.Port{Name: ep.Name, Kind: vrouterv1.PortKind_PORT_KIND_TAP, Netns: ep.Netns, NetnsIfname: ep.IfName}
		if ep.Device != "" {
			p = &vrouterv1.Port{Name: ep.Name, Kind: vrouterv1.PortKind_PORT_KIND_AF_PACKET, Ifname: ep.Device}
		}
		for _, a := range ep.addresses() {
			p.Addresses = append(p.Addresses, a.String())
			if gw, ok := endpointGateway(n, a.Addr()); ok {
				p.Gateways = append(p.Gateways, gw.String())
			}
		}
		if !ep.MAC.IsZero() {
			p.Mac = ep.MAC[:]
		}
		for _, a := range ep.AllowedSources {
			p.AllowedSources = append(p.AllowedSources, a.String())
		}
		if mtu := c.Overlay.MTU; mtu > 0 {
			p.Mtu = uint32(mtu)
		}
		d.Ports[ep.Name] = p
		d.PortNetwork[ep.Name] = n.Name
		k := portNHKey(ep.Name)
		d.NextHops[k] = &vrouterv1.NextHop{Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT, Network: n.VNI}
		d.Labels[ep.Name] = k
	}

	// Which networks' routes each VRF takes.
	imports := map[string]map[string]bool{} // vrf network -> source networks
	for name := range d.VRFs {
		src := map[string]bool{name: true}
		n := nets[name]
		for _, o := range c.Networks {
			if o.Name != name && sharesRT(n.RouteTargets.Import, o.RouteTargets.Export) {
				src[o.Name] = true
			}
		}
		for _, pol := range c.Policies {
			switch name {
			case pol.From:
				src[pol.To] = true
			case pol.To:
				src[pol.From] = true
			}
		}
		imports[name] = src
	}

	// Candidate next hops per VRF and prefix.
	cands := map[routeKey][]string{}
	for _, ep := range in.Endpoints {
		for vrf, src := range imports {
			if !src[ep.Network] {
				continue
			}
			for _, pfx := range ep.routed() {
				k := routeKey{vrf, pfx.Masked()}
				cands[k] = appendUnique(cands[k], portNHKey(ep.Name))
			}
		}
	}
	prio := encapPriority(c)
	rtImports := map[string][]bgp.RouteTarget{}
	for vrf, src := range imports {
		rtImports[vrf] = nets[vrf].RouteTargets.Import
		d.Imported[vrf] = PathCounts{}
		d.ImportTargets = appendRTs(d.ImportTargets, nets[vrf].RouteTargets.Import)
		for o := range src {
			// A network joined by policy only: its routes carry none of
			// our imports (one joined by route target carries one).
			if on := nets[o]; on != nil && o != vrf && !sharesRT(nets[vrf].RouteTargets.Import, on.RouteTargets.Export) {
				d.ImportTargets = appendRTs(d.ImportTargets, on.RouteTargets.Export)
			}
		}
	}
	slices.SortFunc(d.ImportTargets, func(a, b bgp.RouteTarget) int { return cmp.Compare(a.String(), b.String()) })
	for _, p := range in.Paths {
		if p.NextHop == in.Underlay {
			continue // our own route reflected back
		}
		origin := byVNI[p.OriginVN]
		for vrf, src := range imports {
			if !(origin != "" && src[origin]) && !sharesRT(rtImports[vrf], p.RTs) {
				continue
			}
			enc, ok := chooseEncap(prio, in.Tunnels, p)
			n := d.Imported[vrf]
			n.Received++
			if ok {
				n.Accepted++
			}
			d.Imported[vrf] = n
			if !ok {
				continue
			}
			var k string
			nh := &vrouterv1.NextHop{Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL, Underlay: p.NextHop.String(), Network: p.OriginVN,
				Encap: vrouterv1.EncapFromPacket(enc)}
			switch enc {
			case packet.EncapVXLAN:
				nh.Vni = p.VNI
				if !p.RouterMAC.IsZero() {
					nh.RouterMac = p.RouterMAC[:]
				}
				k = tunnelNHKey(enc, p.NextHop, 0, p.VNI, p.RouterMAC, p.OriginVN)
			case packet.EncapMPLSoUDP, packet.EncapMPLSoGRE:
				nh.Label = p.Label
				k = tunnelNHKey(enc, p.NextHop, p.Label, 0, packet.MAC{}, p.OriginVN)
			}
			nh.AcceptEncaps = acceptEncaps(prio, in.Tunnels, enc)
			d.NextHops[k] = nh
			rk := routeKey{vrf, p.Prefix.Masked()}
			cands[rk] = appendUnique(cands[rk], k)
		}
	}
	for rk, ks := range cands {
		if len(ks) == 1 {
			d.Routes[rk] = ks[0]
			continue
		}
		slices.Sort(ks)
		if len(ks) > 64 {
			ks = ks[:64] // nexthop.MaxMembers
		}
		network := d.NextHops[ks[0]].GetNetwork()
		for _, k := range ks[1:] {
			if d.NextHops[k].GetNetwork() != network {
				network = 0
			}
		}
		ck := compositeNHKey(ks, network)
		d.Composites[ck] = ks
		d.NextHops[ck] = &vrouterv1.NextHop{Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE, Network: network}
		d.Routes[rk] = ck
	}
	d.Rules = rules(c)
	return d
}

// chooseEncap picks the first encapsulation of the local priority that the
// local vRouter has a tunnel for and the remote path offers.
func chooseEncap(prio, tunnels []packet.Encap, p Path) (packet.Encap, bool) {
	for _, e := range prio {
		if slices.Contains(tunnels, e) && offers(p, e) {
			return e, true
		}
	}
	return packet.EncapNone, false
}

// acceptEncaps are the encapsulations besides chosen that the path's
// sender may tunnel to this node with: every one this node offers (what
// it announces: its priority list, less what its vRouter has no tunnel
// for). The sender chooses among those by its own priority, which may
// differ, and its choice does not follow its own announcements: behind
// FRR, a restarting node's EVPN routes are withdrawn while its vRouter
// still sends VXLAN. The vRouter accepts the sender over these too
// (NextHop.accept_encaps); over nothing this node does not offer.
func acceptEncaps(prio, tunnels []packet.Encap, chosen packet.Encap) []vrouterv1.Encap {
	var out []vrouterv1.Encap
	for _, e := range prio {
		if e != chosen && slices.Contains(tunnels, e) {
			out = append(out, vrouterv1.EncapFromPacket(e))
		}
	}
	slices.Sort(out)
	return out
}

// offers reports whether path p can be tunnelled to with e.
func offers(p Path, e packet.Encap) bool {
	switch e {
	case packet.EncapVXLAN:
		return p.HasEVPN && p.VNI != 0
	case packet.EncapMPLSoUDP:
		return p.HasVPN && slices.Contains(p.Encaps, e)
	case packet.EncapMPLSoGRE:
		return p.HasVPN && (len(p.Encaps) == 0 || slices.Contains(p.Encaps, e))
	}
	return false
}

// rules are the vRouter's policy rules: the config's policies, and
// allow-all between networks joined by route targets (a network that
// imports another's routes may talk to it; replies follow the flow).
func rules(c *config.Config) []*vrouterv1.Rule {
	var out []*vrouterv1.Rule
	id := uint32(1)
	vni := func(name string) uint32 {
		if n := c.Network(name); n != nil {
			return n.VNI
		}
		return 0
	}
	for pi, pol := range c.Policies {
		from, to := vni(pol.From), vni(pol.To)
		if from == 0 || to == 0 {
			continue
		}
		for ri, r := range pol.Allow {
			rule := &vrouterv1.Rule{Id: id, SrcNetwork: from, DstNetwork: to,
				Name: fmt.Sprintf("policies[%d].allow[%d] %s->%s", pi, ri, pol.From, pol.To)}
			switch r.Protocol {
			case config.ProtoTCP:
				rule.Protocol = 6
			case config.ProtoUDP:
				rule.Protocol = 17
			case config.ProtoICMP:
				rule.Protocol = 1
			}
			for _, pr := range r.Ports {
				rule.DstPorts = append(rule.DstPorts, &vrouterv1.PortRange{First: uint32(pr.From), Last: uint32(pr.To)})
			}
			if r.CIDR.IsValid() {
				rule.DstPrefixes = []string{r.CIDR.String()}
			}
			out = append(out, rule)
			id++
		}
	}
	for _, a := range c.Networks {
		for _, b := range c.Networks {
			if a.Name != b.Name && sharesRT(a.RouteTargets.Import, b.RouteTargets.Export) {
				out = append(out, &vrouterv1.Rule{Id: id, SrcNetwork: a.VNI, DstNetwork: b.VNI,
					Name: fmt.Sprintf("route-target %s->%s", a.Name, b.Name)})
				id++
			}
		}
	}
	return out
}

func sharesRT[RT comparable](a, b []RT) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// endpointGateway is the gateway an endpoint's address a routes through:
// the network's gateway when it is of a's family, else the first host of
// a's subnet.
func endpointGateway(n *config.VirtualNetwork, a netip.Addr) (netip.Addr, bool) {
	if n.Gateway.IsValid() && n.Gateway.Is4() == a.Is4() {
		return n.Gateway, true
	}
	return firstHost(n.Subnets, a)
}

// firstHost is the first host address of the subnet holding a, the
// network's default gateway.
func firstHost(subnets []netip.Prefix, a netip.Addr) (netip.Addr, bool) {
	for _, s := range subnets {
		if s.Contains(a) && s.Bits() < a.BitLen()-1 {
			return s.Masked().Addr().Next(), true
		}
	}
	return netip.Addr{}, false
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// sortRouteKeys orders routes for deterministic apply batches.
func sortRouteKeys(ks []routeKey) {
	slices.SortFunc(ks, func(a, b routeKey) int {
		if c := cmp.Compare(a.Network, b.Network); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
}

// appendRTs adds to dst the targets of rts it does not have yet.
func appendRTs(dst, rts []bgp.RouteTarget) []bgp.RouteTarget {
	for _, rt := range rts {
		if !slices.Contains(dst, rt) {
			dst = append(dst, rt)
		}
	}
	return dst
}
