package bgp

import (
	"context"
	"fmt"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// AS loops. GoBGP v3.37.0 drops a received path whose AS_PATH holds the
// local AS before its RIB sees it (peer.go, handleUpdate), without
// withdrawing the path the same peer sent before for that prefix: a path
// that comes back looped (hosts sharing an AS behind an eBGP route
// server, a changed as-override) stayed installed with its old label
// while ctl peers showed it not accepted. RFC 4271 9.1.2 excludes a
// looped route from the decision, and the new UPDATE replaces the old
// path: so the speaker lets looped paths through GoBGP's own check
// (allow_own_asn at its maximum) and refuses them with a global import
// policy instead, which GoBGP turns into a withdrawal of the peer's path.

// allowOwnASN lets every looped path reach the import policy (GoBGP
// compares the count of the local AS with it; an AS_PATH holds at most
// 255 ASes per segment).
const allowOwnASN = 255

const loopSet, loopPolicy = "weft-own-as", "weft-refuse-as-loop"

// refuseASLoops installs the global import policy that rejects paths
// whose AS_PATH holds asn.
func refuseASLoops(ctx context.Context, srv *server.BgpServer, asn uint32) error {
	set := &api.DefinedSet{DefinedType: api.DefinedType_AS_PATH, Name: loopSet, List: []string{fmt.Sprintf("_%d_", asn)}}
	if err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set}); err != nil {
		return fmt.Errorf("as-loop policy: %w", err)
	}
	st := &api.Statement{Name: loopPolicy,
		Conditions: &api.Conditions{AsPathSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: loopSet}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT}}
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: loopPolicy, Statements: []*api.Statement{st}}}); err != nil {
		return fmt.Errorf("as-loop policy: %w", err)
	}
	pa := &api.PolicyAssignment{Name: "global", Direction: api.PolicyDirection_IMPORT,
		Policies: []*api.Policy{{Name: loopPolicy}}, DefaultAction: api.RouteAction_ACCEPT}
	if err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: pa}); err != nil {
		return fmt.Errorf("as-loop policy: %w", err)
	}
	return nil
}
