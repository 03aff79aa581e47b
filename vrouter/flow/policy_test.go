package flow

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

// Networks of the reference scenario.
const (
	netLeonardo = 100
	netDB       = 200
	netNginx    = 300
	netOther    = 400 // another tenant
)

func pfx(s ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, x := range s {
		ps = append(ps, netip.MustParsePrefix(x))
	}
	return ps
}

func tup(proto uint8, src string, sp uint16, dst string, dp uint16) packet.FiveTuple {
	return packet.FiveTuple{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sp, DstPort: dp, Proto: proto}
}

func tcpT(src string, sp uint16, dst string, dp uint16) packet.FiveTuple {
	return tup(packet.ProtoTCP, src, sp, dst, dp)
}

func udpT(src string, sp uint16, dst string, dp uint16) packet.FiveTuple {
	return tup(packet.ProtoUDP, src, sp, dst, dp)
}

// scenario is the reference policy: nginx reaches leonardo on TCP 8000
// only, leonardo reaches the PostgreSQL VMs on 5432, anyone pings leonardo.
func scenario() []Rule {
	return []Rule{
		{ID: 10, Name: "nginx-leonardo", SrcNetwork: netNginx, DstNetwork: netLeonardo, Proto: packet.ProtoTCP, DstPorts: []PortRange{{8000, 8000}}},
		{ID: 20, Name: "leonardo-db", SrcNetwork: netLeonardo, DstNetwork: netDB, DstPrefixes: pfx("10.0.100.0/24"), Proto: packet.ProtoTCP, DstPorts: []PortRange{{5432, 5432}}},
		{ID: 30, Name: "ping-leonardo", DstNetwork: netLeonardo, Proto: packet.ProtoICMPv4},
		{ID: 40, Name: "dns", SrcPrefixes: pfx("10.0.0.0/8", "fd00::/8"), DstPrefixes: pfx("10.0.53.53/32", "fd00::53/128"), DstPorts: []PortRange{{53, 53}}},
		{ID: 50, Name: "v6-db", SrcNetwork: netLeonardo, DstNetwork: netDB, DstPrefixes: pfx("fd00:100::/64")},
		{ID: 60, Name: "ranges", SrcNetwork: netOther, DstNetwork: netDB, Proto: packet.ProtoUDP, DstPorts: []PortRange{{7000, 7999}, {100, 200}, {150, 300}, {9000, 9000}}},
		{ID: 70, Name: "anything-from-nginx-subnet", SrcNetwork: netNginx, SrcPrefixes: pfx("10.0.30.128/25")},
		{ID: 80, Name: "shadowed", SrcNetwork: netNginx, DstNetwork: netLeonardo, Proto: packet.ProtoTCP},
	}
}

func TestEvaluate(t *testing.T) {
	p, err := Compile(scenario())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		src, dst uint32
		t        packet.FiveTuple
		allowed  bool
		rule     uint32
	}{
		{"nginx to leonardo 8000", netNginx, netLeonardo, tcpT("10.0.30.5", 40000, "10.0.10.5", 8000), true, 10},
		{"nginx to leonardo 8001: shadowing rule matches later", netNginx, netLeonardo, tcpT("10.0.30.5", 40000, "10.0.10.5", 8001), true, 80},
		{"nginx to leonardo udp 8000", netNginx, netLeonardo, udpT("10.0.30.5", 40000, "10.0.10.5", 8000), false, 0},
		{"leonardo to nginx (wrong direction)", netLeonardo, netNginx, tcpT("10.0.10.5", 8000, "10.0.30.5", 40000), false, 0},
		{"leonardo to db 5432", netLeonardo, netDB, tcpT("10.0.10.5", 40000, "10.0.100.3", 5432), true, 20},
		{"leonardo to db outside prefix", netLeonardo, netDB, tcpT("10.0.10.5", 40000, "10.0.101.3", 5432), false, 0},
		{"leonardo to db 5433", netLeonardo, netDB, tcpT("10.0.10.5", 40000, "10.0.100.3", 5433), false, 0},
		{"nginx to db", netNginx, netDB, tcpT("10.0.30.5", 40000, "10.0.100.3", 5432), false, 0},
		{"other tenant to db 5432", netOther, netDB, tcpT("10.0.10.5", 40000, "10.0.100.3", 5432), false, 0},
		{"ping leonardo from anywhere", netOther, netLeonardo, tup(packet.ProtoICMPv4, "192.0.2.1", 7, "10.0.10.5", 7), true, 30},
		{"ping leonardo from external (0)", 0, netLeonardo, tup(packet.ProtoICMPv4, "192.0.2.1", 7, "10.0.10.5", 7), true, 30},
		{"ping db", netLeonardo, netDB, tup(packet.ProtoICMPv4, "10.0.10.5", 7, "10.0.100.3", 7), false, 0},
		{"dns over udp, any networks", netOther, netDB, udpT("10.9.9.9", 5353, "10.0.53.53", 53), true, 40},
		{"dns over tcp", netOther, netDB, tcpT("10.9.9.9", 5353, "10.0.53.53", 53), true, 40},
		{"dns v6", netOther, netDB, udpT("fd00::9", 5353, "fd00::53", 53), true, 40},
		{"dns from outside 10/8", netOther, netDB, udpT("192.168.1.1", 5353, "10.0.53.53", 53), false, 0},
		{"ports rule never matches icmp", netOther, netDB, tup(packet.ProtoICMPv4, "10.9.9.9", 53, "10.0.53.53", 53), false, 0},
		{"ports rule never matches gre", netOther, netDB, tup(packet.ProtoGRE, "10.9.9.9", 0, "10.0.53.53", 0), false, 0},
		{"v6 db any protocol", netLeonardo, netDB, tup(packet.ProtoGRE, "fd00:10::5", 0, "fd00:100::3", 0), true, 50},
		{"v4 packet, v6-only prefix", netLeonardo, netDB, tup(packet.ProtoGRE, "10.0.10.5", 0, "10.0.100.3", 0), false, 0},
		{"range 7000-7999 low", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 7000), true, 60},
		{"range 7000-7999 high", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 7999), true, 60},
		{"range merged 100-300", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 250), true, 60},
		{"range gap 301", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 301), false, 0},
		{"range 8000", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 8000), false, 0},
		{"range 9000", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 9000), true, 60},
		{"range 99", netOther, netDB, udpT("10.4.0.1", 1, "10.0.100.3", 99), false, 0},
		{"nginx subnet to anything", netNginx, netOther, tup(packet.ProtoGRE, "10.0.30.200", 0, "10.4.0.1", 0), true, 70},
		{"nginx other half of subnet", netNginx, netOther, tup(packet.ProtoGRE, "10.0.30.100", 0, "10.4.0.1", 0), false, 0},
		{"same network", netDB, netDB, tcpT("10.0.100.3", 1, "10.0.100.4", 2), true, 0},
		{"0 to 0 is not one network", 0, 0, tcpT("192.0.2.1", 1, "192.0.2.2", 2), false, 0},
		{"invalid addresses", netOther, netDB, packet.FiveTuple{Proto: packet.ProtoUDP, DstPort: 53}, false, 0},
	}
	for _, tc := range tests {
		allowed, rule := p.Evaluate(tc.src, tc.dst, tc.t)
		if allowed != tc.allowed || rule != tc.rule {
			t.Errorf("%s: Evaluate = %v, rule %d; want %v, rule %d", tc.name, allowed, rule, tc.allowed, tc.rule)
		}
		if ra, rr := refEvaluate(scenario(), tc.src, tc.dst, tc.t); ra != allowed || rr != rule {
			t.Errorf("%s: reference disagrees: %v, rule %d", tc.name, ra, rr)
		}
	}
}

func TestEvaluateEmpty(t *testing.T) {
	p, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := p.Evaluate(netNginx, netLeonardo, tcpT("10.0.30.5", 1, "10.0.10.5", 8000)); ok {
		t.Error("empty policy allowed traffic between networks")
	}
	if ok, rule := p.Evaluate(netDB, netDB, tcpT("10.0.100.3", 1, "10.0.100.4", 2)); !ok || rule != 0 {
		t.Error("empty policy denied traffic inside a network")
	}
}

func TestCompileErrors(t *testing.T) {
	ok := Rule{ID: 1, Name: "ok", SrcNetwork: 1, DstNetwork: 2}
	tests := []struct {
		name  string
		rules []Rule
		field string
		want  string
	}{
		{"port range backwards", []Rule{ok, {ID: 3, Name: "web", Proto: packet.ProtoTCP, DstPorts: []PortRange{{80, 80}, {20, 10}}}},
			"dst_ports[1]", `rule 3 "web": dst_ports[1]: last 10 < first 20`},
		{"ports on icmp", []Rule{{ID: 4, Name: "icmp", Proto: packet.ProtoICMPv4, DstPorts: []PortRange{{1, 1}}}},
			"dst_ports", `rule 4 "icmp": dst_ports: only for tcp (6) and udp (17), protocol is 1`},
		{"id 0", []Rule{{Name: "zero"}},
			"id", `rule 0 "zero": id: 0 is reserved (it means no rule)`},
		{"duplicate id", []Rule{ok, {ID: 2}, {ID: 1, Name: "again"}},
			"id", `rule 1 "again": id: also the id of rules[0] (this is rules[2])`},
		{"same network", []Rule{{ID: 5, SrcNetwork: 7, DstNetwork: 7}},
			"dst_network", `rule 5: dst_network: 7 is also src_network: traffic inside one network is always allowed, so the rule could never match`},
		{"invalid prefix", []Rule{{ID: 6, Name: "p", SrcPrefixes: []netip.Prefix{pfx("10.0.0.0/8")[0], {}}}},
			"src_prefixes[1]", `rule 6 "p": src_prefixes[1]: invalid prefix`},
		{"host bits", []Rule{{ID: 7, DstPrefixes: pfx("10.0.10.5/24")}},
			"dst_prefixes[0]", `rule 7: dst_prefixes[0]: 10.0.10.5/24 has host bits set (the network is 10.0.10.0/24)`},
		{"mapped", []Rule{{ID: 8, DstPrefixes: pfx("::ffff:10.0.0.0/104")}},
			"dst_prefixes[0]", `rule 8: dst_prefixes[0]: ::ffff:10.0.0.0/104 is IPv4-mapped IPv6; write it as IPv4`},
	}
	for _, tc := range tests {
		p, err := Compile(tc.rules)
		if err == nil {
			t.Errorf("%s: compiled: %v", tc.name, p)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, err, tc.want)
		}
		var re *RuleError
		if !errors.As(err, &re) || re.Field != tc.field || re.Index != slices.IndexFunc(tc.rules, func(r Rule) bool { return r.ID == re.ID && r.Name == re.Name }) {
			t.Errorf("%s: %#v, want a *RuleError for field %s at the rule's index", tc.name, err, tc.field)
		}
	}
}

// TestPolicyImmutable: editing the slices given to Compile, or those Rules
// returned, changes nothing in the policy.
func TestPolicyImmutable(t *testing.T) {
	rules := scenario()
	p, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	ft := tcpT("10.0.10.5", 40000, "10.0.100.3", 5432)
	rules[1].DstPrefixes[0] = netip.MustParsePrefix("192.168.0.0/16")
	rules[1].DstPorts[0] = PortRange{1, 1}
	got := p.Rules()
	got[0].DstPorts[0] = PortRange{1, 1}
	if ok, rule := p.Evaluate(netLeonardo, netDB, ft); !ok || rule != 20 {
		t.Errorf("policy changed with its input: %v %d", ok, rule)
	}
	if r := p.Rules(); r[1].DstPrefixes[0] != netip.MustParsePrefix("10.0.100.0/24") || r[0].DstPorts[0] != (PortRange{8000, 8000}) || p.Len() != len(rules) {
		t.Errorf("Rules: %+v", r)
	}
}

// TestEvaluateRandom compares Evaluate with the reference on random
// policies and tuples drawn from small sets, so that matches are common.
func TestEvaluateRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		rules := randomRules(r, 1+r.IntN(30))
		p, err := Compile(rules)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := 0; i < 200; i++ {
			src, dst, ft := randomPacket(r)
			a, id := p.Evaluate(src, dst, ft)
			ra, rid := refEvaluate(rules, src, dst, ft)
			if a != ra || id != rid {
				t.Fatalf("round %d: Evaluate(%d, %d, %+v) = %v %d, reference %v %d\nrules %+v", round, src, dst, ft, a, id, ra, rid, rules)
			}
		}
	}
}

var (
	randAddrs = []string{"10.0.0.1", "10.0.1.1", "10.1.0.1", "192.168.1.1", "fd00::1", "fd00:1::1", "2001:db8::1", "::ffff:10.0.0.1"}
	randPfx   = []string{"10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24", "0.0.0.0/0", "10.0.0.1/32", "fd00::/16", "fd00::/32", "::/0", "2001:db8::/32", "fd00::1/128"}
)

func randomRules(r *rand.Rand, n int) []Rule {
	rules := make([]Rule, n)
	for i := range rules {
		ru := Rule{ID: uint32(i + 1), SrcNetwork: uint32(r.IntN(4)), DstNetwork: uint32(r.IntN(4))}
		if ru.SrcNetwork == ru.DstNetwork {
			ru.DstNetwork = 0
		}
		for j := r.IntN(3); j > 0; j-- {
			ru.SrcPrefixes = append(ru.SrcPrefixes, netip.MustParsePrefix(randPfx[r.IntN(len(randPfx))]))
		}
		for j := r.IntN(3); j > 0; j-- {
			ru.DstPrefixes = append(ru.DstPrefixes, netip.MustParsePrefix(randPfx[r.IntN(len(randPfx))]))
		}
		ru.Proto = []uint8{0, 0, packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMPv4}[r.IntN(5)]
		if ru.Proto != packet.ProtoICMPv4 {
			for j := r.IntN(3); j > 0; j-- {
				f := uint16(r.IntN(10))
				ru.DstPorts = append(ru.DstPorts, PortRange{f, f + uint16(r.IntN(3))})
			}
		}
		rules[i] = ru
	}
	return rules
}

func randomPacket(r *rand.Rand) (src, dst uint32, ft packet.FiveTuple) {
	ft = packet.FiveTuple{
		Src:     netip.MustParseAddr(randAddrs[r.IntN(len(randAddrs))]),
		Dst:     netip.MustParseAddr(randAddrs[r.IntN(len(randAddrs))]),
		SrcPort: uint16(r.IntN(12)),
		DstPort: uint16(r.IntN(12)),
		Proto:   []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMPv4, packet.ProtoGRE}[r.IntN(4)],
	}
	return uint32(r.IntN(4)), uint32(r.IntN(4)), ft
}

// refEvaluate is the specification, written as plainly as possible.
func refEvaluate(rules []Rule, srcNet, dstNet uint32, t packet.FiveTuple) (bool, uint32) {
	if srcNet == dstNet && srcNet != 0 {
		return true, 0
	}
	inAny := func(ps []netip.Prefix, a netip.Addr) bool {
		if len(ps) == 0 {
			return true
		}
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	for _, r := range rules {
		if r.SrcNetwork != 0 && r.SrcNetwork != srcNet || r.DstNetwork != 0 && r.DstNetwork != dstNet {
			continue
		}
		if r.Proto != 0 && r.Proto != t.Proto {
			continue
		}
		if len(r.DstPorts) > 0 {
			if t.Proto != packet.ProtoTCP && t.Proto != packet.ProtoUDP {
				continue
			}
			in := false
			for _, pr := range r.DstPorts {
				in = in || pr.First <= t.DstPort && t.DstPort <= pr.Last
			}
			if !in {
				continue
			}
		}
		if inAny(r.SrcPrefixes, t.Src) && inAny(r.DstPrefixes, t.Dst) {
			return true, r.ID
		}
	}
	return false, 0
}
