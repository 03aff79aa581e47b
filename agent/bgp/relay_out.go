package bgp

import (
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// What GoBGP sends its peers, corrected where GoBGP v3.37.0 cannot be
// configured (capabilitiesFromConfig and the End-of-RIB after a restart,
// in its fsm.go and server.go):
//
//   - its OPEN carries the machine's hostname (os.Hostname) in the FQDN
//     capability: the speaker's configured hostname replaces it, so that
//     a peer's `show bgp neighbors` names the node as weft.yaml does;
//   - its OPEN offers the Extended Next Hop capability (RFC 8950) for
//     every family but IPv6 unicast, IPv6 VPN and EVPN included, which
//     RFC 8950 does not define and FRR reports as unexpected: it is left
//     out altogether, since Weft neither sends nor accepts an IPv6 next
//     hop for IPv4 routes (Route.Validate);
//
// (The End-of-RIB GoBGP sends for a family the peer did not offer is
// dropped by the session, internal/bgpguard, for every GoBGP.)

// rewriteOpen is GoBGP's OPEN m as the peer gets it; nil = unchanged.
func rewriteOpen(m []byte, hostname string) []byte {
	msg, err := bgp.ParseBGPMessage(m)
	if err != nil {
		return nil
	}
	open, ok := msg.Body.(*bgp.BGPOpen)
	if !ok {
		return nil
	}
	changed := false
	params := open.OptParams[:0]
	for _, p := range open.OptParams {
		pc, ok := p.(*bgp.OptionParameterCapability)
		if !ok {
			params = append(params, p)
			continue
		}
		caps := pc.Capability[:0]
		for _, c := range pc.Capability {
			switch c.(type) {
			case *bgp.CapExtendedNexthop:
				changed = true
				continue
			case *bgp.CapFQDN:
				if hostname != "" {
					c = bgp.NewCapFQDN(hostname, "")
					changed = true
				}
			}
			caps = append(caps, c)
		}
		if len(caps) == 0 {
			continue
		}
		params = append(params, bgp.NewOptionParameterCapability(caps))
	}
	if !changed {
		return nil
	}
	out, err := bgp.NewBGPOpenMessage(open.MyAS, open.HoldTime, open.ID.String(), params).Serialize()
	if err != nil {
		return nil
	}
	return out
}
