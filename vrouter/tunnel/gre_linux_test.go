package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/frame"
)

// mplsOverGRE is a GRE header (no options, protocol MPLS unicast), one
// MPLS label (bottom of stack) and an inner payload naming id.
func mplsOverGRE(id uint32, label uint32, inner int) []byte {
	b := make([]byte, 8, 8+inner)
	binary.BigEndian.PutUint16(b[2:4], 0x8847)
	binary.BigEndian.PutUint32(b[4:8], label<<12|1<<8|64)
	return append(b, payload(id, inner)...)
}

// GRE both ways, per family: a batch arrives intact with the GRE header at
// the headroom and the peer's address; a datagram over the MTU is
// fragmented by the sending kernel and reassembled before the raw socket.
func TestGRE(t *testing.T) {
	for _, fam := range []struct {
		name string
		a, b netip.Addr
	}{{"ipv4", addrA, addrB}, {"ipv6", addrA6, addrB6}} {
		t.Run(fam.name, func(t *testing.T) {
			a, b := underlay(t, "gre"+fam.name[3:])
			ca, err := listenGREIn(t, a, fam.a)
			if err != nil && fam.name == "ipv6" && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT)) {
				testenv.Unavailable(t, fmt.Sprintf("raw GRE over IPv6 in this kernel: %v", err))
			}
			if err != nil {
				t.Fatal(err)
			}
			cb, err := listenGREIn(t, b, fam.b)
			if err != nil {
				t.Fatal(err)
			}
			rxa, rxb := collect(t, ca), collect(t, cb)
			for _, dir := range []struct {
				name     string
				tx       *GREConn
				rx       <-chan got
				from, to netip.Addr
			}{{"a-to-b", ca, rxb, fam.a, fam.b}, {"b-to-a", cb, rxa, fam.b, fam.a}} {
				var msgs []Msg
				want := map[uint32][]byte{}
				for i := range 20 {
					n := 20 + i*70
					if i == 19 {
						n = 3000 // over the 1500 MTU: fragmented, reassembled
					}
					p := mplsOverGRE(uint32(i), 100+uint32(i), n)
					want[uint32(i)] = p
					msgs = append(msgs, msgOf(p, dir.to, 0, 0))
				}
				if n, err := dir.tx.Write(msgs); n != len(msgs) || err != nil {
					t.Fatalf("%s: Write = %d, %v", dir.name, n, err)
				}
				for _, g := range take(t, dir.rx, len(msgs), wait) {
					if len(g.data) < 12 {
						t.Fatalf("%s: %d bytes", dir.name, len(g.data))
					}
					id := binary.BigEndian.Uint32(g.data[8:])
					if !bytes.Equal(g.data, want[id]) {
						t.Fatalf("%s: message %d: %d bytes, differs from the %d sent", dir.name, id, len(g.data), len(want[id]))
					}
					if g.from != dir.from {
						t.Fatalf("%s: from %v, want %v", dir.name, g.from, dir.from)
					}
				}
			}
			for _, c := range []*GREConn{ca, cb} {
				st := c.Stats()
				if st.DatagramsIn != 20 || st.DatagramsOut != 20 || st.Drops != (Drops{}) {
					t.Errorf("%v stats %+v", c.LocalAddr(), st)
				}
			}

			// Garbage and non-MPLS GRE payloads, empty ones included, are
			// handed up unchanged: the caller parses GRE.
			rng := rand.New(rand.NewPCG(5, 6))
			var junk []Msg
			var sent [][]byte
			for n := range 64 {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				sent = append(sent, p)
				junk = append(junk, msgOf(p, fam.b, 0, 0))
			}
			if n, err := ca.Write(junk); n != len(junk) || err != nil {
				t.Fatalf("junk Write = %d, %v", n, err)
			}
			gs := take(t, rxb, len(sent), wait)
			for i, g := range gs {
				if !bytes.Equal(g.data, sent[i]) {
					t.Fatalf("junk %d: %d bytes, sent %d", i, len(g.data), len(sent[i]))
				}
			}

			// SegSize > 0 without GSO: one GRE datagram per segment.
			two := append(mplsOverGRE(100, 16, 92), mplsOverGRE(101, 17, 50)...)
			if n, err := ca.Write([]Msg{msgOf(two, fam.b, 0, 100)}); n != 1 || err != nil {
				t.Fatalf("segmented Write = %d, %v", n, err)
			}
			gs = take(t, rxb, 2, wait)
			if !bytes.Equal(gs[0].data, two[:100]) || !bytes.Equal(gs[1].data, two[100:]) {
				t.Fatalf("segments arrived as %d and %d bytes", len(gs[0].data), len(gs[1].data))
			}
		})
	}
}

func TestGRECloseUnblocksRead(t *testing.T) {
	a, _ := underlay(t, "grecl")
	c, err := listenGREIn(t, a, addrA)
	if err != nil {
		t.Fatal(err)
	}
	closeUnblocks(t, c)
}

func TestGRENoAllocs(t *testing.T) {
	a, b := underlay(t, "grealloc")
	tx, err := listenGREIn(t, a, addrA)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := listenGREIn(t, b, addrB)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]Msg, 64)
	for i := range out {
		out[i] = msgOf(mplsOverGRE(uint32(i), 16, 200), addrB, 0, 0)
	}
	in := make([]Msg, 64)
	for i, f := range frame.Batch(64) {
		in[i].F = f
	}
	allocs := testing.AllocsPerRun(50, func() {
		if n, err := tx.Write(out); n != len(out) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for left := len(out); left > 0; {
			n, err := rx.Read(in)
			if err != nil {
				t.Fatal(err)
			}
			left -= n
		}
	})
	if allocs != 0 && !raceEnabled {
		t.Errorf("%v allocations per batch of 64", allocs)
	}
}
