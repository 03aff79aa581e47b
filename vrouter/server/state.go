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
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/fib"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/nexthop"
	"github.com/weftnet/weft/vrouter/objects"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
)

// PortOpener creates the I/O of a port: a TAP the vRouter makes, or an
// AF_PACKET socket on an existing netdev. It returns the endpoint MAC in
// use (for a TAP asked for a random one, the one chosen). Tests replace it.
type PortOpener func(p *vrouterv1.Port, cfg dataplane.PortConfig) (port.Port, packet.MAC, error)

// state holds the API objects (package vrouter/objects, which checks the
// references between them) and programs the engine as ops arrive.
type state struct {
	mu   sync.Mutex
	eng  *dataplane.Engine
	open PortOpener

	objs       *objects.Set
	generation uint64
}

func newState(eng *dataplane.Engine, open PortOpener) *state {
	return &state{eng: eng, open: open, objs: objects.New()}
}

// apply runs ops in order and stops at the first failure (an
// *objects.OpError).
func (s *state) apply(ops []*vrouterv1.Op) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objs.ApplyFunc(ops, func(op *vrouterv1.Op) error {
		changed, err := s.program(op)
		if err == nil && changed {
			s.generation++
		}
		return err
	})
}

// program makes the engine do what op asks; the objects are as they were
// before op, and its references are known to be whole.
func (s *state) program(op *vrouterv1.Op) (changed bool, err error) {
	switch o := op.GetOp().(type) {
	case *vrouterv1.Op_PutVrf:
		return true, s.putVRF(o.PutVrf)
	case *vrouterv1.Op_DeleteVrf:
		return true, s.deleteVRF(o.DeleteVrf)
	case *vrouterv1.Op_PutPort:
		return s.putPort(o.PutPort)
	case *vrouterv1.Op_DeletePort:
		return true, s.deletePort(o.DeletePort)
	case *vrouterv1.Op_PutNextHop:
		return true, s.putNextHop(o.PutNextHop)
	case *vrouterv1.Op_DeleteNextHop:
		return true, s.deleteNextHop(o.DeleteNextHop)
	case *vrouterv1.Op_PutRoute:
		return true, s.putRoute(o.PutRoute)
	case *vrouterv1.Op_DeleteRoute:
		return true, s.deleteRoute(o.DeleteRoute)
	case *vrouterv1.Op_PutLabel:
		return true, s.putLabel(o.PutLabel)
	case *vrouterv1.Op_DeleteLabel:
		return true, s.deleteLabel(o.DeleteLabel)
	case *vrouterv1.Op_PutVni:
		return true, s.putVNI(o.PutVni)
	case *vrouterv1.Op_DeleteVni:
		return true, s.deleteVNI(o.DeleteVni)
	case *vrouterv1.Op_PutRule:
		return true, s.putRule(o.PutRule)
	case *vrouterv1.Op_DeleteRule:
		return true, s.deleteRule(o.DeleteRule)
	}
	return false, errors.New("empty op")
}

// VRFs ---------------------------------------------------------------------

func (s *state) putVRF(v *vrouterv1.Vrf) error {
	if v.GetId() == 0 || v.GetId() > fib.MaxVRF {
		return fmt.Errorf("id: %d out of range 1..%d", v.GetId(), fib.MaxVRF)
	}
	if old, ok := s.objs.VRFs[v.GetId()]; ok && proto.Equal(old, v) {
		return nil
	}
	if err := s.eng.SetVRF(v.GetId(), v.GetNetwork()); err != nil {
		return err
	}
	// Ports learn their VRF's network on update.
	for id, p := range s.objs.Ports {
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
	if _, ok := s.objs.VRFs[id]; !ok {
		return nil
	}
	return s.eng.DeleteVRF(id)
}

// Next hops ----------------------------------------------------------------

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
		nh.Encap = n.GetEncap().Packet()
		if nh.Encap == packet.EncapNone {
			return nh, fmt.Errorf("encap: %v not supported", n.GetEncap())
		}
		u, err := netip.ParseAddr(n.GetUnderlay())
		if err != nil {
			return nh, fmt.Errorf("underlay: %w", err)
		}
		nh.Underlay = u.Unmap()
		nh.Label, nh.VNI = n.GetLabel(), n.GetVni()
		for i, e := range n.GetAcceptEncaps() {
			pe := e.Packet()
			if pe == packet.EncapNone {
				return nh, fmt.Errorf("accept_encaps[%d]: %v not supported", i, e)
			}
			nh.AcceptEncaps = append(nh.AcceptEncaps, pe)
		}
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
		nh.VRF = n.GetVrf()
	default:
		return nh, fmt.Errorf("kind: %v not supported", n.GetKind())
	}
	return nh, nil
}

func (s *state) putNextHop(n *vrouterv1.NextHop) error {
	if old, ok := s.objs.NextHops[n.GetId()]; ok && proto.Equal(old, n) {
		return nil
	}
	nh, err := s.nextHop(n)
	if err != nil {
		return err
	}
	return trimNH(s.eng.SetNextHop(nh))
}

// trimNH drops the "nexthop N: " prefix the table puts in front of its
// errors, since the op name says it already.
func trimNH(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); i > 0 && strings.HasPrefix(msg, "nexthop ") {
		return errors.New(msg[i+2:])
	}
	return err
}

func (s *state) deleteNextHop(id uint32) error {
	if _, ok := s.objs.NextHops[id]; !ok {
		return nil
	}
	return trimNH(s.eng.DeleteNextHop(nexthop.ID(id)))
}

// Routes, labels, VNIs -----------------------------------------------------

func (s *state) putRoute(r *vrouterv1.Route) error {
	k, err := objects.ParseRoute(r)
	if err != nil {
		return err
	}
	if old, ok := s.objs.Routes[k]; ok && old == r.GetNextHop() {
		return nil
	}
	return s.eng.SetRoute(k.VRF, k.Prefix, nexthop.ID(r.GetNextHop()))
}

func (s *state) deleteRoute(r *vrouterv1.Route) error {
	k, err := objects.ParseRoute(r)
	if err != nil {
		return nil // its VRF is gone, and its routes with it
	}
	if _, ok := s.objs.Routes[k]; !ok {
		return nil
	}
	return s.eng.DeleteRoute(k.VRF, k.Prefix)
}

func (s *state) putLabel(l *vrouterv1.Label) error {
	if old, ok := s.objs.Labels[l.GetLabel()]; ok && old == l.GetNextHop() {
		return nil
	}
	return s.eng.SetLabel(l.GetLabel(), nexthop.ID(l.GetNextHop()))
}

func (s *state) deleteLabel(label uint32) error {
	if _, ok := s.objs.Labels[label]; !ok {
		return nil
	}
	return s.eng.SetLabel(label, 0)
}

func (s *state) putVNI(v *vrouterv1.Vni) error { return s.eng.SetVNI(v.GetVni(), v.GetVrf()) }

func (s *state) deleteVNI(vni uint32) error {
	if _, ok := s.objs.VNIs[vni]; !ok {
		return nil
	}
	return s.eng.SetVNI(vni, 0)
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
	if old, ok := s.objs.Rules[r.GetId()]; ok && proto.Equal(old, r) {
		return nil
	}
	if _, err := flowRule(r); err != nil {
		return err
	}
	next := maps.Clone(s.objs.Rules)
	next[r.GetId()] = r
	return s.compile(next)
}

func (s *state) deleteRule(id uint32) error {
	if _, ok := s.objs.Rules[id]; !ok {
		return nil
	}
	next := maps.Clone(s.objs.Rules)
	delete(next, id)
	return s.compile(next)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.objs.Dump(want, vrf)
	for _, o := range out {
		p := o.GetPort()
		if p == nil {
			continue
		}
		if cfg, ok := s.eng.Port(p.GetId()); ok {
			p.Mac = slices.Clone(cfg.MAC[:]) // the MAC in use, chosen if none was asked
			if p.Mtu == 0 {
				p.Mtu = uint32(cfg.MTU)
			}
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
		"vrfs": uint64(len(s.objs.VRFs)), "ports": uint64(len(s.objs.Ports)), "nexthops": uint64(len(s.objs.NextHops)),
		"routes": uint64(len(s.objs.Routes)), "labels": uint64(len(s.objs.Labels)), "vnis": uint64(len(s.objs.VNIs)),
		"rules": uint64(len(s.objs.Rules)), "flows": uint64(s.eng.Flows().Len()),
	}, s.generation
}
