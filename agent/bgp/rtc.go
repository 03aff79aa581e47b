package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Route target constraint (RFC 4684): with Config.RouteTargetConstraint,
// every session offers the rtc family (AFI 1, SAFI 132), and the speaker
// advertises one route target membership route per route target the node
// imports (SetImportTargets), so that a reflector that speaks RTC sends
// the node only the VPN and EVPN routes that carry one of them. A peer
// that does not offer the family changes nothing: the capability is not
// negotiated, and both sides send everything as before.
//
// GoBGP applies the membership its peer advertised to what it sends too
// (server.go, filterpath): on a session with RTC, the node's own routes go
// to the reflector only for the route targets the reflector announced
// interest in (its other RTC clients' imports, or the default membership
// that a reflector with clients without RTC must advertise), and routes
// without a route target (ipv4-unicast, ipv6-unicast) are not exchanged
// at all.

// rtcFamily is GoBGP's name for the route target membership family.
var rtcFamily = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_ROUTE_TARGET_CONSTRAINTS}

// SetImportTargets makes the route target membership routes the speaker
// advertises exactly one per target of rts (a reload that adds or removes
// a network calls it again): reflectors with RTC then send the routes of
// those targets, and withdraw the others. Without
// Config.RouteTargetConstraint it does nothing.
func (s *Speaker) SetImportTargets(rts []RouteTarget) error {
	if !s.cfg.RouteTargetConstraint {
		return nil
	}
	for _, rt := range rts {
		if err := validateRT(rt); err != nil {
			return fmt.Errorf("route target membership %v: %w", rt, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	var errs []error
	for _, rt := range rts {
		if _, ok := s.members[rt]; ok {
			continue
		}
		p, err := s.membershipPath(rt, false)
		if err == nil {
			_, err = s.srv.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("route target membership %v: %w", rt, err))
			continue
		}
		s.members[rt] = struct{}{}
	}
	for rt := range s.members {
		if slices.Contains(rts, rt) {
			continue
		}
		p, err := s.membershipPath(rt, true)
		if err == nil {
			err = s.srv.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: rtcFamily, Path: p})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdrawing route target membership %v: %w", rt, err))
			continue
		}
		delete(s.members, rt)
	}
	if len(errs) > 0 {
		return fmt.Errorf("bgp: %w", errors.Join(errs...))
	}
	return nil
}

// ImportTargets returns the route targets whose membership the speaker
// advertises, sorted.
func (s *Speaker) ImportTargets() []RouteTarget {
	s.mu.Lock()
	out := make([]RouteTarget, 0, len(s.members))
	for rt := range s.members {
		out = append(out, rt)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b RouteTarget) int { return cmp.Compare(a.String(), b.String()) })
	return out
}

// membershipPath is the RFC 4684 route <our ASN>:<rt>; its next hop is
// GoBGP's to set (the session's local address, RFC 4684 3.2).
func (s *Speaker) membershipPath(rt RouteTarget, withdraw bool) (*api.Path, error) {
	nlri := bgp.NewRouteTargetMembershipNLRI(s.cfg.ASN, rtCommunity(rt))
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeMpReachNLRI(s.cfg.RouterID.String(), []bgp.AddrPrefixInterface{nlri}),
	}
	p, err := apiutil.NewPath(nlri, withdraw, attrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("encoding for GoBGP: %w", err)
	}
	return p, nil
}
