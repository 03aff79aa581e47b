package flow

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/weftnet/weft/vrouter/packet"
)

// PortRange is an inclusive range of ports, First <= Last. A single port p
// is {p, p}. (The control API's "last 0: same as first" is its own
// shorthand; the API layer expands it before calling Compile.)
type PortRange struct{ First, Last uint16 }

// Rule allows traffic between two different networks. Every field that is
// set must match; a zero field matches anything.
type Rule struct {
	ID                     uint32 // not 0 (Decide reports rule 0 for "no rule")
	Name                   string // for dumps and error messages
	SrcNetwork, DstNetwork uint32 // network IDs (VNIs); 0: any, including unknown/external
	// Prefixes the tuple's source and destination addresses must fall in.
	// They must be masked (10.0.0.0/24, not 10.0.0.1/24) and not
	// IPv4-mapped IPv6: an IPv4 packet's addresses are plain IPv4.
	SrcPrefixes, DstPrefixes []netip.Prefix
	Proto                    uint8 // IP protocol number; 0: any
	// DstPorts restricts TCP and UDP flows to these destination ports. A
	// rule with ports matches only TCP and UDP, also when Proto is 0 (so
	// "port 53, any protocol" means DNS over TCP or UDP); with another Proto
	// it is an error.
	DstPorts []PortRange
}

// RuleError is why Compile refused a rule. Index is the rule's position in
// the slice, so the control API can point at the op that carried it.
type RuleError struct {
	Index int
	ID    uint32
	Name  string
	Field string // as in the control API: "dst_ports[1]", "id", ...
	Msg   string
}

func (e *RuleError) Error() string {
	s := "rule " + strconv.FormatUint(uint64(e.ID), 10)
	if e.Name != "" {
		s += " " + strconv.Quote(e.Name)
	}
	return s + ": " + e.Field + ": " + e.Msg
}

// Policy is a compiled, immutable rule set: the allow-list between
// networks. Evaluate is safe from any number of goroutines and allocates
// nothing. The zero value is not valid; use Compile (Compile(nil) denies
// all traffic between networks).
type Policy struct {
	rules []Rule // deep copy of what was compiled, for Rules
	c     []crule
	// Candidates by source network: the indexes, in rule order, of the rules
	// whose SrcNetwork is that network or any. A source network no rule
	// names only meets the any-source rules. This keeps Evaluate
	// proportional to the rules that can apply, not to the whole policy.
	bySrc  map[uint32][]int32
	anySrc []int32
}

// crule is a rule in the form Evaluate reads fastest.
type crule struct {
	id        uint32
	src, dst  uint32
	proto     uint8
	portsOnly bool        // DstPorts given: TCP and UDP only
	ports     []PortRange // sorted by First, overlaps merged
	srcA      addrSet
	dstA      addrSet
}

// addrSet is a prefix list split by family, with masks precomputed, so a
// match is an AND and a compare per prefix.
type addrSet struct {
	any bool
	v4  []pfx4
	v6  []pfx6
}

type pfx4 struct{ net, mask uint32 }

type pfx6 struct{ hi, lo, mhi, mlo uint64 }

// Compile checks rules and compiles them into a Policy. Rules are tried in
// the order given, so that the first match, whose ID Evaluate reports, is
// deterministic; the control API orders them (by ID) before compiling.
// An error is a *RuleError naming the rule and the field at fault.
func Compile(rules []Rule) (*Policy, error) {
	p := &Policy{
		rules: make([]Rule, len(rules)),
		c:     make([]crule, len(rules)),
		bySrc: make(map[uint32][]int32),
	}
	seen := make(map[uint32]int, len(rules))
	for i := range rules {
		r := &rules[i]
		fail := func(field, format string, args ...any) error {
			return &RuleError{Index: i, ID: r.ID, Name: r.Name, Field: field, Msg: fmt.Sprintf(format, args...)}
		}
		if r.ID == 0 {
			return nil, fail("id", "0 is reserved (it means no rule)")
		}
		if j, dup := seen[r.ID]; dup {
			return nil, fail("id", "also the id of rules[%d] (this is rules[%d])", j, i)
		}
		seen[r.ID] = i
		if r.SrcNetwork != 0 && r.SrcNetwork == r.DstNetwork {
			return nil, fail("dst_network", "%d is also src_network: traffic inside one network is always allowed, so the rule could never match", r.DstNetwork)
		}
		c := crule{id: r.ID, src: r.SrcNetwork, dst: r.DstNetwork, proto: r.Proto}
		var err error
		if c.srcA, err = compilePrefixes(r.SrcPrefixes); err != nil {
			return nil, fail(err.(*prefixError).field("src_prefixes"), "%s", err)
		}
		if c.dstA, err = compilePrefixes(r.DstPrefixes); err != nil {
			return nil, fail(err.(*prefixError).field("dst_prefixes"), "%s", err)
		}
		if len(r.DstPorts) > 0 {
			if r.Proto != 0 && r.Proto != packet.ProtoTCP && r.Proto != packet.ProtoUDP {
				return nil, fail("dst_ports", "only for tcp (6) and udp (17), protocol is %d", r.Proto)
			}
			for j, pr := range r.DstPorts {
				if pr.Last < pr.First {
					return nil, fail("dst_ports["+strconv.Itoa(j)+"]", "last %d < first %d", pr.Last, pr.First)
				}
			}
			c.portsOnly = true
			c.ports = mergePorts(r.DstPorts)
		}
		p.c[i] = c
		p.rules[i] = cloneRule(r)
	}
	// Index by source network; an any-source rule is a candidate for every
	// source network, at its own position in the order.
	for i := range p.c {
		if s := p.c[i].src; s != 0 {
			p.bySrc[s] = nil
		}
	}
	for i := range p.c {
		idx := int32(i)
		if s := p.c[i].src; s != 0 {
			p.bySrc[s] = append(p.bySrc[s], idx)
			continue
		}
		p.anySrc = append(p.anySrc, idx)
		for s := range p.bySrc {
			p.bySrc[s] = append(p.bySrc[s], idx)
		}
	}
	return p, nil
}

// prefixError is a fault in one prefix of a list; Compile prefixes the
// list's name.
type prefixError struct {
	i   int
	msg string
}

func (e *prefixError) Error() string         { return e.msg }
func (e *prefixError) field(l string) string { return l + "[" + strconv.Itoa(e.i) + "]" }

func compilePrefixes(ps []netip.Prefix) (addrSet, error) {
	if len(ps) == 0 {
		return addrSet{any: true}, nil
	}
	var s addrSet
	for i, p := range ps {
		a := p.Addr()
		switch {
		case !p.IsValid():
			return s, &prefixError{i, "invalid prefix"}
		case a.Zone() != "":
			return s, &prefixError{i, fmt.Sprintf("%v has a zone", p)}
		case a.Is4In6():
			return s, &prefixError{i, fmt.Sprintf("%v is IPv4-mapped IPv6; write it as IPv4", p)}
		case p.Masked() != p:
			return s, &prefixError{i, fmt.Sprintf("%v has host bits set (the network is %v)", p, p.Masked())}
		}
		if a.Is4() {
			b := a.As4()
			var m uint32
			if p.Bits() > 0 {
				m = ^uint32(0) << (32 - p.Bits())
			}
			s.v4 = append(s.v4, pfx4{net: binary.BigEndian.Uint32(b[:]), mask: m})
			continue
		}
		b := a.As16()
		hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
		mhi, mlo := mask128(p.Bits())
		s.v6 = append(s.v6, pfx6{hi: hi, lo: lo, mhi: mhi, mlo: mlo})
	}
	return s, nil
}

// mask128 is the netmask of a /bits IPv6 prefix as two halves.
func mask128(bits int) (hi, lo uint64) {
	switch {
	case bits <= 0:
		return 0, 0
	case bits < 64:
		return ^uint64(0) << (64 - bits), 0
	case bits == 64:
		return ^uint64(0), 0
	case bits < 128:
		return ^uint64(0), ^uint64(0) << (128 - bits)
	}
	return ^uint64(0), ^uint64(0)
}

func (s *addrSet) contains(a netip.Addr) bool {
	if s.any {
		return true
	}
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		for _, p := range s.v4 {
			if x&p.mask == p.net {
				return true
			}
		}
		return false
	}
	if !a.Is6() {
		return false // the invalid Addr is in no prefix
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	for _, p := range s.v6 {
		if hi&p.mhi == p.hi && lo&p.mlo == p.lo {
			return true
		}
	}
	return false
}

// mergePorts sorts ranges and merges overlapping or adjacent ones, so the
// match can stop at the first range past the port.
func mergePorts(in []PortRange) []PortRange {
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b PortRange) int { return cmp.Compare(a.First, b.First) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint32(r.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func cloneRule(r *Rule) Rule {
	c := *r
	c.SrcPrefixes = slices.Clone(r.SrcPrefixes)
	c.DstPrefixes = slices.Clone(r.DstPrefixes)
	c.DstPorts = slices.Clone(r.DstPorts)
	return c
}

// Rules returns a copy of the rules the policy was compiled from, in order.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i := range p.rules {
		out[i] = cloneRule(&p.rules[i])
	}
	return out
}

// Len is the number of rules.
func (p *Policy) Len() int { return len(p.c) }

// Evaluate decides a flow's first packet from network srcNet to network
// dstNet: allowed, and the ID of the first rule that matched. Traffic
// inside one network (srcNet == dstNet, not 0) is allowed with rule 0. 0 is
// no network (unknown or external): it meets only rules whose network
// field is any. Cost: proportional to the rules whose source network is
// srcNet or any, each rejected in a few compares.
func (p *Policy) Evaluate(srcNet, dstNet uint32, t packet.FiveTuple) (allowed bool, rule uint32) {
	if srcNet == dstNet && srcNet != 0 {
		return true, 0
	}
	i := p.match(srcNet, dstNet, &t)
	if i < 0 {
		return false, 0
	}
	return true, p.c[i].id
}

// match is the index of the first rule matching, or -1; srcNet != dstNet
// is the caller's business.
func (p *Policy) match(srcNet, dstNet uint32, t *packet.FiveTuple) int {
	cands := p.anySrc
	if len(p.bySrc) > 0 {
		if c, ok := p.bySrc[srcNet]; ok {
			cands = c
		}
	}
	for _, i := range cands {
		r := &p.c[i]
		if (r.dst != 0 && r.dst != dstNet) || (r.proto != 0 && r.proto != t.Proto) {
			continue
		}
		if r.portsOnly && !r.portMatch(t) {
			continue
		}
		if r.srcA.contains(t.Src) && r.dstA.contains(t.Dst) {
			return int(i)
		}
	}
	return -1
}

func (r *crule) portMatch(t *packet.FiveTuple) bool {
	if t.Proto != packet.ProtoTCP && t.Proto != packet.ProtoUDP {
		return false
	}
	for _, pr := range r.ports {
		if t.DstPort < pr.First {
			return false
		}
		if t.DstPort <= pr.Last {
			return true
		}
	}
	return false
}
