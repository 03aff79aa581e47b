package agent

import (
	"bytes"
	"net/netip"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/objects"
	"github.com/weftnet/weft/vrouter/packet"
)

// Installed is the vRouter's state as Dump returns it, kept current by
// Apply with the ops the vRouter accepted (the same rules the vRouter
// applies them by, package vrouter/objects).
type Installed struct {
	objects.Set
	// tunnelKeys caches the nhKey of each installed tunnel next hop, by
	// ID, with the object it was made from: a put replaces the object,
	// which makes its entry stale (installedNHKeys).
	tunnelKeys map[uint32]cachedKey
}

type cachedKey struct {
	nh  *vrouterv1.NextHop
	key string
}

type installedRoute = objects.RouteKey

// NewInstalled is an empty vRouter.
func NewInstalled() *Installed {
	return &Installed{Set: *objects.New()}
}

// FromDump builds Installed from a Dump's replies.
func FromDump(objs []*vrouterv1.DumpReply) (*Installed, error) {
	s, err := objects.Load(objs)
	if err != nil {
		return nil, err
	}
	return &Installed{Set: *s}, nil
}

// Plan is the ops that take the vRouter from Installed to Desired, in an
// order the vRouter accepts (what is referenced exists before it is
// referenced, and is deleted only after what references it), plus the
// IDs chosen, which the agent needs to advertise (labels).
type Plan struct {
	Ops        []*vrouterv1.Op
	VRFIDs     map[string]uint32 // network -> VRF ID (also the RD's assigned number)
	PortIDs    map[string]uint32 // endpoint -> port ID
	LabelOf    map[string]uint32 // endpoint -> MPLS label
	NextHopIDs map[string]uint32
}

// ids is p without its ops and next hop IDs: what the agent keeps of it
// until the next reconcile (for announcements and the local API), not a
// copy of each remote path.
func (p *Plan) ids() *Plan {
	return &Plan{VRFIDs: p.VRFIDs, PortIDs: p.PortIDs, LabelOf: p.LabelOf}
}

// firstLabel is the first MPLS label the agent allocates: labels 0-15 are
// reserved, and low numbers are easier to spot in dumps when they are not.
const firstLabel = 16

// MakePlan assigns IDs (reusing those of installed objects with the same
// meaning, so an agent restart changes nothing) and lists the ops.
func MakePlan(d *Desired, in *Installed) *Plan {
	p := &Plan{VRFIDs: map[string]uint32{}, PortIDs: map[string]uint32{}, LabelOf: map[string]uint32{}, NextHopIDs: map[string]uint32{}}

	// Semantic keys of installed objects.
	vrfByName := map[string]uint32{}
	for id, v := range in.VRFs {
		vrfByName[v.GetName()] = id
	}
	portByName := map[string]uint32{}
	portName := map[uint32]string{}
	for id, pt := range in.Ports {
		portByName[pt.GetName()] = id
		portName[id] = pt.GetName()
	}
	nhKeyOf := installedNHKeys(in, portName)
	nhByKey := map[string]uint32{}
	for id, k := range nhKeyOf {
		nhByKey[k] = id
	}
	labelByEndpoint := map[string]uint32{}
	for l, nh := range in.Labels {
		if k, ok := nhKeyOf[nh]; ok && len(k) > 5 && k[:5] == "port:" {
			labelByEndpoint[k[5:]] = l
		}
	}

	vrfIDs := newAlloc(1, keys(in.VRFs))
	for _, name := range sortedKeysS(d.VRFs) {
		p.VRFIDs[name] = vrfIDs.get(vrfByName, name)
	}
	portIDs := newAlloc(1, keys(in.Ports))
	for _, name := range sortedKeysS(d.Ports) {
		p.PortIDs[name] = portIDs.get(portByName, name)
	}
	nhIDs := newAlloc(1, keys(in.NextHops))
	nhKeys := sortedKeysS(d.NextHops)
	for _, k := range nhKeys {
		p.NextHopIDs[k] = nhIDs.get(nhByKey, k)
	}
	labels := newAlloc(firstLabel, keys(in.Labels))
	for _, ep := range sortedKeysS(d.Labels) {
		p.LabelOf[ep] = labels.get(labelByEndpoint, ep)
	}

	var puts, dels []*vrouterv1.Op
	// VRFs.
	wantVRF := map[uint32]bool{}
	for _, name := range sortedKeysS(d.VRFs) {
		v := proto.CloneOf(d.VRFs[name])
		v.Id = p.VRFIDs[name]
		wantVRF[v.Id] = true
		if !proto.Equal(in.VRFs[v.Id], v) {
			puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutVrf{PutVrf: v}})
		}
	}
	// Ports.
	wantPort := map[uint32]bool{}
	for _, name := range sortedKeysS(d.Ports) {
		pt := proto.CloneOf(d.Ports[name])
		pt.Id = p.PortIDs[name]
		pt.Vrf = p.VRFIDs[d.PortNetwork[name]]
		wantPort[pt.Id] = true
		if !samePort(in.Ports[pt.Id], pt) {
			puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutPort{PutPort: pt}})
		}
	}
	// Next hops: leaves first, composites after their members.
	wantNH := map[uint32]bool{}
	var composites []*vrouterv1.NextHop
	for _, k := range nhKeys {
		nh := d.NextHops[k]
		if nh.GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL {
			// Most next hops: d's own object takes its ID, no copy.
			nh.Id = p.NextHopIDs[k]
			wantNH[nh.Id] = true
			if !sameTunnel(in.NextHops[nh.Id], nh) {
				puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutNextHop{PutNextHop: nh}})
			}
			continue
		}
		nh = proto.CloneOf(nh)
		nh.Id = p.NextHopIDs[k]
		wantNH[nh.Id] = true
		switch nh.GetKind() {
		case vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT:
			nh.Port = p.PortIDs[k[5:]]
		case vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE:
			for _, m := range d.Composites[k] {
				nh.Members = append(nh.Members, p.NextHopIDs[m])
			}
			slices.Sort(nh.Members)
			if !proto.Equal(in.NextHops[nh.Id], nh) {
				composites = append(composites, nh)
			}
			continue
		}
		if !proto.Equal(in.NextHops[nh.Id], nh) {
			puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutNextHop{PutNextHop: nh}})
		}
	}
	for _, nh := range composites {
		puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutNextHop{PutNextHop: nh}})
	}
	// Routes.
	// Only the routes that change are sorted (the ops' order is
	// deterministic): most of a large table is unchanged at a reconcile.
	wantRoute := make(map[installedRoute]bool, len(d.Routes))
	var putRoutes []routeKey
	for rk, nhk := range d.Routes {
		ir := installedRoute{VRF: p.VRFIDs[rk.Network], Prefix: rk.Prefix}
		wantRoute[ir] = true
		if cur, ok := in.Routes[ir]; !ok || cur != p.NextHopIDs[nhk] {
			putRoutes = append(putRoutes, rk)
		}
	}
	sortRouteKeys(putRoutes)
	for _, rk := range putRoutes {
		vrf, nh := p.VRFIDs[rk.Network], p.NextHopIDs[d.Routes[rk]]
		puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutRoute{PutRoute: &vrouterv1.Route{Vrf: vrf, Prefix: rk.Prefix.String(), NextHop: nh}}})
	}
	// Labels and VNIs.
	wantLabel := map[uint32]bool{}
	for _, ep := range sortedKeysS(d.Labels) {
		l, nh := p.LabelOf[ep], p.NextHopIDs[d.Labels[ep]]
		wantLabel[l] = true
		if cur, ok := in.Labels[l]; !ok || cur != nh {
			puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutLabel{PutLabel: &vrouterv1.Label{Label: l, NextHop: nh}}})
		}
	}
	wantVNI := map[uint32]bool{}
	for _, vni := range sortedKeysU(d.VNIs) {
		vrf := p.VRFIDs[d.VNIs[vni]]
		wantVNI[vni] = true
		if cur, ok := in.VNIs[vni]; !ok || cur != vrf {
			puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutVni{PutVni: &vrouterv1.Vni{Vni: vni, Vrf: vrf}}})
		}
	}
	// Rules.
	wantRule := map[uint32]bool{}
	for _, r := range d.Rules {
		wantRule[r.GetId()] = true
		if !proto.Equal(in.Rules[r.GetId()], r) {
			puts = append(puts, &vrouterv1.Op{Op: &vrouterv1.Op_PutRule{PutRule: r}})
		}
	}

	// Deletes, referrers first.
	var delRoutes []installedRoute
	for ir := range in.Routes {
		if !wantRoute[ir] && wantVRF[ir.VRF] {
			delRoutes = append(delRoutes, ir)
		}
	}
	sortInstalledRoutes(delRoutes)
	for _, ir := range delRoutes {
		dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRoute{DeleteRoute: &vrouterv1.Route{Vrf: ir.VRF, Prefix: ir.Prefix.String()}}})
	}
	for _, l := range sortedKeysU(in.Labels) {
		if !wantLabel[l] {
			dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteLabel{DeleteLabel: l}})
		}
	}
	for _, v := range sortedKeysU(in.VNIs) {
		if !wantVNI[v] {
			dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteVni{DeleteVni: v}})
		}
	}
	for _, r := range sortedKeysU(in.Rules) {
		if !wantRule[r] {
			dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRule{DeleteRule: r}})
		}
	}
	// VRFs going away take their routes with them, so drop those VRFs
	// before the next hops their routes name.
	for _, id := range sortedKeysU(in.VRFs) {
		if !wantVRF[id] {
			for ir := range in.Routes {
				if ir.VRF == id {
					dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRoute{DeleteRoute: &vrouterv1.Route{Vrf: ir.VRF, Prefix: ir.Prefix.String()}}})
				}
			}
		}
	}
	var leafDels []*vrouterv1.Op
	for _, id := range sortedKeysU(in.NextHops) {
		if wantNH[id] {
			continue
		}
		op := &vrouterv1.Op{Op: &vrouterv1.Op_DeleteNextHop{DeleteNextHop: id}}
		if in.NextHops[id].GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE {
			dels = append(dels, op)
		} else {
			leafDels = append(leafDels, op)
		}
	}
	dels = append(dels, leafDels...)
	for _, id := range sortedKeysU(in.Ports) {
		if !wantPort[id] {
			dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeletePort{DeletePort: id}})
		}
	}
	for _, id := range sortedKeysU(in.VRFs) {
		if !wantVRF[id] {
			dels = append(dels, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteVrf{DeleteVrf: id}})
		}
	}
	p.Ops = append(puts, dels...)
	return p
}

// samePort compares a desired port with the installed one, ignoring what
// the vRouter filled in that the agent left open (MAC, MTU).
func samePort(installed, want *vrouterv1.Port) bool {
	if installed == nil {
		return false
	}
	got := proto.CloneOf(installed)
	if len(want.GetMac()) == 0 {
		got.Mac = nil
	}
	if want.GetMtu() == 0 {
		got.Mtu = 0
	}
	return proto.Equal(got, want)
}

// sameTunnel is proto.Equal for tunnel next hops, field by field: it runs
// for every remote path at every reconcile, and proto.Equal's reflection
// made it a tenth of the agent's CPU. TestSameTunnelKnowsEveryField
// fails when NextHop gains a field this does not compare.
func sameTunnel(a, b *vrouterv1.NextHop) bool {
	return a != nil && a.GetId() == b.GetId() && a.GetKind() == b.GetKind() && a.GetPort() == b.GetPort() &&
		a.GetEncap() == b.GetEncap() && a.GetUnderlay() == b.GetUnderlay() && a.GetLabel() == b.GetLabel() &&
		a.GetVni() == b.GetVni() && bytes.Equal(a.GetRouterMac(), b.GetRouterMac()) && slices.Equal(a.GetMembers(), b.GetMembers()) &&
		a.GetNetwork() == b.GetNetwork() && a.GetVrf() == b.GetVrf() && slices.Equal(a.GetAcceptEncaps(), b.GetAcceptEncaps())
}

// installedNHKeys names installed next hops the way Compute does. Tunnel
// next hops' names are kept in in.tunnelKeys from one reconcile to the
// next (there is one per remote path).
func installedNHKeys(in *Installed, portName map[uint32]string) map[uint32]string {
	out := make(map[uint32]string, len(in.NextHops))
	if in.tunnelKeys == nil {
		in.tunnelKeys = map[uint32]cachedKey{}
	}
	for id, nh := range in.NextHops {
		switch nh.GetKind() {
		case vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT:
			if n, ok := portName[nh.GetPort()]; ok {
				out[id] = portNHKey(n)
			}
		case vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL:
			if c, ok := in.tunnelKeys[id]; ok && c.nh == nh {
				out[id] = c.key
				continue
			}
			u, err := netip.ParseAddr(nh.GetUnderlay())
			if err != nil {
				continue
			}
			var rmac packet.MAC
			copy(rmac[:], nh.GetRouterMac())
			k := tunnelNHKey(nh.GetEncap().Packet(), u, nh.GetLabel(), nh.GetVni(), rmac, nh.GetNetwork())
			in.tunnelKeys[id] = cachedKey{nh, k}
			out[id] = k
		}
	}
	if len(in.tunnelKeys) > len(in.NextHops) {
		for id, c := range in.tunnelKeys {
			if in.NextHops[id] != c.nh {
				delete(in.tunnelKeys, id)
			}
		}
	}
	for id, nh := range in.NextHops {
		if nh.GetKind() != vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE {
			continue
		}
		var ms []string
		for _, m := range nh.GetMembers() {
			if k, ok := out[m]; ok {
				ms = append(ms, k)
			}
		}
		if len(ms) == len(nh.GetMembers()) {
			slices.Sort(ms)
			out[id] = compositeNHKey(ms, nh.GetNetwork())
		}
	}
	return out
}

// alloc hands out the lowest IDs not in use, reusing known ones.
type alloc struct {
	next uint32
	used map[uint32]bool
}

func newAlloc(first uint32, used []uint32) *alloc {
	a := &alloc{next: first, used: map[uint32]bool{}}
	for _, u := range used {
		a.used[u] = true
	}
	return a
}

// get returns known[key] if present (it stays in use), else a fresh ID.
func (a *alloc) get(known map[string]uint32, key string) uint32 {
	if id, ok := known[key]; ok {
		delete(known, key) // one object per installed ID
		return id
	}
	for a.used[a.next] {
		a.next++
	}
	a.used[a.next] = true
	return a.next
}

func keys[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedKeysU[V any](m map[uint32]V) []uint32 {
	out := keys(m)
	slices.Sort(out)
	return out
}

func sortedKeysS[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortInstalledRoutes(out []installedRoute) {
	slices.SortFunc(out, func(a, b installedRoute) int {
		if a.VRF != b.VRF {
			return int(a.VRF) - int(b.VRF)
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
}

// isDelete reports whether op removes something.
func isDelete(op *vrouterv1.Op) bool {
	switch op.GetOp().(type) {
	case *vrouterv1.Op_DeleteVrf, *vrouterv1.Op_DeletePort, *vrouterv1.Op_DeleteNextHop, *vrouterv1.Op_DeleteRoute,
		*vrouterv1.Op_DeleteLabel, *vrouterv1.Op_DeleteVni, *vrouterv1.Op_DeleteRule:
		return true
	}
	return false
}
