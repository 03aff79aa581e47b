package bgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// attrCache decodes the best paths of a watch: the routes of one remote
// node share their path attributes but for MP_REACH (which holds each
// route's NLRI), so those are decoded once per distinct encoding, and
// the routes share the decoded route targets and encapsulations. Decoding
// each path's attributes through GoBGP's API types was a tenth of the
// agent's CPU while a table streamed in. Owned by one goroutine.
type attrCache struct {
	parts map[string]attrPart
	key   []byte // reused
}

// maxAttrSets bounds the cache; past it, it starts again (a fleet has a
// few encodings per remote node, not thousands).
const maxAttrSets = 4096

var mpReachURL = "type.googleapis.com/" + string((&api.MpReachNLRIAttribute{}).ProtoReflect().Descriptor().FullName())

// route is routeFromAPI, with the attributes but MP_REACH from the cache.
func (c *attrCache) route(p *api.Path) (Route, error) {
	if p == nil || p.Family == nil || p.IsWithdraw || len(p.PattrsBinary) > 0 || len(p.Pattrs) == 0 {
		return routeFromAPI(p) // not a watch event's form
	}
	fam, ok := familyOf(apiutil.ToRouteFamily(p.Family))
	if !ok {
		return Route{}, errUnsupported
	}
	var mp *anypb.Any
	c.key = c.key[:0]
	for _, a := range p.Pattrs {
		if a.GetTypeUrl() == mpReachURL && mp == nil {
			mp = a
			continue
		}
		c.key = append(c.key, a.GetTypeUrl()...)
		c.key = binary.AppendUvarint(c.key, uint64(len(a.GetValue())))
		c.key = append(c.key, a.GetValue()...)
	}
	part, ok := c.parts[string(c.key)]
	if !ok {
		var others []*anypb.Any
		for _, a := range p.Pattrs {
			if a != mp {
				others = append(others, a)
			}
		}
		attrs, err := apiutil.UnmarshalPathAttributes(others)
		if err != nil {
			return Route{}, fmt.Errorf("%s: attributes: %w", fam, err)
		}
		if err := part.decode(attrs); err != nil {
			return Route{}, fmt.Errorf("%s: %w", fam, err)
		}
		if c.parts == nil || len(c.parts) >= maxAttrSets {
			c.parts = map[string]attrPart{}
		}
		c.parts[string(c.key)] = part
	}
	if mp != nil {
		// Only its next hop: the NLRI comes from p.Nlri.
		var m api.MpReachNLRIAttribute
		if err := proto.Unmarshal(mp.GetValue(), &m); err != nil {
			return Route{}, fmt.Errorf("%s: MP_REACH: %w", fam, err)
		}
		if len(m.NextHops) > 0 {
			nh, err := netip.ParseAddr(m.NextHops[0])
			if err != nil {
				return Route{}, fmt.Errorf("%s: next hop: %w", fam, err)
			}
			part.mpNextHop = nh.Unmap()
		}
	}
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return Route{}, fmt.Errorf("%s: nlri: %w", fam, err)
	}
	r := Route{Family: fam}
	if err := r.decodeNLRI(nlri); err != nil {
		if errors.Is(err, errUnsupported) {
			return Route{}, err
		}
		return Route{}, fmt.Errorf("%s %v: %w", fam, nlri, err)
	}
	if err := r.finish(part); err != nil {
		return Route{}, err
	}
	r.Stale = p.Stale
	if a, err := netip.ParseAddr(p.NeighborIp); err == nil && !a.IsUnspecified() {
		r.Peer = a.Unmap()
	}
	return r, nil
}
