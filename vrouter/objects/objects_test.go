package objects

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

func putVRF(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutVrf{PutVrf: &vrouterv1.Vrf{Id: id, Name: "n"}}}
}
func putPort(id, vrf uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutPort{PutPort: &vrouterv1.Port{Id: id, Vrf: vrf, Name: "p"}}}
}
func putNH(n *vrouterv1.NextHop) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutNextHop{PutNextHop: n}}
}
func portNH(id, port uint32) *vrouterv1.Op {
	return putNH(&vrouterv1.NextHop{Id: id, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT, Port: port})
}
func putRoute(vrf uint32, prefix string, nh uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutRoute{PutRoute: &vrouterv1.Route{Vrf: vrf, Prefix: prefix, NextHop: nh}}}
}
func delRoute(vrf uint32, prefix string) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRoute{DeleteRoute: &vrouterv1.Route{Vrf: vrf, Prefix: prefix}}}
}
func putLabel(l, nh uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutLabel{PutLabel: &vrouterv1.Label{Label: l, NextHop: nh}}}
}
func putVNI(vni, vrf uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutVni{PutVni: &vrouterv1.Vni{Vni: vni, Vrf: vrf}}}
}
func delVRF(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteVrf{DeleteVrf: id}}
}
func delPort(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeletePort{DeletePort: id}}
}
func delNH(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteNextHop{DeleteNextHop: id}}
}
func delLabel(l uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteLabel{DeleteLabel: l}}
}
func delVNI(vni uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteVni{DeleteVni: vni}}
}

// base: VRF 1 with port 1, next hop 1 to it, a route and label to that,
// VNI 100 in VRF 1; next hop 2 looks up in VRF 2; composite 3 of 1.
func base(t *testing.T) *Set {
	t.Helper()
	s := New()
	ops := []*vrouterv1.Op{
		putVRF(1), putVRF(2), putPort(1, 1), portNH(1, 1),
		putNH(&vrouterv1.NextHop{Id: 2, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_VRF_LOOKUP, Vrf: 2}),
		putNH(&vrouterv1.NextHop{Id: 3, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE, Members: []uint32{1}}),
		putRoute(1, "10.0.0.9/24", 1), putLabel(16, 1), putVNI(100, 1),
	}
	if n, err := s.Apply(ops); err != nil || n != len(ops) {
		t.Fatalf("base: applied %d: %v", n, err)
	}
	return s
}

// TestRefusals: every op that would leave a reference dangling is
// refused with the vRouter's text, and changes nothing.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		setup []*vrouterv1.Op // applied after base
		op    *vrouterv1.Op
		want  string
	}{
		{nil, putPort(2, 9), "put_port 2: vrf: 9 does not exist"},
		{nil, delVRF(1), "delete_vrf 1: port 1 (p) is still in vrf 1"},
		{nil, delVRF(2), "delete_vrf 2: next hop 2 still looks up in vrf 2"},
		{nil, delPort(1), "delete_port 1: port 1 is used by next hop 1: delete that first"},
		{nil, portNH(4, 7), "put_next_hop 4: port: 7 does not exist"},
		{nil, putNH(&vrouterv1.NextHop{Id: 4, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_VRF_LOOKUP, Vrf: 9}), "put_next_hop 4: vrf: 9 does not exist"},
		{nil, putNH(&vrouterv1.NextHop{Id: 4, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE, Members: []uint32{1, 77}}), "members[1]: nexthop 77 does not exist"},
		{nil, delNH(1), "delete_next_hop 1: next hop 1 is used by 2 routes or labels: delete those first"},
		{nil, putRoute(9, "10.1.0.0/16", 1), "put_route vrf 9 10.1.0.0/16: vrf: 9 does not exist"},
		{nil, putRoute(1, "10.1.0.0/99", 1), "prefix: "},
		{nil, putRoute(1, "10.1.0.0/16", 9), "next_hop: 9 does not exist"},
		{nil, delRoute(1, "nonsense"), "delete_route vrf 1 nonsense: prefix: "},
		{nil, putLabel(17, 9), "put_label 17: next_hop: 9 does not exist"},
		{nil, putVNI(101, 9), "put_vni 101: vrf: 9 does not exist"},
		{nil, &vrouterv1.Op{}, "ops[0] op: empty op"},
		// The VNI holds VRF 1 once the port is gone.
		{[]*vrouterv1.Op{delRoute(1, "10.0.0.0/24"), delLabel(16), delNH(3), delNH(1), delPort(1)}, delVRF(1),
			"ops[0] delete_vrf 1: vni 100 still points at vrf 1"},
		// A next hop a route or a label uses, or a composite's member.
		{[]*vrouterv1.Op{delLabel(16)}, delNH(1), "delete_next_hop 1: next hop 1 is used by 1 routes or labels: delete those first"},
		{[]*vrouterv1.Op{delRoute(1, "10.0.0.0/24")}, delNH(1), "delete_next_hop 1: next hop 1 is used by 1 routes or labels: delete those first"},
		{[]*vrouterv1.Op{delRoute(1, "10.0.0.0/24"), delLabel(16)}, delNH(1),
			"delete_next_hop 1: member of 1 composite next hops (first 3); remove it from them first"},
	} {
		s := base(t)
		if _, err := s.Apply(tc.setup); err != nil {
			t.Fatalf("%s: setup: %v", Name(tc.op), err)
		}
		before := s.Dump(nil, 0)
		n, err := s.Apply([]*vrouterv1.Op{tc.op})
		var oe *OpError
		if n != 0 || !errors.As(err, &oe) || oe.Index != 0 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: applied %d, err %v; want %q", Name(tc.op), n, err, tc.want)
		}
		after := s.Dump(nil, 0)
		if len(after) != len(before) {
			t.Errorf("%s: refused, but %d objects became %d", Name(tc.op), len(before), len(after))
			continue
		}
		for i := range before {
			if !proto.Equal(before[i], after[i]) {
				t.Errorf("%s: refused, but %v became %v", Name(tc.op), before[i], after[i])
			}
		}
	}
	// A request stops at its first refusal; what came before stays.
	s := base(t)
	n, err := s.Apply([]*vrouterv1.Op{delRoute(1, "10.0.0.0/24"), delLabel(16), delNH(3), delNH(1), delPort(1), delVRF(1), delVNI(100)})
	var oe *OpError
	if n != 5 || !errors.As(err, &oe) || oe.Index != 5 || !strings.Contains(err.Error(), "ops[5] delete_vrf 1: vni 100 still points at vrf 1") {
		t.Errorf("a VRF deleted before its VNI: applied %d: %v", n, err)
	}
	if len(s.Ports) != 0 || len(s.NextHops) != 1 || s.VRFs[1] == nil || s.VNIs[100] != 1 {
		t.Errorf("after the refusal at ops[5]: ports %v next hops %v vrfs %v vnis %v", s.Ports, s.NextHops, s.VRFs, s.VNIs)
	}
}

// TestApply: puts replace by key, deletes of what is not there are no-ops,
// a VRF takes its routes with it, and ApplyFunc records nothing its
// program refused.
func TestApply(t *testing.T) {
	s := base(t)
	k := RouteKey{VRF: 1, Prefix: netip.MustParsePrefix("10.0.0.0/24")}
	if s.Routes[k] != 1 {
		t.Fatalf("route stored under %v: %v", k, s.Routes)
	}
	ops := []*vrouterv1.Op{
		putRoute(2, "10.9.0.0/16", 3), putLabel(16, 3), delLabel(99), delNH(99), delPort(99), delVRF(99),
		delRoute(1, "10.0.0.0/24"), delNH(2), delVRF(2), delRoute(2, "10.9.0.0/16"),
	}
	if n, err := s.Apply(ops); err != nil || n != len(ops) {
		t.Fatalf("applied %d: %v", n, err)
	}
	if len(s.Routes) != 0 || s.Labels[16] != 3 || s.nhRefs[1] != 0 || s.nhRefs[3] != 1 {
		t.Errorf("routes %v labels %v refs %v", s.Routes, s.Labels, s.nhRefs)
	}
	if _, err := s.Apply([]*vrouterv1.Op{delNH(1)}); err == nil {
		t.Error("deleted next hop 1, a member of composite 3")
	}
	refuse := errors.New("data path says no")
	n, err := s.ApplyFunc([]*vrouterv1.Op{putVRF(5), putVRF(6)}, func(op *vrouterv1.Op) error {
		if op.GetPutVrf().GetId() == 6 {
			return refuse
		}
		return nil
	})
	if n != 1 || !errors.Is(err, refuse) || s.VRFs[5] == nil || s.VRFs[6] != nil {
		t.Errorf("ApplyFunc: %d, %v, vrfs %v", n, err, s.VRFs)
	}
	// Load reads back what Dump lists.
	l, err := Load(s.Dump(nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Dump(nil, 0)) != len(s.Dump(nil, 0)) || l.nhRefs[3] != 1 {
		t.Errorf("Load: %d objects, want %d; refs %v", len(l.Dump(nil, 0)), len(s.Dump(nil, 0)), l.nhRefs)
	}
}
