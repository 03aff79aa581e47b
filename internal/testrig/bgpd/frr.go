package bgpd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// FRR's bgpd runs without zebra (-Z), so it has no kernel routes and takes
// every next hop as reachable.

func (r *Daemon) writeConfig() error {
	switch r.cfg.Kind {
	case FRR:
		return r.frrConfig()
	case GoBGPd:
		return r.gobgpConfig()
	case BIRD:
		return r.birdConfig()
	}
	return fmt.Errorf("unknown kind %d", int(r.cfg.Kind))
}

func (r *Daemon) command() (string, []string) {
	switch r.cfg.Kind {
	case FRR:
		return "/usr/lib/frr/bgpd", []string{
			"-Z", // no zebra
			"-f", filepath.Join(r.dir, "bgpd.conf"),
			"-i", filepath.Join(r.dir, "bgpd.pid"),
			"--vty_socket", r.dir,
			"-P", "0", // no vty TCP port: vtysh uses the socket
			"-l", r.cfg.Listen.String(),
		}
	case GoBGPd:
		return "gobgpd", []string{
			"-f", filepath.Join(r.dir, "gobgpd.toml"),
			"-t", "toml",
			"--api-hosts", "127.0.0.1:50051", // the namespace's own loopback
			"--log-level", "info",
		}
	case BIRD:
		return "bird", []string{
			"-f",
			"-c", filepath.Join(r.dir, "bird.conf"),
			"-s", filepath.Join(r.dir, "bird.ctl"),
			"-P", filepath.Join(r.dir, "bird.pid"),
		}
	}
	return "false", nil
}

func frrAFI(f Family) string {
	switch f {
	case VPNv4:
		return "ipv4 vpn"
	case VPNv6:
		return "ipv6 vpn"
	case EVPN:
		return "l2vpn evpn"
	case IPv4Unicast:
		return "ipv4 unicast"
	case IPv6Unicast:
		return "ipv6 unicast"
	}
	return ""
}

func (r *Daemon) frrConfig() error {
	c := r.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "hostname rr\nlog file %s informational\n", filepath.Join(r.dir, "bgpd.log"))
	b.WriteString("debug bgp neighbor-events\n")
	if c.FRRConfig != "" {
		b.WriteString(c.FRRConfig)
		return r.writeFRRConfig(b.String())
	}
	fmt.Fprintf(&b, "router bgp %d\n", c.ASN)
	fmt.Fprintf(&b, " bgp router-id %v\n bgp cluster-id %v\n", c.RouterID, c.ClusterID)
	b.WriteString(" no bgp default ipv4-unicast\n no bgp ebgp-requires-policy\n")
	// The default 1000 ms holds the first UPDATE back by about a second.
	b.WriteString(" coalesce-time 20\n")
	fmt.Fprintf(&b, " bgp graceful-restart restart-time %d\n", int(c.RestartTime.Seconds()))
	b.WriteString(" neighbor C peer-group\n")
	fmt.Fprintf(&b, " neighbor C remote-as %d\n neighbor C timers connect 1\n neighbor C update-source %v\n", c.ASN, c.Listen)
	if c.HoldTime > 0 {
		h := int(c.HoldTime.Seconds())
		fmt.Fprintf(&b, " neighbor C timers %d %d\n", max(h/3, 1), h)
	}
	for _, cl := range c.Clients {
		fmt.Fprintf(&b, " neighbor %v peer-group C\n", cl.Address)
		if cl.Password != "" {
			fmt.Fprintf(&b, " neighbor %v password %s\n", cl.Address, cl.Password)
		}
		if cl.Passive {
			fmt.Fprintf(&b, " neighbor %v passive\n", cl.Address)
		}
	}
	for _, f := range c.Families {
		fmt.Fprintf(&b, " address-family %s\n  neighbor C activate\n  neighbor C route-reflector-client\n exit-address-family\n", frrAFI(f))
	}
	return r.writeFRRConfig(b.String())
}

// writeFRRConfig writes bgpd.conf where bgpd, once it has dropped to the
// frr user, can read it.
func (r *Daemon) writeFRRConfig(conf string) error {
	path := filepath.Join(r.dir, "bgpd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o640); err != nil {
		return err
	}
	// bgpd drops to the frr user: it must own its directory (pid file,
	// vty socket, log). -u root fails on the vty group.
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("user frr: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{r.dir, path} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func (r *Daemon) frrSessions() ([]Session, error) {
	out, err := r.cli("show bgp neighbors json")
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("show bgp neighbors json: %w: %.200s", err, out)
	}
	var s []Session
	for k, v := range m {
		a, err := netip.ParseAddr(k)
		if err != nil {
			continue
		}
		var n struct {
			BGPState string `json:"bgpState"`
		}
		if err := json.Unmarshal(v, &n); err != nil {
			continue
		}
		st := strings.ToLower(n.BGPState)
		s = append(s, Session{Neighbor: a, State: st, Established: st == "established"})
	}
	return s, nil
}

// frrPath is the part of a path of FRR's detailed JSON that we read.
type frrPath struct {
	VNI               string `json:"VNI"`
	RemoteLabel       *int64 `json:"remoteLabel"`
	Stale             bool   `json:"stale"`
	ExtendedCommunity struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
	Bestpath struct {
		Overall bool `json:"overall"`
	} `json:"bestpath"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

func (p frrPath) entry(rd string, pfx netip.Prefix) RIBEntry {
	e := RIBEntry{RD: rd, Prefix: pfx, Stale: p.Stale, Best: p.Bestpath.Overall}
	if p.RemoteLabel != nil {
		e.Label = uint32(*p.RemoteLabel)
	}
	if p.VNI != "" {
		if v, err := strconv.ParseUint(p.VNI, 10, 32); err == nil {
			e.Label = uint32(v)
		}
	}
	if len(p.Nexthops) > 0 {
		if a, err := netip.ParseAddr(p.Nexthops[0].IP); err == nil {
			e.NextHop = a.Unmap()
		}
	}
	if a, err := netip.ParseAddr(p.Peer.PeerID); err == nil {
		e.Peer = a
	}
	for _, c := range strings.Fields(p.ExtendedCommunity.String) {
		e.ExtCommunities = append(e.ExtCommunities, c)
		switch {
		case strings.HasPrefix(c, "RT:"):
			e.RouteTargets = append(e.RouteTargets, c[3:])
		case strings.HasPrefix(c, "ET:"):
			if v, err := strconv.Atoi(c[3:]); err == nil {
				e.Encaps = append(e.Encaps, v)
			}
		case strings.HasPrefix(c, "Rmac:"):
			e.RouterMAC = strings.ToLower(c[5:])
		}
	}
	return e
}

func (r *Daemon) frrRIB(f Family) ([]RIBEntry, error) {
	if f == EVPN {
		return r.frrEVPN()
	}
	afi := frrAFI(f)
	out, err := r.cli("show bgp " + afi + " json")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(out) == "" {
		return nil, nil // FRR prints nothing for an empty table
	}
	var list struct {
		Routes struct {
			RDs map[string]map[string]json.RawMessage `json:"routeDistinguishers"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("show bgp %s json: %w: %.200s", afi, err, out)
	}
	// The listing has neither labels nor communities: ask for each
	// prefix's details, all in one vtysh run.
	type key struct {
		rd  string
		pfx netip.Prefix
	}
	var keys []key
	var cmds []string
	for rd, prefixes := range list.Routes.RDs {
		for p := range prefixes {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				continue
			}
			keys = append(keys, key{rd, pfx})
			cmds = append(cmds, fmt.Sprintf("show bgp %s rd %s %s json", afi, rd, pfx))
		}
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	var entries []RIBEntry
	// vtysh takes many -c; a few hundred per run keeps argv small.
	for start := 0; start < len(cmds); start += 200 {
		end := min(start+200, len(cmds))
		out, err := r.cli(cmds[start:end]...)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(out)))
		for i := start; i < end; i++ {
			var detail map[string]struct {
				Paths []frrPath `json:"paths"`
			}
			if err := dec.Decode(&detail); err != nil {
				if err == io.EOF {
					break
				}
				return nil, fmt.Errorf("%s: %w", cmds[i], err)
			}
			for rd, d := range detail {
				for _, p := range d.Paths {
					entries = append(entries, p.entry(rd, keys[i].pfx))
				}
			}
		}
	}
	return entries, nil
}

func (r *Daemon) frrEVPN() ([]RIBEntry, error) {
	out, err := r.cli("show bgp l2vpn evpn route detail json")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("show bgp l2vpn evpn route detail json: %w: %.200s", err, out)
	}
	var entries []RIBEntry
	for rd, raw := range m {
		var routes map[string]json.RawMessage
		if json.Unmarshal(raw, &routes) != nil {
			continue // numPrefix and friends
		}
		for k, v := range routes {
			if !strings.HasPrefix(k, "[5]:") {
				continue
			}
			var rt struct {
				IPLen int         `json:"ipLen"`
				IP    string      `json:"ip"`
				Paths [][]frrPath `json:"paths"`
			}
			if err := json.Unmarshal(v, &rt); err != nil {
				return nil, fmt.Errorf("evpn %s %s: %w", rd, k, err)
			}
			a, err := netip.ParseAddr(rt.IP)
			if err != nil {
				return nil, fmt.Errorf("evpn %s %s: ip %q: %w", rd, k, rt.IP, err)
			}
			pfx, err := a.Prefix(rt.IPLen)
			if err != nil {
				return nil, fmt.Errorf("evpn %s %s: %w", rd, k, err)
			}
			for _, ps := range rt.Paths {
				for _, p := range ps {
					entries = append(entries, p.entry(rd, pfx))
				}
			}
		}
	}
	return entries, nil
}

// frrAdjOut reads what FRR advertises to client. Its listing has the RD,
// prefix and next hop of each path, not its label or communities.
func (r *Daemon) frrAdjOut(f Family, client netip.Addr) ([]RIBEntry, error) {
	if f != VPNv4 && f != VPNv6 {
		return nil, fmt.Errorf("%s: FRR's advertised routes are read for VPN families only", f)
	}
	out, err := r.cli(fmt.Sprintf("show bgp %s neighbors %s advertised-routes json", frrAFI(f), client))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	var list struct {
		Advertised map[string]map[string]json.RawMessage `json:"advertisedRoutes"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("advertised-routes: %w: %.200s", err, out)
	}
	var entries []RIBEntry
	for rd, prefixes := range list.Advertised {
		for p, raw := range prefixes {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				continue // "rd"
			}
			var route struct {
				NextHop string `json:"nextHop"`
			}
			if err := json.Unmarshal(raw, &route); err != nil {
				return nil, fmt.Errorf("advertised-routes %s %s: %w", rd, p, err)
			}
			nh, _ := netip.ParseAddr(route.NextHop)
			entries = append(entries, RIBEntry{RD: rd, Prefix: pfx, NextHop: nh, Best: true})
		}
	}
	return entries, nil
}
