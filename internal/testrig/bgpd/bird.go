package bgpd

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BIRD 2 keeps VPN routes in vpn4/vpn6 tables and resolves their next hops
// recursively in the IGP table, which `protocol direct` fills with the
// namespace's subnets. It has no EVPN: the family is not negotiated and
// EVPN routes are silently not sent.

func birdChannel(f Family) string {
	switch f {
	case VPNv4:
		return "  vpn4 mpls { table vpntab4; igp table master4; import all; export all; };\n"
	case VPNv6:
		// A VPNv6 route from an IPv4 session has an IPv4-mapped next
		// hop, which only the IPv4 IGP table can resolve.
		return "  vpn6 mpls { table vpntab6; extended next hop on; igp table master4; igp table master6; import all; export all; };\n"
	case IPv4Unicast:
		// Not the direct routes that resolve next hops.
		return "  ipv4 { import all; export where source = RTS_BGP; };\n"
	case IPv6Unicast:
		return "  ipv6 { extended next hop on; igp table master4; igp table master6; import all; export where source = RTS_BGP; };\n"
	}
	return ""
}

func (r *Daemon) birdConfig() error {
	c := r.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "router id %v;\nlog %q all;\n", c.RouterID, filepath.Join(r.dir, "bird.log"))
	b.WriteString("protocol device { }\nprotocol direct { ipv4; ipv6; }\n")
	b.WriteString("vpn4 table vpntab4;\nvpn6 table vpntab6;\n")
	b.WriteString("template bgp rrc {\n")
	fmt.Fprintf(&b, "  local %v as %d;\n  rr client;\n  rr cluster id %v;\n  connect retry time 1;\n", c.Listen, c.ASN, c.ClusterID)
	fmt.Fprintf(&b, "  graceful restart on;\n  graceful restart time %d;\n", int(c.RestartTime.Seconds()))
	if c.HoldTime > 0 {
		fmt.Fprintf(&b, "  hold time %d;\n", int(c.HoldTime.Seconds()))
	}
	for _, f := range c.Families {
		b.WriteString(birdChannel(f))
	}
	b.WriteString("}\n")
	for i, cl := range c.Clients {
		fmt.Fprintf(&b, "protocol bgp c%d from rrc {\n  neighbor %v as %d;\n", i, cl.Address, c.ASN)
		if cl.Password != "" {
			fmt.Fprintf(&b, "  password %q;\n", cl.Password)
		}
		if cl.Passive {
			b.WriteString("  passive on;\n")
		}
		b.WriteString("}\n")
	}
	return os.WriteFile(filepath.Join(r.dir, "bird.conf"), []byte(b.String()), 0o644)
}

func (r *Daemon) birdClient(proto string) (netip.Addr, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(proto, "c"))
	if err != nil || !strings.HasPrefix(proto, "c") || n < 0 || n >= len(r.cfg.Clients) {
		return netip.Addr{}, false
	}
	return r.cfg.Clients[n].Address, true
}

func (r *Daemon) birdSessions() ([]Session, error) {
	out, err := r.cli("show", "protocols")
	if err != nil {
		return nil, err
	}
	// Name       Proto      Table      State  Since         Info
	// c0         BGP        ---        up     10:11:12.123  Established
	var s []Session
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[1] != "BGP" {
			continue
		}
		a, ok := r.birdClient(f[0])
		if !ok {
			continue
		}
		st := strings.ToLower(f[len(f)-1])
		if f[3] != "up" && len(f) >= 6 {
			st = strings.ToLower(f[5])
		}
		s = append(s, Session{Neighbor: a, State: st, Established: st == "established"})
	}
	return s, nil
}

// birdRIB parses `show route table vpntabN all`:
//
//	Table vpntab4:
//	198.51.100.11:1 10.1.1.0/24 unicast [c0 10:11:12.123] * (100) [i]
//		via 198.51.100.11 on br0 mpls 100
//		Type: BGP univ
//		BGP.origin: IGP
//		BGP.next_hop: 198.51.100.11
//		BGP.local_pref: 100
//		BGP.ext_community: (rt, 64512, 100) (generic, 0x30c0000, 0xd)
//		BGP.mpls_label_stack: 100
//		BGP.17 [t]: 00 0d 00 10 06 0a ...
func (r *Daemon) birdRIB(f Family) ([]RIBEntry, error) {
	var table string
	switch f {
	case VPNv4:
		table = "vpntab4"
	case VPNv6:
		table = "vpntab6"
	case IPv4Unicast:
		table = "master4"
	case IPv6Unicast:
		table = "master6"
	default:
		return nil, fmt.Errorf("no table for %s", f)
	}
	out, err := r.cli("show", "route", "table", table, "all")
	if err != nil {
		return nil, err
	}
	return r.parseBirdRoutes(out, f)
}

func (r *Daemon) parseBirdRoutes(out string, f Family) ([]RIBEntry, error) {
	var entries []RIBEntry
	var cur *RIBEntry
	var lastNet string
	flush := func() {
		if cur != nil {
			entries = append(entries, *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "Table ") || strings.HasPrefix(trimmed, "BIRD ") {
			continue
		}
		if line[0] != '\t' {
			// A route line: "<net> <kind> [proto time] * (pref) [origin]";
			// another path for the same net follows indented with
			// spaces and without the net. Attributes are indented
			// with a tab.
			flush()
			fields := strings.Fields(line)
			net := lastNet
			if strings.Contains(fields[0], "/") || (f == VPNv4 || f == VPNv6) && strings.Contains(fields[0], ":") && len(fields) > 1 && strings.Contains(fields[1], "/") {
				if f == VPNv4 || f == VPNv6 {
					net = fields[0] + " " + fields[1]
					fields = fields[2:]
				} else {
					net = fields[0]
					fields = fields[1:]
				}
			}
			lastNet = net
			e := RIBEntry{}
			if f == VPNv4 || f == VPNv6 {
				rd, pfx, ok := strings.Cut(net, " ")
				if !ok {
					return nil, fmt.Errorf("route %q: no RD", line)
				}
				e.RD = rd
				net = pfx
			}
			p, err := netip.ParsePrefix(net)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", line, err)
			}
			e.Prefix = p
			for i, fl := range fields {
				switch {
				case fl == "*":
					e.Best = true
				case strings.HasPrefix(fl, "[") && i+1 < len(fields) && !strings.HasPrefix(fl, "[i") && !strings.HasPrefix(fl, "[AS") && !strings.HasPrefix(fl, "[?"):
					if a, ok := r.birdClient(strings.TrimPrefix(fl, "[")); ok {
						e.Peer = a
					}
				case fl == "mpls" && i+1 < len(fields):
					if v, err := strconv.ParseUint(fields[i+1], 10, 32); err == nil {
						e.Label = uint32(v)
					}
				}
			}
			cur = &e
			continue
		}
		if cur == nil {
			continue
		}
		key, val, _ := strings.Cut(trimmed, ":")
		val = strings.TrimSpace(val)
		switch {
		case strings.HasPrefix(trimmed, "via "):
			fs := strings.Fields(trimmed)
			if len(fs) > 1 && !cur.NextHop.IsValid() {
				if a, err := netip.ParseAddr(fs[1]); err == nil {
					cur.NextHop = a.Unmap()
				}
			}
		case key == "BGP.next_hop":
			if a, err := netip.ParseAddr(strings.Fields(val + " x")[0]); err == nil {
				cur.NextHop = a.Unmap()
			}
		case key == "BGP.mpls_label_stack":
			if v, err := strconv.ParseUint(strings.Fields(val + " x")[0], 10, 32); err == nil {
				cur.Label = uint32(v)
			}
		case key == "BGP.ext_community":
			parseBirdExtCommunities(cur, val)
		case strings.HasPrefix(key, "BGP.17 ") || strings.HasPrefix(key, "BGP.tunnel_encap"):
			// Attribute 23 (0x17), which BIRD 2.0 prints as hex.
			cur.TunnelEncapVisible = true
			cur.TunnelEncap = parseBirdTunnelEncap(val)
		case strings.EqualFold(key, "BGP.stale") || strings.Contains(trimmed, "stale"):
			cur.Stale = true
		}
	}
	flush()
	return entries, nil
}

// parseBirdExtCommunities reads "(rt, 64512, 100) (generic, 0x30c0000, 0xd)".
func parseBirdExtCommunities(e *RIBEntry, s string) {
	for _, part := range strings.Split(s, ")") {
		part = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(part), "("))
		if part == "" {
			continue
		}
		e.ExtCommunities = append(e.ExtCommunities, "("+part+")")
		f := strings.Split(part, ",")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		switch {
		case f[0] == "rt" && len(f) == 3:
			e.RouteTargets = append(e.RouteTargets, f[1]+":"+f[2])
		case f[0] == "generic" && len(f) == 3:
			// type/subtype in the top 16 bits of the first word: 0x030c
			// is the opaque encapsulation community.
			hi, err1 := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 32)
			lo, err2 := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 32)
			if err1 == nil && err2 == nil && hi>>16 == 0x030c {
				e.Encaps = append(e.Encaps, int(lo&0xffff))
			}
			if err1 == nil && err2 == nil && hi>>16 == 0x0603 {
				mac := uint64(hi&0xffff)<<32 | lo
				e.RouterMAC = fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", byte(mac>>40), byte(mac>>32), byte(mac>>24), byte(mac>>16), byte(mac>>8), byte(mac))
			}
		}
	}
}

// parseBirdTunnelEncap reads the hex dump BIRD prints for an attribute it
// does not know ("00 0d 00 0c ...") into the TLV types.
func parseBirdTunnelEncap(s string) []int {
	var b []byte
	for _, h := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ':' }) {
		v, err := strconv.ParseUint(h, 16, 8)
		if err != nil {
			return nil
		}
		b = append(b, byte(v))
	}
	var types []int
	for len(b) >= 4 {
		typ, n := int(b[0])<<8|int(b[1]), int(b[2])<<8|int(b[3])
		types = append(types, typ)
		if 4+n > len(b) {
			break
		}
		b = b[4+n:]
	}
	return types
}
