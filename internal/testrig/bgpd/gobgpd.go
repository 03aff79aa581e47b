package bgpd

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// gobgpd (Debian's 3.10) is configured with TOML and queried with the
// gobgp CLI's JSON (-j), which is GoBGP's own JSON of the native types.

func (r *Daemon) gobgpConfig() error {
	c := r.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  port = 179\n  local-address-list = [%q]\n", c.ASN, c.RouterID.String(), c.Listen.String())
	b.WriteString("[global.apply-policy.config]\n  default-import-policy = \"accept-route\"\n  default-export-policy = \"accept-route\"\n")
	for _, cl := range c.Clients {
		b.WriteString("[[neighbors]]\n  [neighbors.config]\n")
		fmt.Fprintf(&b, "    neighbor-address = %q\n    peer-as = %d\n", cl.Address.String(), c.ASN)
		if cl.Password != "" {
			fmt.Fprintf(&b, "    auth-password = %q\n", cl.Password)
		}
		// Timers under each neighbor: a neighbor's defaults override a
		// peer group's.
		b.WriteString("  [neighbors.timers.config]\n    connect-retry = 1\n")
		if c.HoldTime > 0 {
			h := int(c.HoldTime.Seconds())
			fmt.Fprintf(&b, "    hold-time = %d\n    keepalive-interval = %d\n", h, max(h/3, 1))
		}
		fmt.Fprintf(&b, "  [neighbors.transport.config]\n    local-address = %q\n    passive-mode = %v\n", c.Listen.String(), cl.Passive)
		fmt.Fprintf(&b, "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = %q\n", c.ClusterID.String())
		fmt.Fprintf(&b, "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = %d\n", int(c.RestartTime.Seconds()))
		for _, f := range c.Families {
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", string(f))
			b.WriteString("    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n")
			if f == RTC {
				// Send a client its VPN routes (and their End-of-RIB)
				// once its memberships are in (its rtc End-of-RIB), or
				// after 3 s without one (RFC 4684 6).
				b.WriteString("    [neighbors.afi-safis.route-target-membership.config]\n      deferral-time = 3\n")
			}
		}
	}
	return os.WriteFile(filepath.Join(r.dir, "gobgpd.toml"), []byte(b.String()), 0o644)
}

func (r *Daemon) gobgpSessions() ([]Session, error) {
	out, err := r.cli("-j", "neighbor")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Conf struct {
			NeighborAddress string `json:"neighbor_address"`
		} `json:"conf"`
		State struct {
			SessionState int `json:"session_state"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("gobgp neighbor: %w: %.200s", err, out)
	}
	names := []string{"unknown", "idle", "connect", "active", "opensent", "openconfirm", "established"}
	var s []Session
	for _, n := range list {
		a, err := netip.ParseAddr(n.Conf.NeighborAddress)
		if err != nil {
			continue
		}
		st := "unknown"
		if n.State.SessionState >= 0 && n.State.SessionState < len(names) {
			st = names[n.State.SessionState]
		}
		s = append(s, Session{Neighbor: a, State: st, Established: st == "established"})
	}
	return s, nil
}

func gobgpAF(f Family) string {
	switch f {
	case VPNv4:
		return "vpnv4"
	case VPNv6:
		return "vpnv6"
	case EVPN:
		return "evpn"
	case IPv4Unicast:
		return "ipv4"
	case IPv6Unicast:
		return "ipv6"
	}
	return ""
}

type gobgpRD struct {
	Type     int             `json:"type"`
	Admin    json.RawMessage `json:"admin"`
	Assigned uint32          `json:"assigned"`
}

func (rd gobgpRD) String() string {
	admin := strings.Trim(string(rd.Admin), `"`)
	if rd.Type == 2 {
		if n, err := strconv.ParseUint(admin, 10, 32); err == nil && n <= 0xffff {
			return admin + "L:" + strconv.FormatUint(uint64(rd.Assigned), 10)
		}
	}
	return admin + ":" + strconv.FormatUint(uint64(rd.Assigned), 10)
}

type gobgpNLRI struct {
	// VPN
	Prefix string   `json:"prefix"`
	Labels []uint32 `json:"labels"`
	RD     *gobgpRD `json:"rd"`
	// EVPN
	Type  int `json:"type"`
	Value *struct {
		RD     gobgpRD `json:"rd"`
		Prefix string  `json:"prefix"`
		Label  uint32  `json:"label"`
	} `json:"value"`
}

type gobgpAttr struct {
	Type    int             `json:"type"`
	Nexthop string          `json:"nexthop"`
	Value   json.RawMessage `json:"value"`
}

type gobgpExtComm struct {
	Type       int             `json:"type"`
	Subtype    int             `json:"subtype"`
	Value      json.RawMessage `json:"value"`
	TunnelType *int            `json:"tunnel_type"`
	Mac        string          `json:"mac"`
}

func (r *Daemon) gobgpRIB(f Family) ([]RIBEntry, error) {
	return r.gobgpTable(f, "global", "rib")
}

// gobgpTable reads a table of f that the gobgp CLI shows (the global RIB,
// a neighbour's adj-in or adj-out) in the same JSON.
func (r *Daemon) gobgpTable(f Family, table ...string) ([]RIBEntry, error) {
	out, err := r.cli(append(append([]string{"-j"}, table...), "-a", gobgpAF(f))...)
	if err != nil {
		return nil, err
	}
	var m map[string][]struct {
		NLRI       gobgpNLRI   `json:"nlri"`
		Best       bool        `json:"best"`
		Stale      bool        `json:"stale"`
		Attrs      []gobgpAttr `json:"attrs"`
		NeighborIP string      `json:"neighbor-ip"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("gobgp %v: %w: %.200s", table, err, out)
	}
	var entries []RIBEntry
	for key, paths := range m {
		for _, p := range paths {
			e := RIBEntry{Best: p.Best, Stale: p.Stale}
			n := p.NLRI
			pfx := n.Prefix
			switch {
			case f == EVPN:
				if n.Type != 5 || n.Value == nil {
					continue
				}
				e.RD, e.Label, pfx = n.Value.RD.String(), n.Value.Label, n.Value.Prefix
			case n.RD != nil:
				e.RD = n.RD.String()
				if len(n.Labels) > 0 {
					e.Label = n.Labels[0]
				}
			}
			if e.Prefix, err = netip.ParsePrefix(pfx); err != nil {
				return nil, fmt.Errorf("%s: prefix %q: %w", key, pfx, err)
			}
			if a, err := netip.ParseAddr(p.NeighborIP); err == nil {
				e.Peer = a
			}
			for _, a := range p.Attrs {
				switch a.Type {
				case 3, 14: // NEXT_HOP, MP_REACH_NLRI
					if nh := a.Nexthop; nh != "" {
						if ip, err := netip.ParseAddr(nh); err == nil {
							e.NextHop = ip.Unmap()
						}
					} else if a.Type == 3 {
						var s string
						if json.Unmarshal(a.Value, &s) == nil {
							if ip, err := netip.ParseAddr(s); err == nil {
								e.NextHop = ip.Unmap()
							}
						}
					}
				case 16: // EXTENDED COMMUNITIES
					var cs []gobgpExtComm
					if err := json.Unmarshal(a.Value, &cs); err != nil {
						return nil, fmt.Errorf("%s: extended communities: %w", key, err)
					}
					for _, c := range cs {
						raw, _ := json.Marshal(c)
						e.ExtCommunities = append(e.ExtCommunities, string(raw))
						switch {
						case c.Subtype == 2 && (c.Type == 0 || c.Type == 1 || c.Type == 2):
							var v string
							if json.Unmarshal(c.Value, &v) == nil {
								e.RouteTargets = append(e.RouteTargets, v)
							}
						case c.TunnelType != nil:
							e.Encaps = append(e.Encaps, *c.TunnelType)
						case c.Type == 6 && c.Subtype == 3:
							e.RouterMAC = strings.ToLower(c.Mac)
						}
					}
				case 23: // TUNNEL ENCAPSULATION
					e.TunnelEncapVisible = true
					var tlvs []struct {
						Type int `json:"type"`
					}
					if err := json.Unmarshal(a.Value, &tlvs); err != nil {
						return nil, fmt.Errorf("%s: tunnel encapsulation: %w", key, err)
					}
					for _, t := range tlvs {
						e.TunnelEncap = append(e.TunnelEncap, t.Type)
					}
				}
			}
			entries = append(entries, e)
		}
	}
	return entries, nil
}
