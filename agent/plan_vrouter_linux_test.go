package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/testrig/inproc"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/server"
)

// withoutLines drops every line of y that contains one of cut.
func withoutLines(y string, cut ...string) string {
	lines := strings.Split(y, "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool {
		return slices.ContainsFunc(cut, func(c string) bool { return strings.Contains(l, c) })
	})
	return strings.Join(lines, "\n")
}

// TestPlanAgainstTheVRouter runs the planner against the real vRouter
// server (in process, behind its control API) through a sequence of
// desired states: the reference scenario, a remote withdrawal, a network
// removed, an endpoint removed, everything back, nothing left. Each plan
// is applied as the reconciler applies it (puts, then deletes), so an
// order the vRouter refuses fails here; after each, the vRouter's Dump is
// what the agent's mirror (Installed) says, a plan against the Dump is
// empty, and the data path holds exactly the VRFs and VNIs of the Dump.
func TestPlanAgainstTheVRouter(t *testing.T) {
	srv, vr := inproc.VRouter(t, "wtpl")
	ref := mustConfig(t, referenceYAML)
	noOther := mustConfig(t, withoutLines(referenceYAML, "name: other", "name: oth1"))
	noEndpoints := mustConfig(t, withoutLines(referenceYAML, "name: leo1", "name: web1", "name: oth1", "name: pg1"))
	pg1 := Path{RD: "192.0.2.2:2", Prefix: netip.MustParsePrefix("10.0.100.3/32"), NextHop: netip.MustParseAddr("192.0.2.2"),
		RTs: []bgp.RouteTarget{rt("64512:200"), rt("64512:100")}, OriginVN: 200,
		Label: 17, Encaps: []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN}, HasVPN: true, VNI: 200, HasEVPN: true}
	oth2 := Path{RD: "192.0.2.2:3", Prefix: netip.MustParsePrefix("10.0.10.6/32"), NextHop: netip.MustParseAddr("192.0.2.2"),
		RTs: []bgp.RouteTarget{rt("64512:400")}, OriginVN: 400, Label: 18, Encaps: []packet.Encap{packet.EncapMPLSoUDP}, HasVPN: true}
	inputs := func(c *config.Config, paths ...Path) Inputs {
		return Inputs{Config: c, Underlay: netip.MustParseAddr("192.0.2.1"), Endpoints: localEndpoints(c, "a"), Paths: paths, Tunnels: allTunnels}
	}
	inst := NewInstalled()
	for _, step := range []struct {
		name     string
		in       Inputs
		networks []string // the VRFs there must be, by network
	}{
		{"reference scenario", inputs(ref, pg1, oth2), []string{"leonardo", "nginx", "other"}},
		{"pg1 withdrawn", inputs(ref, oth2), []string{"leonardo", "nginx", "other"}},
		{"network other removed", inputs(noOther, pg1, oth2), []string{"leonardo", "nginx"}},
		{"web1 removed", func() Inputs {
			in := inputs(noOther, pg1, oth2)
			in.Endpoints = slices.DeleteFunc(in.Endpoints, func(e LocalEndpoint) bool { return e.Name == "web1" })
			return in
		}(), []string{"leonardo"}},
		{"everything back", inputs(ref, pg1, oth2), []string{"leonardo", "nginx", "other"}},
		{"no endpoint left", inputs(noEndpoints, pg1, oth2), nil},
	} {
		p := MakePlan(Compute(step.in), inst)
		var puts, dels []*vrouterv1.Op
		for _, op := range p.Ops {
			if isDelete(op) {
				dels = append(dels, op)
			} else {
				puts = append(puts, op)
			}
		}
		for _, ops := range [][]*vrouterv1.Op{puts, dels} {
			if len(ops) == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := vr.Apply(ctx, &vrouterv1.ApplyRequest{Ops: ops})
			cancel()
			if err != nil {
				t.Fatalf("%s: the vRouter refused the plan: %v", step.name, err)
			}
			if n, err := inst.Apply(ops); err != nil {
				t.Fatalf("%s: the mirror refused what the vRouter took, at op %d: %v", step.name, n, err)
			}
		}
		dump := dumpVRouter(t, vr)
		checkMirror(t, step.name, inst, dump)
		got, err := FromDump(dump)
		if err != nil {
			t.Fatal(err)
		}
		if again := MakePlan(Compute(step.in), got); len(again.Ops) != 0 {
			t.Errorf("%s: not converged: a plan against the vRouter's dump has %d ops, first %v", step.name, len(again.Ops), again.Ops[0])
		}
		var names []string
		for _, v := range got.VRFs {
			names = append(names, v.GetName())
		}
		slices.Sort(names)
		if !slices.Equal(names, step.networks) {
			t.Errorf("%s: the vRouter's VRFs are %v, want %v", step.name, names, step.networks)
		}
		checkEngine(t, step.name, srv, got)
	}
}

func dumpVRouter(t *testing.T, vr *client.Client) []*vrouterv1.DumpReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	objs, err := vr.DumpAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// checkMirror: the agent's Installed lists what the vRouter's Dump does,
// but for what the vRouter chose for a port (its MAC and MTU).
func checkMirror(t *testing.T, step string, inst *Installed, dump []*vrouterv1.DumpReply) {
	t.Helper()
	clean := func(objs []*vrouterv1.DumpReply) []*vrouterv1.DumpReply {
		out := make([]*vrouterv1.DumpReply, len(objs))
		for i, o := range objs {
			o = proto.CloneOf(o)
			if p := o.GetPort(); p != nil {
				p.Mac, p.Mtu = nil, 0
			}
			out[i] = o
		}
		return out
	}
	want, got := clean(dump), clean(inst.Dump(nil, 0))
	if len(got) != len(want) {
		t.Fatalf("%s: the mirror holds %d objects, the vRouter %d:\nmirror %v\nvrouter %v", step, len(got), len(want), got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("%s: mirror %v, vRouter %v", step, got[i], want[i])
		}
	}
}

// checkEngine: the data path has exactly the VRFs (with their routes'
// count) and VNIs the Dump lists: a VRF removed took its routes with it.
func checkEngine(t *testing.T, step string, srv *server.Server, dump *Installed) {
	t.Helper()
	e := srv.Engine()
	var vrfs []string
	for _, id := range e.FIB().VRFs() {
		v4, v6 := e.FIB().VRF(id).Len()
		vrfs = append(vrfs, fmt.Sprintf("%d:%d", id, v4+v6))
	}
	routes := map[uint32]int{}
	for k := range dump.Routes {
		routes[k.VRF]++
	}
	var want []string
	for _, id := range sortedKeysU(dump.VRFs) {
		want = append(want, fmt.Sprintf("%d:%d", id, routes[id]))
	}
	if !slices.Equal(vrfs, want) {
		t.Errorf("%s: the data path's VRFs (id:routes) %v, the dump's %v", step, vrfs, want)
	}
	vnis := e.VNIs()
	if len(vnis) != len(dump.VNIs) {
		t.Errorf("%s: the data path's VNIs %v, the dump's %v", step, vnis, dump.VNIs)
	}
	for vni, vrf := range dump.VNIs {
		if vnis[vni] != vrf {
			t.Errorf("%s: the data path's VNIs %v, the dump's %v", step, vnis, dump.VNIs)
			break
		}
	}
}
