package fleetsim

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/bgpd"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// TestGeneratorFeedsReflector: the generator, in a namespace of its own,
// feeds a 100-node fleet to FRR and to gobgpd; each reflector's VPNv4 RIB
// holds every route with its node's next hop, RD, label and route target,
// and after a reflector restart the generator sends it all again.
func TestGeneratorFeedsReflector(t *testing.T) {
	testenv.SkipIfShort(t)
	for i, kind := range []bgpd.Kind{bgpd.FRR, bgpd.GoBGPd} {
		t.Run(kind.String(), func(t *testing.T) {
			f := Fleet{Nodes: 100, Networks: 30, PerNode: 3, Endpoints: 2, ASN: 64512, FirstNode: netip.MustParseAddr("198.18.0.1")}
			rr := nettest.New(t, fmt.Sprintf("wtfs-rr%d", i))
			rr.Bridge(t, "br0")
			rr.Up(t, "br0", "198.18.251.1/24")
			gen := nettest.New(t, fmt.Sprintf("wtfs-gen%d", i))
			nettest.Veth(t, rr, "gen0", "", gen, "eth0", "198.18.251.2/24")
			rr.Attach(t, "br0", "gen0")
			genAddr := netip.MustParseAddr("198.18.251.2")
			d := bgpd.Start(t, rr, bgpd.Config{Kind: kind, ASN: 64512, RouterID: netip.MustParseAddr("198.18.251.1"),
				Listen: netip.MustParseAddr("198.18.251.1"), Clients: []bgpd.Client{{Address: genAddr, Passive: true}}, Families: []bgpd.Family{bgpd.VPNv4}})
			g, err := Start(Config{Fleet: f, RouterID: genAddr, Peer: netip.MustParseAddr("198.18.251.1"), Dial: DialIn(gen.Do)})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Stop()
			check := func(sessions int) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := g.WaitSent(ctx, sessions); err != nil {
					t.Fatal(err)
				}
				var es []bgpd.RIBEntry
				for deadline := time.Now().Add(30 * time.Second); len(es) < f.Total() && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if es, err = d.VPNv4(); err != nil {
						t.Fatal(err)
					}
				}
				if len(es) != f.Total() {
					t.Fatalf("%v holds %d routes, want %d", kind, len(es), f.Total())
				}
				want := f.RoutesOf(7)
				got := 0
				for _, e := range es {
					if !slices.Equal(e.RouteTargets, []string{"64512:1007"}) {
						continue
					}
					got++
					k := slices.IndexFunc(want, func(r Route) bool { return r.NextHop == e.NextHop && r.Prefix == e.Prefix })
					if k < 0 {
						t.Fatalf("%v: %v is not one of net007's routes", kind, e)
					}
					r := want[k]
					if e.RD != r.NextHop.String()+":1007" || e.Label != r.Label || !slices.Equal(e.Encaps, []int{13}) {
						t.Errorf("%v: %v; want RD %v:1007, label %d, encap [13]", kind, e, r.NextHop, r.Label)
					}
				}
				if got != len(want) {
					t.Errorf("%v holds %d routes of net007, want %d", kind, got, len(want))
				}
			}
			check(1)
			d.Restart(t)
			check(2)
		})
	}
}
