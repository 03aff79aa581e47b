// Package server is the vRouter process: its control API (gRPC over a
// unix socket, package vrouter/api/v1) in front of the forwarding engine
// (package vrouter/dataplane), and Run, which `weft vrouter` calls.
//
// The API's objects are kept here as the client sent them, so that a
// client that reconnects (the agent after a restart) reads back exactly
// what it programmed and applies only differences. Nothing here runs per
// packet.
package server

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
)

// PortOpener creates the I/O of a port: a TAP the vRouter makes, or an
// AF_PACKET socket on an existing netdev. It returns the endpoint MAC in
// use (for a TAP asked for a random one, the one chosen). Tests replace it.
type PortOpener func(p *vrouterv1.Port, cfg dataplane.PortConfig) (port.Port, packet.MAC, error)

// state holds the API objects and applies ops to the engine.
type state struct {
	mu   sync.Mutex
	eng  *dataplane.Engine
	open PortOpener

	vrfs     map[uint32]*vrouterv1.Vrf
	ports    map[uint32]*vrouterv1.Port
	nexthops map[uint32]*vrouterv1.NextHop
	routes   map[routeKey]*vrouterv1.Route
	labels   map[uint32]*vrouterv1.Label
	vnis     map[uint32]*vrouterv1.Vni
	rules    map[uint32]*vrouterv1.Rule

	// nhRefs counts the routes and labels that name each next hop, so that
	// one still in use is never deleted under them.
	nhRefs     map[uint32]int
	generation uint64
}

type routeKey struct {
	vrf    uint32
	prefix netip.Prefix
}

func newState(eng *dataplane.Engine, open PortOpener) *state {
	return &state{
		eng: eng, open: open,
		vrfs: map[uint32]*vrouterv1.Vrf{}, ports: map[uint32]*vrouterv1.Port{},
		nexthops: map[uint32]*vrouterv1.NextHop{}, routes: map[routeKey]*vrouterv1.Route{},
		labels: map[uint32]*vrouterv1.Label{}, vnis: map[uint32]*vrouterv1.Vni{},
		rules: map[uint32]*vrouterv1.Rule{}, nhRefs: map[uint32]int{},
	}
}

// OpError is an Apply failure: which op, and what is wrong with it.
type OpError struct {
	Index int
	Op    string // "put_port 3"
	Err   error
}

func (e *OpError) Error() string { return fmt.Sprintf("ops[%d] %s: %v", e.Index, e.Op, e.Err) }
func (e *OpError) Unwrap() error { return e.Err }

// apply runs ops in order and stops at the first failure.
func (s *state) apply(ops []*vrouterv1.Op) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, op := range ops {
		name, changed, err := s.applyOne(op)
		if err != nil {
			return i, &OpError{Index: i, Op: name, Err: err}
		}
		if changed {
			s.generation++
		}
	}
	return len(ops), nil
}

func (s *state) applyOne(op *vrouterv1.Op) (name string, changed bool, err error) {
	switch o := op.GetOp().(type) {
	case *vrouterv1.Op_PutVrf:
		return fmt.Sprintf("put_vrf %d", o.PutVrf.GetId()), true, s.putVRF(o.PutVrf)
	case *vrouterv1.Op_DeleteVrf:
		return fmt.Sprintf("delete_vrf %d", o.DeleteVrf), true, s.deleteVRF(o.DeleteVrf)
	case *vrouterv1.Op_PutPort:
		ch, err := s.putPort(o.PutPort)
		return fmt.Sprintf("put_port %d", o.PutPort.GetId()), ch, err
	case *vrouterv1.Op_DeletePort:
		return fmt.Sprintf("delete_port %d", o.DeletePort), true, s.deletePort(o.DeletePort)
	case *vrouterv1.Op_PutNextHop:
		return fmt.Sprintf("put_next_hop %d", o.PutNextHop.GetId()), true, s.putNextHop(o.PutNextHop)
	case *vrouterv1.Op_DeleteNextHop:
		return fmt.Sprintf("delete_next_hop %d", o.DeleteNextHop), true, s.deleteNextHop(o.DeleteNextHop)
	case *vrouterv1.Op_PutRoute:
		return fmt.Sprintf("put_route vrf %d %s", o.PutRoute.GetVrf(), o.PutRoute.GetPrefix()), true, s.putRoute(o.PutRoute)
	case *vrouterv1.Op_DeleteRoute:
		return fmt.Sprintf("delete_route vrf %d %s", o.DeleteRoute.GetVrf(), o.DeleteRoute.GetPrefix()), true, s.deleteRoute(o.DeleteRoute)
	case *vrouterv1.Op_PutLabel:
		return fmt.Sprintf("put_label %d", o.PutLabel.GetLabel()), true, s.putLabel(o.PutLabel)
	case *vrouterv1.Op_DeleteLabel:
		return fmt.Sprintf("delete_label %d", o.DeleteLabel), true, s.deleteLabel(o.DeleteLabel)
	case *vrouterv1.Op_PutVni:
		return fmt.Sprintf("put_vni %d", o.PutVni.GetVni()), true, s.putVNI(o.PutVni)
	case *vrouterv1.Op_DeleteVni:
		return fmt.Sprintf("delete_vni %d", o.DeleteVni), true, s.deleteVNI(o.DeleteVni)
	case *vrouterv1.Op_PutRule:
		return fmt.Sprintf("put_rule %d", o.PutRule.GetId()), true, s.putRule(o.PutRule)
	case *vrouterv1.Op_DeleteRule:
		return fmt.Sprintf("delete_rule %d", o.DeleteRule), true, s.deleteRule(o.DeleteRule)
	}
	return "op", false, errors.New("empty op")
}

// VRFs ---------------------------------------------------------------------

func (s *state) putVRF(v *vrouterv1.Vrf) error {
	if v.GetId() == 0 || v.GetId() > fib.MaxVRF {
		return fmt.Errorf("id: %d out of range 1..%d", v.GetId(), fib.MaxVRF)
	}
	if old, ok := s.vrfs[v.GetId()]; ok && proto.Equal(old, v) {
		return nil
	}
	if err := s.eng.SetVRF(v.GetId(), v.GetNetwork()); err != nil {
		return err
	}
	s.vrfs[v.GetId()] = proto.CloneOf(v)
	// Ports learn their VRF's network on update.
	for id, p := range s.ports {
		if p.GetVrf() == v.GetId() {
			if cfg, ok := s.eng.Port(id); ok && cfg.Network != v.GetNetwork() {
				if err := s.eng.UpdatePort(cfg); err != nil {
					return fmt.Errorf("port %d: %w", id, err)
				}
			}
		}
	}
	return nil
}

func (s *state) deleteVRF(id uint32) error {
	if _, ok := s.vrfs[id]; !ok {
		return nil
	}
	for pid, p := range s.ports {
		if p.GetVrf() == id {
			return fmt.Errorf("port %d (%s) is still in vrf %d", pid, p.GetName(), id)
		}
	}
	for vni, v := range s.vnis {
		if v.GetVrf() == id {
			return fmt.Errorf("vni %d still points at vrf %d", vni, id)
		}
	}
	for nid, nh := range s.nexthops {
		if nh.GetVrf() == id {
			return fmt.Errorf("next hop %d still looks up in vrf %d", nid, id)
		}
	}
	if err := s.eng.DeleteVRF(id); err != nil {
		return err
	}
	for k, r := range s.routes {
		if k.vrf == id {
			s.nhRefs[r.GetNextHop()]--
			delete(s.routes, k)
		}
	}
	delete(s.vrfs, id)
	return nil
}

// Ports --------------------------------------------------------------------

// portConfig validates p and turns it into the engine's form.
func (s *state) portConfig(p *vrouterv1.Port) (dataplane.PortConfig, error) {
	cfg := dataplane.PortConfig{ID: p.GetId(), Name: p.GetName(), VRF: p.GetVrf(), MTU: int(p.GetMtu()), DHCP: p.GetDhcp(), Hostname: p.GetHostname()}
	if cfg.ID == 0 || cfg.ID >= dataplane.MaxPorts {
		return cfg, fmt.Errorf("id: %d out of range 1..%d", cfg.ID, dataplane.MaxPorts-1)
	}
	if cfg.Name == "" {
		return cfg, errors.New("name: empty")
	}
	if _, ok := s.vrfs[cfg.VRF]; !ok {
		return cfg, fmt.Errorf("vrf: %d does not exist", cfg.VRF)
	}
	switch p.GetKind() {
	case vrouterv1.PortKind_PORT_KIND_TAP:
		if n := p.GetIfname(); len(n) > 15 {
			return cfg, fmt.Errorf("ifname: %q longer than 15 bytes", n)
		}
		if n := p.GetNetnsIfname(); len(n) > 15 {
			return cfg, fmt.Errorf("netns_ifname: %q longer than 15 bytes", n)
		}
	case vrouterv1.PortKind_PORT_KIND_AF_PACKET:
		if p.GetIfname() == "" {
			return cfg, errors.New("ifname: an af_packet port needs the netdev to attach to")
		}
		if p.GetNetns() != "" {
			return cfg, errors.New("netns: an af_packet port attaches to a netdev in the vRouter's namespace")
		}
	default:
		return cfg, fmt.Errorf("kind: %v not supported", p.GetKind())
	}
	if m := p.GetMac(); len(m) != 0 {
		if len(m) != 6 {
			return cfg, fmt.Errorf("mac: %d bytes, want 6", len(m))
		}
		copy(cfg.MAC[:], m)
		if cfg.MAC.IsMulticast() || cfg.MAC.IsZero() {
			return cfg, fmt.Errorf("mac: %v must be unicast", cfg.MAC)
		}
	}
	if cfg.MTU != 0 && (cfg.MTU < 576 || cfg.MTU > 65535) {
		return cfg, fmt.Errorf("mtu: %d out of range 576..65535", cfg.MTU)
	}
	var err error
	if cfg.Addresses, err = prefixes("addresses", p.GetAddresses(), false); err != nil {
		return cfg, err
	}
	if len(cfg.Addresses) == 0 {
		return cfg, errors.New("addresses: none")
	}
	if cfg.AllowedSources, err = prefixes("allowed_sources", p.GetAllowedSources(), true); err != nil {
		return cfg, err
	}
	for i, d := range p.GetDns() {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return cfg, fmt.Errorf("dns[%d]: %w", i, err)
		}
		cfg.DNS = append(cfg.DNS, a)
	}
	for i, g := range p.GetGateways() {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return cfg, fmt.Errorf("gateways[%d]: %w", i, err)
		}
		cfg.Gateways = append(cfg.Gateways, a)
	}
	if len(cfg.Gateways) == 0 {
		cfg.Gateways = port.DefaultGateways(cfg.Addresses)
	}
	return cfg, nil
}

func prefixes(field string, in []string, masked bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if masked {
			p = p.Masked()
		}
		out = append(out, p)
	}
	return out, nil
}

// ioFields are the fields whose change needs the port's I/O made again.
func ioFields(p *vrouterv1.Port) *vrouterv1.Port {
	return &vrouterv1.Port{Kind: p.GetKind(), Ifname: p.GetIfname(), Netns: p.GetNetns(), NetnsIfname: p.GetNetnsIfname(),
		Mac: p.GetMac(), Addresses: p.GetAddresses(), Gateways: p.GetGateways(), Mtu: p.GetMtu()}
}

func (s *state) putPort(p *vrouterv1.Port) (bool, error) {
	old, exists := s.ports[p.GetId()]
	if exists && proto.Equal(old, p) {
		return false, nil
	}
	cfg, err := s.portConfig(p)
	if err != nil {
		return false, err
	}
	if exists && proto.Equal(ioFields(old), ioFields(p)) {
		cur, _ := s.eng.Port(cfg.ID)
		cfg.MAC = cur.MAC
		if err := s.eng.UpdatePort(cfg); err != nil {
			return false, err
		}
		s.ports[p.GetId()] = proto.CloneOf(p)
		return true, s.refreshPortNextHops(p.GetId())
	}
	if exists {
		if err := s.eng.DetachPort(cfg.ID); err != nil {
			return false, err
		}
		delete(s.ports, cfg.ID)
	}
	if cfg.MTU == 0 {
		cfg.MTU = s.eng.DefaultMTU()
	}
	io, mac, err := s.open(p, cfg)
	if err != nil {
		return false, err
	}
	cfg.MAC = mac
	if err := s.eng.AttachPort(cfg, io); err != nil {
		io.Close()
		return false, err
	}
	s.ports[p.GetId()] = proto.CloneOf(p)
	return true, s.refreshPortNextHops(p.GetId())
}

// refreshPortNextHops rewrites the next hops that deliver to port id, whose
// MAC may have changed.
func (s *state) refreshPortNextHops(id uint32) error {
	for _, nh := range s.nexthops {
		if nh.GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT && nh.GetPort() == id {
			n, err := s.nextHop(nh)
			if err != nil {
				return err
			}
			if err := s.eng.NextHops().Set(n); err != nil {
				return fmt.Errorf("next hop %d: %w", nh.GetId(), err)
			}
		}
	}
	return nil
}

func (s *state) deletePort(id uint32) error {
	if _, ok := s.ports[id]; !ok {
		return nil
	}
	for nid, nh := range s.nexthops {
		if nh.GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT && nh.GetPort() == id {
			return fmt.Errorf("port %d is used by next hop %d: delete that first", id, nid)
		}
	}
	if err := s.eng.DetachPort(id); err != nil {
		return err
	}
	delete(s.ports, id)
	return nil
}

// Next hops ----------------------------------------------------------------

var encaps = map[vrouterv1.Encap]packet.Encap{
	vrouterv1.Encap_ENCAP_MPLSOUDP: packet.EncapMPLSoUDP,
	vrouterv1.Encap_ENCAP_MPLSOGRE: packet.EncapMPLSoGRE,
	vrouterv1.Encap_ENCAP_VXLAN:    packet.EncapVXLAN,
}

func encapToAPI(e packet.Encap) vrouterv1.Encap {
	for k, v := range encaps {
		if v == e {
			return k
		}
	}
	return vrouterv1.Encap_ENCAP_UNSPECIFIED
}

// nextHop turns an API next hop into the engine's.
func (s *state) nextHop(n *vrouterv1.NextHop) (nexthop.NextHop, error) {
	nh := nexthop.NextHop{ID: nexthop.ID(n.GetId()), Network: n.GetNetwork()}
	switch n.GetKind() {
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_DISCARD:
		nh.Kind = nexthop.Discard
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_RECEIVE:
		nh.Kind = nexthop.Receive
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT:
		nh.Kind = nexthop.Port
		cfg, ok := s.eng.Port(n.GetPort())
		if !ok {
			return nh, fmt.Errorf("port: %d does not exist", n.GetPort())
		}
		nh.Port = nexthop.PortID(n.GetPort())
		nh.DstMAC = cfg.MAC
		nh.SrcMAC = s.eng.Options().GatewayMAC
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL:
		nh.Kind = nexthop.Tunnel
		enc, ok := encaps[n.GetEncap()]
		if !ok {
			return nh, fmt.Errorf("encap: %v not supported", n.GetEncap())
		}
		nh.Encap = enc
		u, err := netip.ParseAddr(n.GetUnderlay())
		if err != nil {
			return nh, fmt.Errorf("underlay: %w", err)
		}
		nh.Underlay = u.Unmap()
		nh.Label, nh.VNI = n.GetLabel(), n.GetVni()
		if m := n.GetRouterMac(); len(m) != 0 {
			if len(m) != 6 {
				return nh, fmt.Errorf("router_mac: %d bytes, want 6", len(m))
			}
			copy(nh.RouterMAC[:], m)
		}
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE:
		nh.Kind = nexthop.Composite
		for _, m := range n.GetMembers() {
			nh.Members = append(nh.Members, nexthop.ID(m))
		}
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_VRF_LOOKUP:
		nh.Kind = nexthop.VRFLookup
		if _, ok := s.vrfs[n.GetVrf()]; !ok {
			return nh, fmt.Errorf("vrf: %d does not exist", n.GetVrf())
		}
		nh.VRF = n.GetVrf()
	default:
		return nh, fmt.Errorf("kind: %v not supported", n.GetKind())
	}
	return nh, nil
}

func (s *state) putNextHop(n *vrouterv1.NextHop) error {
	if old, ok := s.nexthops[n.GetId()]; ok && proto.Equal(old, n) {
		return nil
	}
	nh, err := s.nextHop(n)
	if err != nil {
		return err
	}
	if err := s.eng.NextHops().Set(nh); err != nil {
		return trimNH(err)
	}
	s.nexthops[n.GetId()] = proto.CloneOf(n)
	return nil
}

// trimNH drops the "nexthop N: " prefix the table puts in front of its
// errors, since the op name says it already.
func trimNH(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i > 0 && strings.HasPrefix(msg, "nexthop ") {
		return errors.New(msg[i+2:])
	}
	return err
}

func (s *state) deleteNextHop(id uint32) error {
	if _, ok := s.nexthops[id]; !ok {
		return nil
	}
	if n := s.nhRefs[id]; n > 0 {
		return fmt.Errorf("next hop %d is used by %d routes or labels: delete those first", id, n)
	}
	if err := s.eng.NextHops().Delete(nexthop.ID(id)); err != nil {
		return trimNH(err)
	}
	delete(s.nexthops, id)
	delete(s.nhRefs, id)
	return nil
}

// Routes, labels, VNIs -----------------------------------------------------

func (s *state) routeKey(r *vrouterv1.Route) (routeKey, error) {
	if _, ok := s.vrfs[r.GetVrf()]; !ok {
		return routeKey{}, fmt.Errorf("vrf: %d does not exist", r.GetVrf())
	}
	p, err := netip.ParsePrefix(r.GetPrefix())
	if err != nil {
		return routeKey{}, fmt.Errorf("prefix: %w", err)
	}
	return routeKey{vrf: r.GetVrf(), prefix: p.Masked()}, nil
}

func (s *state) putRoute(r *vrouterv1.Route) error {
	k, err := s.routeKey(r)
	if err != nil {
		return err
	}
	if _, ok := s.nexthops[r.GetNextHop()]; !ok {
		return fmt.Errorf("next_hop: %d does not exist", r.GetNextHop())
	}
	old, exists := s.routes[k]
	if exists && old.GetNextHop() == r.GetNextHop() {
		return nil
	}
	if err := s.eng.FIB().VRF(fib.VRFID(k.vrf)).Insert(k.prefix, nexthop.ID(r.GetNextHop())); err != nil {
		return err
	}
	if exists {
		s.nhRefs[old.GetNextHop()]--
	}
	s.nhRefs[r.GetNextHop()]++
	s.routes[k] = &vrouterv1.Route{Vrf: k.vrf, Prefix: k.prefix.String(), NextHop: r.GetNextHop()}
	return nil
}

func (s *state) deleteRoute(r *vrouterv1.Route) error {
	k, err := s.routeKey(r)
	if err != nil {
		if _, ok := s.vrfs[r.GetVrf()]; !ok {
			return nil // the VRF and its routes are gone already
		}
		return err
	}
	old, ok := s.routes[k]
	if !ok {
		return nil
	}
	if _, err := s.eng.FIB().VRF(fib.VRFID(k.vrf)).Delete(k.prefix); err != nil {
		return err
	}
	s.nhRefs[old.GetNextHop()]--
	delete(s.routes, k)
	return nil
}

func (s *state) putLabel(l *vrouterv1.Label) error {
	if _, ok := s.nexthops[l.GetNextHop()]; !ok {
		return fmt.Errorf("next_hop: %d does not exist", l.GetNextHop())
	}
	old, exists := s.labels[l.GetLabel()]
	if exists && old.GetNextHop() == l.GetNextHop() {
		return nil
	}
	if err := s.eng.SetLabel(l.GetLabel(), nexthop.ID(l.GetNextHop())); err != nil {
		return err
	}
	if exists {
		s.nhRefs[old.GetNextHop()]--
	}
	s.nhRefs[l.GetNextHop()]++
	s.labels[l.GetLabel()] = proto.CloneOf(l)
	return nil
}

func (s *state) deleteLabel(label uint32) error {
	old, ok := s.labels[label]
	if !ok {
		return nil
	}
	if err := s.eng.SetLabel(label, 0); err != nil {
		return err
	}
	s.nhRefs[old.GetNextHop()]--
	delete(s.labels, label)
	return nil
}

func (s *state) putVNI(v *vrouterv1.Vni) error {
	if _, ok := s.vrfs[v.GetVrf()]; !ok {
		return fmt.Errorf("vrf: %d does not exist", v.GetVrf())
	}
	if err := s.eng.SetVNI(v.GetVni(), v.GetVrf()); err != nil {
		return err
	}
	s.vnis[v.GetVni()] = proto.CloneOf(v)
	return nil
}

func (s *state) deleteVNI(vni uint32) error {
	if _, ok := s.vnis[vni]; !ok {
		return nil
	}
	if err := s.eng.SetVNI(vni, 0); err != nil {
		return err
	}
	delete(s.vnis, vni)
	return nil
}

// Rules --------------------------------------------------------------------

func flowRule(r *vrouterv1.Rule) (flow.Rule, error) {
	fr := flow.Rule{ID: r.GetId(), Name: r.GetName(), SrcNetwork: r.GetSrcNetwork(), DstNetwork: r.GetDstNetwork()}
	if fr.ID == 0 {
		return fr, errors.New("id: 0")
	}
	if r.GetProtocol() > 255 {
		return fr, fmt.Errorf("protocol: %d out of range 0..255", r.GetProtocol())
	}
	fr.Proto = uint8(r.GetProtocol())
	var err error
	if fr.SrcPrefixes, err = prefixes("src_prefixes", r.GetSrcPrefixes(), true); err != nil {
		return fr, err
	}
	if fr.DstPrefixes, err = prefixes("dst_prefixes", r.GetDstPrefixes(), true); err != nil {
		return fr, err
	}
	for i, pr := range r.GetDstPorts() {
		first, last := pr.GetFirst(), pr.GetLast()
		if last == 0 {
			last = first
		}
		if first > 65535 || last > 65535 {
			return fr, fmt.Errorf("dst_ports[%d]: beyond 65535", i)
		}
		fr.DstPorts = append(fr.DstPorts, flow.PortRange{First: uint16(first), Last: uint16(last)})
	}
	return fr, nil
}

// compile builds the policy from rules plus the change asked for.
func (s *state) compile(rules map[uint32]*vrouterv1.Rule) error {
	ids := make([]uint32, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var frs []flow.Rule
	for _, id := range ids {
		fr, err := flowRule(rules[id])
		if err != nil {
			return err
		}
		frs = append(frs, fr)
	}
	return s.eng.SetPolicy(frs)
}

func (s *state) putRule(r *vrouterv1.Rule) error {
	if old, ok := s.rules[r.GetId()]; ok && proto.Equal(old, r) {
		return nil
	}
	if _, err := flowRule(r); err != nil {
		return err
	}
	next := make(map[uint32]*vrouterv1.Rule, len(s.rules)+1)
	for k, v := range s.rules {
		next[k] = v
	}
	next[r.GetId()] = proto.CloneOf(r)
	if err := s.compile(next); err != nil {
		return err
	}
	s.rules = next
	return nil
}

func (s *state) deleteRule(id uint32) error {
	if _, ok := s.rules[id]; !ok {
		return nil
	}
	next := make(map[uint32]*vrouterv1.Rule, len(s.rules))
	for k, v := range s.rules {
		if k != id {
			next[k] = v
		}
	}
	if err := s.compile(next); err != nil {
		return err
	}
	s.rules = next
	return nil
}

// Dumps --------------------------------------------------------------------

// dump lists the objects of the kinds asked for, each kind sorted by key.
func (s *state) dump(kinds []string, vrf uint32) ([]*vrouterv1.DumpReply, error) {
	want := map[string]bool{}
	for _, k := range kinds {
		switch k {
		case "vrfs", "ports", "nexthops", "routes", "labels", "vnis", "rules":
			want[k] = true
		default:
			return nil, fmt.Errorf("kinds: %q is not one of vrfs, ports, nexthops, routes, labels, vnis, rules", k)
		}
	}
	all := len(want) == 0
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*vrouterv1.DumpReply
	if all || want["vrfs"] {
		for _, id := range sortedKeys(s.vrfs) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Vrf{Vrf: proto.CloneOf(s.vrfs[id])}})
		}
	}
	if all || want["ports"] {
		for _, id := range sortedKeys(s.ports) {
			p := proto.CloneOf(s.ports[id])
			if cfg, ok := s.eng.Port(id); ok {
				p.Mac = slices.Clone(cfg.MAC[:]) // the MAC in use, chosen if none was asked
				if p.Mtu == 0 {
					p.Mtu = uint32(cfg.MTU)
				}
			}
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Port{Port: p}})
		}
	}
	if all || want["nexthops"] {
		for _, id := range sortedKeys(s.nexthops) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_NextHop{NextHop: proto.CloneOf(s.nexthops[id])}})
		}
	}
	if all || want["routes"] {
		keys := make([]routeKey, 0, len(s.routes))
		for k := range s.routes {
			if vrf == 0 || k.vrf == vrf {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].vrf != keys[j].vrf {
				return keys[i].vrf < keys[j].vrf
			}
			if c := keys[i].prefix.Addr().Compare(keys[j].prefix.Addr()); c != 0 {
				return c < 0
			}
			return keys[i].prefix.Bits() < keys[j].prefix.Bits()
		})
		for _, k := range keys {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Route{Route: proto.CloneOf(s.routes[k])}})
		}
	}
	if all || want["labels"] {
		for _, l := range sortedKeys(s.labels) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Label{Label: proto.CloneOf(s.labels[l])}})
		}
	}
	if all || want["vnis"] {
		for _, v := range sortedKeys(s.vnis) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Vni{Vni: proto.CloneOf(s.vnis[v])}})
		}
	}
	if all || want["rules"] {
		for _, id := range sortedKeys(s.rules) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Rule{Rule: proto.CloneOf(s.rules[id])}})
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (s *state) sizes() (map[string]uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]uint64{
		"vrfs": uint64(len(s.vrfs)), "ports": uint64(len(s.ports)), "nexthops": uint64(len(s.nexthops)),
		"routes": uint64(len(s.routes)), "labels": uint64(len(s.labels)), "vnis": uint64(len(s.vnis)),
		"rules": uint64(len(s.rules)), "flows": uint64(s.eng.Flows().Len()),
	}, s.generation
}

