package flow

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

// fuzzReader turns fuzz bytes into rules and tuples; past the end it
// reads zeros. Values are drawn from small sets most of the time, so that
// rules and packets meet often.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) u8() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	x := r.b[0]
	r.b = r.b[1:]
	return x
}

func (r *fuzzReader) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }

func (r *fuzzReader) port() uint16 {
	if x := r.u8(); x < 200 {
		return uint16(x % 16)
	}
	return r.u16()
}

func (r *fuzzReader) addr() netip.Addr {
	switch k := r.u8(); k % 6 {
	case 0:
		return netip.AddrFrom4([4]byte{10, 0, r.u8() % 4, r.u8() % 4})
	case 1:
		return netip.AddrFrom4([4]byte{r.u8(), r.u8(), r.u8(), r.u8()})
	case 2:
		var b [16]byte
		b[0], b[1], b[15] = 0xfd, r.u8()%4, r.u8()%4
		return netip.AddrFrom16(b)
	case 3:
		var b [16]byte
		for i := range b {
			b[i] = r.u8()
		}
		return netip.AddrFrom16(b)
	case 4:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, 0, r.u8() % 4}).As16()) // IPv4-mapped
	}
	return netip.Addr{}
}

func (r *fuzzReader) prefix() netip.Prefix {
	a := r.addr()
	bits := int(r.u8())
	if a.IsValid() {
		bits %= a.BitLen() + 2 // one past the end: invalid
	}
	p := netip.PrefixFrom(a, bits)
	if r.u8()%4 != 0 {
		p = p.Masked()
	}
	return p
}

func (r *fuzzReader) rules() []Rule {
	rules := make([]Rule, r.u8()%8)
	for i := range rules {
		ru := Rule{ID: uint32(r.u8() % 10), Name: string(rune('a' + i)), SrcNetwork: uint32(r.u8() % 4), DstNetwork: uint32(r.u8() % 4)}
		for j := r.u8() % 3; j > 0; j-- {
			ru.SrcPrefixes = append(ru.SrcPrefixes, r.prefix())
		}
		for j := r.u8() % 3; j > 0; j-- {
			ru.DstPrefixes = append(ru.DstPrefixes, r.prefix())
		}
		ru.Proto = r.proto()
		for j := r.u8() % 4; j > 0; j-- {
			ru.DstPorts = append(ru.DstPorts, PortRange{r.port(), r.port()})
		}
		rules[i] = ru
	}
	return rules
}

func (r *fuzzReader) proto() uint8 {
	switch x := r.u8(); x % 8 {
	case 0, 1:
		return 0
	case 2, 3:
		return packet.ProtoTCP
	case 4:
		return packet.ProtoUDP
	case 5:
		return packet.ProtoICMPv4
	case 6:
		return packet.ProtoGRE
	default:
		return x
	}
}

func (r *fuzzReader) tuple() packet.FiveTuple {
	return packet.FiveTuple{Src: r.addr(), Dst: r.addr(), SrcPort: r.port(), DstPort: r.port(), Proto: r.proto()}
}

// FuzzPolicy compiles arbitrary rule sets and evaluates arbitrary packets:
// nothing may panic, a refusal is a *RuleError, and an accepted policy
// decides as the reference does, in Evaluate and through a Table, where the
// reply of an allowed flow passes with the same rule.
func FuzzPolicy(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 2, 1, 0, 1, 0, 10, 0, 24, 1, 2, 1, 0, 80, 0, 80, 1, 2, 0, 0, 0, 0, 0, 0, 0, 80, 2})
	f.Add([]byte{3, 1, 0, 0, 0, 0, 0, 0, 0, 2, 5, 5, 5, 7, 7, 0, 0, 0, 0, 2, 2, 0, 1, 2, 3, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5})
	f.Add([]byte{7, 9, 3, 2, 2, 3, 0, 0, 4, 200, 1, 0, 2, 2, 1, 3, 255, 255, 255, 255, 129, 0, 3, 4, 9, 9, 1, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &fuzzReader{b: b}
		rules := r.rules()
		p, err := Compile(rules)
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) || re.Field == "" || re.Index < 0 || re.Index >= len(rules) || rules[re.Index].ID != re.ID {
				t.Fatalf("Compile error %v (%#v) does not name a rule and field", err, err)
			}
			return
		}
		tab := NewTable(Config{Max: 64, VRFQuota: 64}) // never full: a reply always finds its flow
		tab.SetPolicy(p)
		for i := 0; i < 16; i++ {
			src, dst, ft := uint32(r.u8()%4), uint32(r.u8()%4), r.tuple()
			a, id := p.Evaluate(src, dst, ft)
			if ra, rid := refEvaluate(rules, src, dst, ft); a != ra || id != rid {
				t.Fatalf("Evaluate(%d, %d, %+v) = %v %d, reference %v %d; rules %+v", src, dst, ft, a, id, ra, rid, rules)
			}
			k := Key{VRF: uint32(r.u8() % 2), Tuple: ft}
			ta, tid := tab.Decide(k, src, dst, r.u8(), int(r.u8()), int64(i))
			if src == dst && src != 0 {
				continue
			}
			cached := entry(tab, k)
			if cached == nil || !cached.Reverse() { // a reply decides by its flow
				if ta != a || tid != id {
					t.Fatalf("Decide(%+v, %d, %d) = %v %d, Evaluate %v %d", k, src, dst, ta, tid, a, id)
				}
			}
			// A tuple that is its own reverse (one address and port at both
			// ends) cannot be in two networks at once; its "reply" with the
			// networks swapped is not a case the table tells apart.
			if rk := (Key{VRF: k.VRF, Tuple: ft.Reverse()}); ta && rk != k {
				if ra, rid := tab.Decide(rk, dst, src, 0, 1, int64(i)); !ra || rid != tid {
					t.Fatalf("reply of allowed %+v: %v %d", k, ra, rid)
				}
			}
			tab.Sweep(int64(i) * sec)
		}
		_ = tab.Stats()
	})
}
