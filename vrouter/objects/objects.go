// Package objects is the vRouter control API's objects as a client sent
// them, by ID, and the one set of rules for applying ops to them: a put
// replaces the object with its ID (or key), a delete removes it (deleting
// what is not there is not an error), and an op that would leave a
// reference dangling is refused. The vRouter (vrouter/server) checks and
// records each op here around programming its data path; a client (the
// agent) mirrors what the vRouter accepted with the same Apply, so both
// agree on what is installed. Nothing here touches a data path.
package objects

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// RouteKey is a route's key: its VRF and prefix (masked).
type RouteKey struct {
	VRF    uint32
	Prefix netip.Prefix
}

// Set holds the objects. Its maps are for reading; only Apply (and Load)
// change them, so that the reference counts stay true.
type Set struct {
	VRFs     map[uint32]*vrouterv1.Vrf
	Ports    map[uint32]*vrouterv1.Port
	NextHops map[uint32]*vrouterv1.NextHop
	Routes   map[RouteKey]uint32 // -> next hop
	Labels   map[uint32]uint32   // label -> next hop
	VNIs     map[uint32]uint32   // vni -> vrf
	Rules    map[uint32]*vrouterv1.Rule

	// nhRefs counts the routes and labels that name each next hop, so
	// that one still in use is refused without a scan.
	nhRefs map[uint32]int
}

// New returns an empty Set.
func New() *Set {
	return &Set{
		VRFs: map[uint32]*vrouterv1.Vrf{}, Ports: map[uint32]*vrouterv1.Port{},
		NextHops: map[uint32]*vrouterv1.NextHop{}, Routes: map[RouteKey]uint32{},
		Labels: map[uint32]uint32{}, VNIs: map[uint32]uint32{}, Rules: map[uint32]*vrouterv1.Rule{},
		nhRefs: map[uint32]int{},
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

// Apply applies ops in order and stops at the first one refused,
// returning how many were applied and an *OpError.
func (s *Set) Apply(ops []*vrouterv1.Op) (int, error) { return s.ApplyFunc(ops, nil) }

// ApplyFunc is Apply with program called for each op once it passed the
// reference checks and before it is recorded, with the Set still as it
// was before the op: the vRouter programs its data path there. An error
// from program refuses the op, which is then not recorded.
func (s *Set) ApplyFunc(ops []*vrouterv1.Op, program func(*vrouterv1.Op) error) (int, error) {
	for i, op := range ops {
		if err := s.check(op); err != nil {
			return i, &OpError{Index: i, Op: Name(op), Err: err}
		}
		if program != nil {
			if err := program(op); err != nil {
				return i, &OpError{Index: i, Op: Name(op), Err: err}
			}
		}
		s.record(op)
	}
	return len(ops), nil
}

// Name names an op in errors: "put_port 3", "delete_route vrf 1 10.0.0.0/24".
func Name(op *vrouterv1.Op) string {
	switch o := op.GetOp().(type) {
	case *vrouterv1.Op_PutVrf:
		return fmt.Sprintf("put_vrf %d", o.PutVrf.GetId())
	case *vrouterv1.Op_DeleteVrf:
		return fmt.Sprintf("delete_vrf %d", o.DeleteVrf)
	case *vrouterv1.Op_PutPort:
		return fmt.Sprintf("put_port %d", o.PutPort.GetId())
	case *vrouterv1.Op_DeletePort:
		return fmt.Sprintf("delete_port %d", o.DeletePort)
	case *vrouterv1.Op_PutNextHop:
		return fmt.Sprintf("put_next_hop %d", o.PutNextHop.GetId())
	case *vrouterv1.Op_DeleteNextHop:
		return fmt.Sprintf("delete_next_hop %d", o.DeleteNextHop)
	case *vrouterv1.Op_PutRoute:
		return fmt.Sprintf("put_route vrf %d %s", o.PutRoute.GetVrf(), o.PutRoute.GetPrefix())
	case *vrouterv1.Op_DeleteRoute:
		return fmt.Sprintf("delete_route vrf %d %s", o.DeleteRoute.GetVrf(), o.DeleteRoute.GetPrefix())
	case *vrouterv1.Op_PutLabel:
		return fmt.Sprintf("put_label %d", o.PutLabel.GetLabel())
	case *vrouterv1.Op_DeleteLabel:
		return fmt.Sprintf("delete_label %d", o.DeleteLabel)
	case *vrouterv1.Op_PutVni:
		return fmt.Sprintf("put_vni %d", o.PutVni.GetVni())
	case *vrouterv1.Op_DeleteVni:
		return fmt.Sprintf("delete_vni %d", o.DeleteVni)
	case *vrouterv1.Op_PutRule:
		return fmt.Sprintf("put_rule %d", o.PutRule.GetId())
	case *vrouterv1.Op_DeleteRule:
		return fmt.Sprintf("delete_rule %d", o.DeleteRule)
	}
	return "op"
}

// ParseRoute returns a route's key. It does not check that the VRF exists.
func ParseRoute(r *vrouterv1.Route) (RouteKey, error) {
	p, err := netip.ParsePrefix(r.GetPrefix())
	if err != nil {
		return RouteKey{}, fmt.Errorf("prefix: %w", err)
	}
	return RouteKey{VRF: r.GetVrf(), Prefix: p.Masked()}, nil
}

// check refuses op if it names what does not exist, or deletes what
// something else still names.
func (s *Set) check(op *vrouterv1.Op) error {
	switch o := op.GetOp().(type) {
	case *vrouterv1.Op_PutVrf, *vrouterv1.Op_PutRule, *vrouterv1.Op_DeleteRule,
		*vrouterv1.Op_DeleteLabel, *vrouterv1.Op_DeleteVni:
		return nil
	case *vrouterv1.Op_DeleteVrf:
		return s.checkDeleteVRF(o.DeleteVrf)
	case *vrouterv1.Op_PutPort:
		return s.needVRF(o.PutPort.GetVrf())
	case *vrouterv1.Op_DeletePort:
		if _, ok := s.Ports[o.DeletePort]; !ok {
			return nil
		}
		for _, nid := range sortedKeys(s.NextHops) {
			nh := s.NextHops[nid]
			if nh.GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT && nh.GetPort() == o.DeletePort {
				return fmt.Errorf("port %d is used by next hop %d: delete that first", o.DeletePort, nid)
			}
		}
		return nil
	case *vrouterv1.Op_PutNextHop:
		return s.checkNextHop(o.PutNextHop)
	case *vrouterv1.Op_DeleteNextHop:
		return s.checkDeleteNextHop(o.DeleteNextHop)
	case *vrouterv1.Op_PutRoute:
		if err := s.needVRF(o.PutRoute.GetVrf()); err != nil {
			return err
		}
		if _, err := ParseRoute(o.PutRoute); err != nil {
			return err
		}
		return s.needNextHop(o.PutRoute.GetNextHop())
	case *vrouterv1.Op_DeleteRoute:
		if _, ok := s.VRFs[o.DeleteRoute.GetVrf()]; !ok {
			return nil // the VRF and its routes are gone already
		}
		_, err := ParseRoute(o.DeleteRoute)
		return err
	case *vrouterv1.Op_PutLabel:
		return s.needNextHop(o.PutLabel.GetNextHop())
	case *vrouterv1.Op_PutVni:
		return s.needVRF(o.PutVni.GetVrf())
	}
	return errors.New("empty op")
}

func (s *Set) needVRF(id uint32) error {
	if _, ok := s.VRFs[id]; !ok {
		return fmt.Errorf("vrf: %d does not exist", id)
	}
	return nil
}

func (s *Set) needNextHop(id uint32) error {
	if _, ok := s.NextHops[id]; !ok {
		return fmt.Errorf("next_hop: %d does not exist", id)
	}
	return nil
}

func (s *Set) checkDeleteVRF(id uint32) error {
	if _, ok := s.VRFs[id]; !ok {
		return nil
	}
	for _, pid := range sortedKeys(s.Ports) {
		if p := s.Ports[pid]; p.GetVrf() == id {
			return fmt.Errorf("port %d (%s) is still in vrf %d", pid, p.GetName(), id)
		}
	}
	for _, vni := range sortedKeys(s.VNIs) {
		if s.VNIs[vni] == id {
			return fmt.Errorf("vni %d still points at vrf %d", vni, id)
		}
	}
	for _, nid := range sortedKeys(s.NextHops) {
		if s.NextHops[nid].GetVrf() == id {
			return fmt.Errorf("next hop %d still looks up in vrf %d", nid, id)
		}
	}
	return nil
}

func (s *Set) checkNextHop(n *vrouterv1.NextHop) error {
	switch n.GetKind() {
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT:
		if _, ok := s.Ports[n.GetPort()]; !ok {
			return fmt.Errorf("port: %d does not exist", n.GetPort())
		}
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_VRF_LOOKUP:
		return s.needVRF(n.GetVrf())
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE:
		for i, m := range n.GetMembers() {
			if _, ok := s.NextHops[m]; !ok {
				return fmt.Errorf("composite: members[%d]: nexthop %d does not exist", i, m)
			}
		}
	}
	return nil
}

func (s *Set) checkDeleteNextHop(id uint32) error {
	if _, ok := s.NextHops[id]; !ok {
		return nil
	}
	if n := s.nhRefs[id]; n > 0 {
		return fmt.Errorf("next hop %d is used by %d routes or labels: delete those first", id, n)
	}
	var composites []uint32
	for _, cid := range sortedKeys(s.NextHops) {
		c := s.NextHops[cid]
		if c.GetKind() != vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE {
			continue
		}
		for _, m := range c.GetMembers() {
			if m == id {
				composites = append(composites, cid)
				break
			}
		}
	}
	if len(composites) > 0 {
		return fmt.Errorf("member of %d composite next hops (first %d); remove it from them first", len(composites), composites[0])
	}
	return nil
}

// record applies a checked op.
func (s *Set) record(op *vrouterv1.Op) {
	switch o := op.GetOp().(type) {
	case *vrouterv1.Op_PutVrf:
		s.VRFs[o.PutVrf.GetId()] = proto.CloneOf(o.PutVrf)
	case *vrouterv1.Op_DeleteVrf:
		if _, ok := s.VRFs[o.DeleteVrf]; !ok {
			return
		}
		for k, nh := range s.Routes {
			if k.VRF == o.DeleteVrf {
				s.unref(nh)
				delete(s.Routes, k)
			}
		}
		delete(s.VRFs, o.DeleteVrf)
	case *vrouterv1.Op_PutPort:
		s.Ports[o.PutPort.GetId()] = proto.CloneOf(o.PutPort)
	case *vrouterv1.Op_DeletePort:
		delete(s.Ports, o.DeletePort)
	case *vrouterv1.Op_PutNextHop:
		s.NextHops[o.PutNextHop.GetId()] = proto.CloneOf(o.PutNextHop)
	case *vrouterv1.Op_DeleteNextHop:
		delete(s.NextHops, o.DeleteNextHop)
		delete(s.nhRefs, o.DeleteNextHop)
	case *vrouterv1.Op_PutRoute:
		k, _ := ParseRoute(o.PutRoute)
		if old, ok := s.Routes[k]; ok {
			s.unref(old)
		}
		s.Routes[k] = o.PutRoute.GetNextHop()
		s.nhRefs[o.PutRoute.GetNextHop()]++
	case *vrouterv1.Op_DeleteRoute:
		k, err := ParseRoute(o.DeleteRoute)
		if err != nil {
			return // its VRF is gone (check lets that through)
		}
		if old, ok := s.Routes[k]; ok {
			s.unref(old)
			delete(s.Routes, k)
		}
	case *vrouterv1.Op_PutLabel:
		if old, ok := s.Labels[o.PutLabel.GetLabel()]; ok {
			s.unref(old)
		}
		s.Labels[o.PutLabel.GetLabel()] = o.PutLabel.GetNextHop()
		s.nhRefs[o.PutLabel.GetNextHop()]++
	case *vrouterv1.Op_DeleteLabel:
		if old, ok := s.Labels[o.DeleteLabel]; ok {
			s.unref(old)
			delete(s.Labels, o.DeleteLabel)
		}
	case *vrouterv1.Op_PutVni:
		s.VNIs[o.PutVni.GetVni()] = o.PutVni.GetVrf()
	case *vrouterv1.Op_DeleteVni:
		delete(s.VNIs, o.DeleteVni)
	case *vrouterv1.Op_PutRule:
		s.Rules[o.PutRule.GetId()] = proto.CloneOf(o.PutRule)
	case *vrouterv1.Op_DeleteRule:
		delete(s.Rules, o.DeleteRule)
	}
}

func (s *Set) unref(nh uint32) {
	if s.nhRefs[nh]--; s.nhRefs[nh] <= 0 {
		delete(s.nhRefs, nh)
	}
}

// Load builds a Set from a Dump's replies. A vRouter only ever holds
// objects whose references are whole, so they are recorded without the
// checks (a dump lists a composite next hop by ID, possibly before its
// members).
func Load(objs []*vrouterv1.DumpReply) (*Set, error) {
	s := New()
	for _, o := range objs {
		switch x := o.GetObject().(type) {
		case *vrouterv1.DumpReply_Vrf:
			s.VRFs[x.Vrf.GetId()] = x.Vrf
		case *vrouterv1.DumpReply_Port:
			s.Ports[x.Port.GetId()] = x.Port
		case *vrouterv1.DumpReply_NextHop:
			s.NextHops[x.NextHop.GetId()] = x.NextHop
		case *vrouterv1.DumpReply_Route:
			k, err := ParseRoute(x.Route)
			if err != nil {
				return nil, fmt.Errorf("dump: route %q: %w", x.Route.GetPrefix(), err)
			}
			s.Routes[k] = x.Route.GetNextHop()
			s.nhRefs[x.Route.GetNextHop()]++
		case *vrouterv1.DumpReply_Label:
			s.Labels[x.Label.GetLabel()] = x.Label.GetNextHop()
			s.nhRefs[x.Label.GetNextHop()]++
		case *vrouterv1.DumpReply_Vni:
			s.VNIs[x.Vni.GetVni()] = x.Vni.GetVrf()
		case *vrouterv1.DumpReply_Rule:
			s.Rules[x.Rule.GetId()] = x.Rule
		}
	}
	return s, nil
}

// Dump lists the objects of the kinds asked for (every kind when want is
// nil), each kind sorted by key, routes only of vrf unless it is 0. Ports
// are as the client sent them; the vRouter fills in what it chose.
func (s *Set) Dump(want map[string]bool, vrf uint32) []*vrouterv1.DumpReply {
	all := len(want) == 0
	var out []*vrouterv1.DumpReply
	if all || want["vrfs"] {
		for _, id := range sortedKeys(s.VRFs) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Vrf{Vrf: proto.CloneOf(s.VRFs[id])}})
		}
	}
	if all || want["ports"] {
		for _, id := range sortedKeys(s.Ports) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Port{Port: proto.CloneOf(s.Ports[id])}})
		}
	}
	if all || want["nexthops"] {
		for _, id := range sortedKeys(s.NextHops) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_NextHop{NextHop: proto.CloneOf(s.NextHops[id])}})
		}
	}
	if all || want["routes"] {
		for _, k := range SortedRoutes(s.Routes) {
			if vrf == 0 || k.VRF == vrf {
				r := &vrouterv1.Route{Vrf: k.VRF, Prefix: k.Prefix.String(), NextHop: s.Routes[k]}
				out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Route{Route: r}})
			}
		}
	}
	if all || want["labels"] {
		for _, l := range sortedKeys(s.Labels) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Label{Label: &vrouterv1.Label{Label: l, NextHop: s.Labels[l]}}})
		}
	}
	if all || want["vnis"] {
		for _, v := range sortedKeys(s.VNIs) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Vni{Vni: &vrouterv1.Vni{Vni: v, Vrf: s.VNIs[v]}}})
		}
	}
	if all || want["rules"] {
		for _, id := range sortedKeys(s.Rules) {
			out = append(out, &vrouterv1.DumpReply{Object: &vrouterv1.DumpReply_Rule{Rule: proto.CloneOf(s.Rules[id])}})
		}
	}
	return out
}

// SortedRoutes lists route keys by VRF, then address, then prefix length.
func SortedRoutes[V any](m map[RouteKey]V) []RouteKey {
	out := make([]RouteKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b RouteKey) int {
		if a.VRF != b.VRF {
			return cmp.Compare(a.VRF, b.VRF)
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	return out
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
