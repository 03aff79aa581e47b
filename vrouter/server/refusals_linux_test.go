package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftnet/weft/internal/testrig/inproc"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/nexthop"
)

func delVRF(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteVrf{DeleteVrf: id}}
}
func delPort(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeletePort{DeletePort: id}}
}
func delNH(id uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteNextHop{DeleteNextHop: id}}
}
func delRoute(vrf uint32, prefix string) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRoute{DeleteRoute: &vrouterv1.Route{Vrf: vrf, Prefix: prefix}}}
}
func delLabel(l uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_DeleteLabel{DeleteLabel: l}}
}

// engineState lists what the data path holds (VRFs and their routes,
// next hops, labels, VNIs, ports), one sorted line each: what a refused
// op must leave as it was.
func engineState(e *dataplane.Engine) string {
	var lines []string
	for _, id := range e.FIB().VRFs() {
		network, _ := e.VRFNetwork(uint32(id))
		lines = append(lines, fmt.Sprintf("vrf %d network %d", id, network))
		for p, nh := range e.FIB().VRF(id).All() {
			lines = append(lines, fmt.Sprintf("route vrf %d %s -> %d", id, p, nh))
		}
	}
	for nh := range e.NextHops().All() {
		lines = append(lines, fmt.Sprintf("next hop %d kind %v port %d vrf %d members %v", nh.ID, nh.Kind, nh.Port, nh.VRF, nh.Members))
	}
	e.Labels(func(l uint32, nh nexthop.ID) { lines = append(lines, fmt.Sprintf("label %d -> %d", l, nh)) })
	for vni, vrf := range e.VNIs() {
		lines = append(lines, fmt.Sprintf("vni %d -> vrf %d", vni, vrf))
	}
	for id := range e.Counters().Ports {
		cfg, _ := e.Port(id)
		lines = append(lines, fmt.Sprintf("port %d vrf %d", id, cfg.VRF))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestServerRefusals: through the real control API, every op that would
// leave a reference dangling is refused (InvalidArgument, saying which op
// and why, "applied N of M"), the ops before it in the request stay
// applied, and neither the objects (Dump) nor the data path change.
func TestServerRefusals(t *testing.T) {
	s, c := inproc.VRouter(t, "wtvr")
	red := &vrouterv1.Port{Id: 1, Name: "p1", Kind: vrouterv1.PortKind_PORT_KIND_TAP, Vrf: 1, Addresses: []string{"10.0.0.2/24"}}
	// VRF 1 with port 1, next hop 1 to it, a route and a label to that,
	// VNI 100 in VRF 1; next hop 2 looks up in VRF 2; composite 3 of 1.
	base := []*vrouterv1.Op{
		putVRF(1, 100, "red"), putVRF(2, 200, "blue"), putPort(red), portNH(1, 1, 100),
		putNH(&vrouterv1.NextHop{Id: 2, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_VRF_LOOKUP, Vrf: 2}),
		putNH(&vrouterv1.NextHop{Id: 3, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE, Members: []uint32{1}, Network: 100}),
		putRoute(1, "10.0.0.0/24", 1), putLabel(16, 1), putVNI(100, 1),
	}
	// undo drops what a case's setup made apart from base.
	undo := []*vrouterv1.Op{delRoute(2, "10.9.0.0/16"), delNH(5), delVRF(5)}
	port2 := &vrouterv1.Port{Id: 2, Name: "p2", Kind: vrouterv1.PortKind_PORT_KIND_TAP, Vrf: 9, Addresses: []string{"10.0.0.3/24"}}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup []*vrouterv1.Op // applied after base, before the request
		ops   []*vrouterv1.Op // the request; its last op is refused
		want  string
	}{
		{"port in a missing vrf", nil, []*vrouterv1.Op{putPort(port2)}, "ops[0] put_port 2: vrf: 9 does not exist"},
		{"vrf with a port", nil, []*vrouterv1.Op{delVRF(1)}, "delete_vrf 1: port 1 (p1) is still in vrf 1"},
		{"vrf a next hop looks up in", nil, []*vrouterv1.Op{delVRF(2)}, "delete_vrf 2: next hop 2 still looks up in vrf 2"},
		{"vrf a vni points at", []*vrouterv1.Op{delRoute(1, "10.0.0.0/24"), delLabel(16), delNH(3), delNH(1), delPort(1)},
			[]*vrouterv1.Op{delVRF(1)}, "delete_vrf 1: vni 100 still points at vrf 1"},
		{"port a next hop sends to", nil, []*vrouterv1.Op{delPort(1)}, "delete_port 1: port 1 is used by next hop 1: delete that first"},
		{"next hop to a missing port", nil, []*vrouterv1.Op{portNH(4, 7, 100)}, "put_next_hop 4: port: 7 does not exist"},
		{"next hop into a missing vrf", nil, []*vrouterv1.Op{putNH(&vrouterv1.NextHop{Id: 4, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_VRF_LOOKUP, Vrf: 9})},
			"put_next_hop 4: vrf: 9 does not exist"},
		{"composite with a missing member", nil, []*vrouterv1.Op{putNH(&vrouterv1.NextHop{Id: 4, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE, Members: []uint32{1, 77}})},
			"put_next_hop 4: composite: members[1]: nexthop 77 does not exist"},
		{"next hop used by a route and a label", nil, []*vrouterv1.Op{delNH(1)}, "delete_next_hop 1: next hop 1 is used by 2 routes or labels: delete those first"},
		{"next hop used by a label", []*vrouterv1.Op{delRoute(1, "10.0.0.0/24")}, []*vrouterv1.Op{delNH(1)},
			"delete_next_hop 1: next hop 1 is used by 1 routes or labels: delete those first"},
		{"next hop used by a route", []*vrouterv1.Op{delLabel(16)}, []*vrouterv1.Op{delNH(1)},
			"delete_next_hop 1: next hop 1 is used by 1 routes or labels: delete those first"},
		{"member of a composite", []*vrouterv1.Op{delRoute(1, "10.0.0.0/24"), delLabel(16)}, []*vrouterv1.Op{delNH(1)},
			"delete_next_hop 1: member of 1 composite next hops (first 3); remove it from them first"},
		{"route in a missing vrf", nil, []*vrouterv1.Op{putRoute(9, "10.1.0.0/16", 1)}, "put_route vrf 9 10.1.0.0/16: vrf: 9 does not exist"},
		{"route to a missing next hop", nil, []*vrouterv1.Op{putRoute(1, "10.1.0.0/16", 9)}, "put_route vrf 1 10.1.0.0/16: next_hop: 9 does not exist"},
		{"route of a bad prefix", nil, []*vrouterv1.Op{putRoute(1, "10.1.0.0/99", 1)}, "put_route vrf 1 10.1.0.0/99: prefix: "},
		{"label to a missing next hop", nil, []*vrouterv1.Op{putLabel(17, 9)}, "put_label 17: next_hop: 9 does not exist"},
		{"vni to a missing vrf", nil, []*vrouterv1.Op{putVNI(101, 9)}, "put_vni 101: vrf: 9 does not exist"},
		{"an empty op", nil, []*vrouterv1.Op{{}}, "ops[0] op: empty op"},
		// A request stops at its first refusal; what came before stays.
		{"after two good ops", nil, []*vrouterv1.Op{putVRF(5, 500, "green"), putRoute(2, "10.9.0.0/16", 3), delVRF(1)},
			"applied 2 of 3: ops[2] delete_vrf 1: port 1 (p1) is still in vrf 1"},
		{"a vrf deleted before its vni", nil, []*vrouterv1.Op{delRoute(1, "10.0.0.0/24"), delLabel(16), delNH(3), delNH(1), delPort(1), delVRF(1)},
			"applied 5 of 6: ops[5] delete_vrf 1: vni 100 still points at vrf 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Apply(ctx, &vrouterv1.ApplyRequest{Ops: slices.Concat(undo, base, tc.setup)}); err != nil {
				t.Fatalf("setup: %v", err)
			}
			// What the request's good ops leave, applied alone.
			good := tc.ops[:len(tc.ops)-1]
			if len(good) > 0 {
				if _, err := c.Apply(ctx, &vrouterv1.ApplyRequest{Ops: good}); err != nil {
					t.Fatalf("the request's good ops alone: %v", err)
				}
			}
			wantDump, wantEngine := dumpAllCtx(t, c), engineState(s.Engine())
			if _, err := c.Apply(ctx, &vrouterv1.ApplyRequest{Ops: slices.Concat(undo, base, tc.setup)}); err != nil {
				t.Fatalf("setup again: %v", err)
			}

			_, err := c.Apply(ctx, &vrouterv1.ApplyRequest{Ops: tc.ops})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want InvalidArgument saying %q", err, tc.want)
			}
			if want := fmt.Sprintf("applied %d of %d: ", len(good), len(tc.ops)); !strings.Contains(err.Error(), want) {
				t.Errorf("err %v does not say %q", err, want)
			}
			gotDump := dumpAllCtx(t, c)
			if len(gotDump) != len(wantDump) {
				t.Fatalf("dump: %d objects after the refusal, want %d:\n%v", len(gotDump), len(wantDump), gotDump)
			}
			for i := range wantDump {
				if !proto.Equal(gotDump[i], wantDump[i]) {
					t.Errorf("dump object %d: %v, want %v", i, gotDump[i], wantDump[i])
				}
			}
			if got := engineState(s.Engine()); got != wantEngine {
				t.Errorf("the data path changed on a refusal:\n%s\nwant\n%s", got, wantEngine)
			}
		})
	}
}

func dumpAllCtx(t *testing.T, c *client.Client) []*vrouterv1.DumpReply {
	t.Helper()
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	objs, err := c.DumpAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
