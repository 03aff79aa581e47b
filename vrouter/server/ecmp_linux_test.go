package server_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// flowSink records which source ports reached an anycast endpoint.
type flowSink struct {
	mu    sync.Mutex
	ports map[int]string // source port -> host that got it
}

func (s *flowSink) listen(t *testing.T, ns *nettest.NS, host, addr string) {
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
		t.Fatalf("listen %s on %s: %v", addr, host, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.ports[from.(*net.UDPAddr).Port] = host
			s.mu.Unlock()
		}
	}()
}

func (s *flowSink) snapshot() map[int]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]string, len(s.ports))
	for k, v := range s.ports {
		out[k] = v
	}
	return out
}

func (s *flowSink) reset() {
	s.mu.Lock()
	s.ports = map[int]string{}
	s.mu.Unlock()
}

// sendFlows sends one datagram from each of n source ports (distinct
// flows) from ns to dst, twice, to ride over a lost datagram.
func sendFlows(t *testing.T, ns *nettest.NS, src string, first, n int, dst string) {
	raddr, err := net.ResolveUDPAddr("udp", dst)
	if err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		for round := range 2 {
			for p := first; p < first+n; p++ {
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src), Port: p})
				if err != nil {
					return err
				}
				c.WriteTo([]byte(fmt.Sprintf("flow %d round %d", p, round)), raddr)
				c.Close()
			}
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send flows: %v", err)
	}
}

// TestECMPSpreadsAndKeepsFlows: a prefix with three tunnel next hops (an
// anycast address on hosts b, c and d) spreads 300 flows over all three,
// each taking at least 20%; removing one member moves only that member's
// flows.
func TestECMPSpreadsAndKeepsFlows(t *testing.T) { lab.Modes(t, ecmpSpreadsAndKeepsFlows) }

func ecmpSpreadsAndKeepsFlows(t *testing.T, m lab.Mode) {
	l := lab.NewMode(t, "wtve", m)
	a := l.Host(t, "a", "192.0.2.1")
	remotes := []*lab.Host{l.Host(t, "b", "192.0.2.2"), l.Host(t, "c", "192.0.2.3"), l.Host(t, "d", "192.0.2.4")}
	src := l.Endpoint(t, "src")
	a.StartVRouter(t)
	apply(t, a, putVRF(1, 100, "red"), putPort(tap(1, 1, "src", src.Name, "10.1.0.2/24")), portNH(1, 1, 100),
		putRoute(1, "10.1.0.2/32", 1), putLabel(101, 1))

	sink := &flowSink{ports: map[int]string{}}
	var members []uint32
	for i, h := range remotes {
		ep := l.Endpoint(t, "any"+h.Name)
		h.StartVRouter(t)
		apply(t, h, putVRF(1, 100, "red"), putPort(tap(1, 1, "any-"+h.Name, ep.Name, "10.1.0.9/24")), portNH(1, 1, 100),
			putRoute(1, "10.1.0.9/32", 1), putLabel(101, 1),
			tunnelNH(2, vrouterv1.Encap_ENCAP_MPLSOUDP, a.Underlay, 101, 100), putRoute(1, "10.1.0.2/32", 2))
		sink.listen(t, ep, h.Name, "10.1.0.9:9000")
		id := uint32(3 + i)
		members = append(members, id)
		apply(t, a, tunnelNH(id, vrouterv1.Encap_ENCAP_MPLSOUDP, h.Underlay, 101, 100))
	}
	composite := func(ms ...uint32) *vrouterv1.Op {
		return putNH(&vrouterv1.NextHop{Id: 10, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE, Members: ms, Network: 100})
	}
	apply(t, a, composite(members...), putRoute(1, "10.1.0.9/32", 10))

	const flows = 300
	sendFlows(t, src, "10.1.0.2", 20000, flows, "10.1.0.9:9000")
	waitFor(t, "300 flows to arrive", 10*time.Second, func() bool { return len(sink.snapshot()) >= flows-3 })
	first := sink.snapshot()
	per := map[string]int{}
	for _, h := range first {
		per[h]++
	}
	t.Logf("300 flows over three members: %v", per)
	for _, h := range remotes {
		if per[h.Name] < flows/5 {
			t.Errorf("host %s got %d of %d flows, want at least 20%%", h.Name, per[h.Name], flows)
		}
	}

	// Member c goes away.
	apply(t, a, composite(members[0], members[2]))
	sink.reset()
	sendFlows(t, src, "10.1.0.2", 20000, flows, "10.1.0.9:9000")
	waitFor(t, "flows after removing c", 10*time.Second, func() bool { return len(sink.snapshot()) >= flows-3 })
	second := sink.snapshot()
	moved, stayed := 0, 0
	for port, h := range second {
		before, ok := first[port]
		switch {
		case !ok:
		case before == "c":
			moved++
			if h == "c" {
				t.Errorf("flow %d still reaches c after c left the composite", port)
			}
		case before != h:
			t.Errorf("flow %d moved from %s to %s though %s stayed", port, before, h, before)
		default:
			stayed++
		}
	}
	t.Logf("after removing c: %d flows moved off c, %d stayed where they were", moved, stayed)
	if moved == 0 || stayed == 0 {
		t.Errorf("moved %d, stayed %d: want both non-zero", moved, stayed)
	}
}
