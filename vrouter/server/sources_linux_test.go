package server_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
)

// intruder is a host on the underlay that sends hand-made tunnel packets
// to a vRouter: from c's address (a real vRouter of one tenant, as far as
// b's routes say) or from a second address no route leads to.
type intruder struct {
	h *lab.Host
}

const (
	strangerAddr = "192.0.2.4" // on c, no route leads there
	innerFromC   = "10.1.0.9"  // c's blue endpoint, as b's blue VRF routes it
)

// send sends one tunnel packet of encapsulation enc from src to dst's
// vRouter, with the label or VNI key, carrying a UDP datagram from inner
// source isrc to 10.1.0.3 (b's endpoints, red and blue).
func (x intruder) send(t *testing.T, enc vrouterv1.Encap, src string, dst netip.Addr, key uint32, isrc string) {
	t.Helper()
	inner := innerUDP(netip.MustParseAddr(isrc), netip.MustParseAddr("10.1.0.3"))
	var payload []byte
	switch enc {
	case vrouterv1.Encap_ENCAP_VXLAN:
		payload = make([]byte, packet.VXLANHeaderLen+packet.EthernetHeaderLen+len(inner))
		packet.PutVXLAN(payload, key)
		packet.PutEthernet(payload[packet.VXLANHeaderLen:], packet.RouterMACFor(dst), packet.RouterMACFor(netip.MustParseAddr(src)), packet.EtherTypeIPv4)
		copy(payload[packet.VXLANHeaderLen+packet.EthernetHeaderLen:], inner)
	default:
		payload = make([]byte, packet.MPLSEntryLen+len(inner))
		packet.PutMPLS(payload, packet.NewMPLSEntry(key, 0, true, 64))
		copy(payload[packet.MPLSEntryLen:], inner)
	}
	err := x.h.NS.Do(func() error {
		switch enc {
		case vrouterv1.Encap_ENCAP_MPLSOGRE:
			c, err := net.ListenPacket("ip4:47", src)
			if err != nil {
				return err
			}
			defer c.Close()
			b := make([]byte, 4+len(payload))
			packet.PutGRE(b, packet.EtherTypeMPLS)
			copy(b[4:], payload)
			_, err = c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
			return err
		default:
			port := 6635
			if enc == vrouterv1.Encap_ENCAP_VXLAN {
				port = 4789
			}
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: dst.AsSlice(), Port: port})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(payload)
			return err
		}
	})
	if err != nil {
		t.Fatalf("send %v from %s: %v", enc, src, err)
	}
}

// innerUDP is an IPv4/UDP packet (no Ethernet) with its checksums right.
func innerUDP(src, dst netip.Addr) []byte {
	b := make([]byte, packet.IPv4MinHeaderLen+packet.UDPHeaderLen+16)
	h := packet.IPv4Header{Src: src, Dst: dst, Protocol: packet.ProtoUDP, TTL: 64}
	packet.PutIPv4Header(b, &h, len(b)-packet.IPv4MinHeaderLen)
	u, _ := packet.PutUDP(b[packet.IPv4MinHeaderLen:], 40000, 7009, 16)
	copy(u.Payload(), "weft intruder...")
	u.SetChecksum(src, dst)
	return b
}

func drop(c *vrouterv1.CountersReply, reason string) uint64 { return c.GetDrops()[reason] }

// TestTunnelSources is finding 2 of issue 9: a vRouter takes a tunnel
// packet only from a remote endpoint that the routes of the VRF its label
// or VNI belongs to lead to, over that encapsulation. Hosts a and b carry
// both tenants (red and blue); c is b's blue peer only (b routes blue
// 10.1.0.9 through it) and has a second address no route names. For
// each encapsulation: red and blue still talk a<->b; c's blue packet is
// delivered (the hand-made packets are right); c's packet with red's key
// is dropped as tunnel-wrong-vrf; any packet from the stranger address,
// also with an inner source of the tenant's own subnet (which would skip
// policy), and c's packet over an encapsulation its route does not use,
// are dropped as tunnel-unknown-source. Then the source moves with the
// route's next hop and leaves with the route.
func TestTunnelSources(t *testing.T) { lab.Modes(t, tunnelSources) }

func tunnelSources(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtvs", m)
	c := tn.l.Host(t, "c", "192.0.2.3")
	c.NS.Run(t, "ip", "addr", "add", strangerAddr+"/24", "dev", "eth0")
	x := intruder{h: c}
	b := tn.b.Underlay
	const cNH = 5
	for _, enc := range []vrouterv1.Encap{vrouterv1.Encap_ENCAP_MPLSOUDP, vrouterv1.Encap_ENCAP_MPLSOGRE, vrouterv1.Encap_ENCAP_VXLAN} {
		t.Run(enc.String(), func(t *testing.T) {
			tn.remote(t, enc)
			blueKey, redKey := keyFor(enc, labelBlue, netBlue), keyFor(enc, labelRed, netRed)
			apply(t, tn.b, tunnelNH(cNH, enc, c.Underlay, blueKey, netBlue), putRoute(vrfBlue, innerFromC+"/32", cNH))

			// Same-tenant traffic between the real peers is untouched.
			mustPing(t, tn.redA, "10.1.0.3")
			mustPing(t, tn.bluA, "10.1.0.3")

			capRed := startCapture(t, tn.redB, "eth0", netip.MustParseAddr(innerFromC))
			capRedSpoof := startCapture(t, tn.redB, "eth0", netip.MustParseAddr("10.1.0.2"))
			capBlue := startCapture(t, tn.bluB, "eth0", netip.MustParseAddr(innerFromC))
			before := counters(t, tn.b)
			x.send(t, enc, "192.0.2.3", b, redKey, innerFromC)   // wrong VRF
			x.send(t, enc, strangerAddr, b, blueKey, innerFromC) // stranger
			x.send(t, enc, strangerAddr, b, redKey, "10.1.0.2")  // stranger, spoofing red's own subnet
			other := vrouterv1.Encap_ENCAP_VXLAN
			otherKey := netBlue
			if enc == vrouterv1.Encap_ENCAP_VXLAN {
				other, otherKey = vrouterv1.Encap_ENCAP_MPLSOUDP, labelBlue
			}
			x.send(t, other, "192.0.2.3", b, uint32(otherKey), innerFromC) // c, not over this encapsulation
			// The control: c's packet to blue, its own tenant, arrives.
			x.send(t, enc, "192.0.2.3", b, blueKey, innerFromC)
			waitFor(t, "c's blue packet delivered", 10*time.Second, func() bool { return capBlue.n.Load() > 0 })
			var wrongVRF, unknown uint64
			counted := eventually(10*time.Second, func() bool {
				now := counters(t, tn.b)
				wrongVRF = drop(now, "tunnel-wrong-vrf") - drop(before, "tunnel-wrong-vrf")
				unknown = drop(now, "tunnel-unknown-source") - drop(before, "tunnel-unknown-source")
				return wrongVRF == 1 && unknown == 3
			})
			if n := capRed.Stop() + capRedSpoof.Stop(); n != 0 {
				t.Errorf("red endpoint on b received %d of the intruder's packets", n)
			}
			if !counted {
				t.Fatalf("drops: tunnel-wrong-vrf +%d (want 1), tunnel-unknown-source +%d (want 3); all: %v", wrongVRF, unknown, counters(t, tn.b).GetDrops())
			}

			// The route's next hop moves to the stranger address: the
			// accepted source moves with it. Then the route is withdrawn:
			// nothing of c is accepted for blue any more.
			apply(t, tn.b, tunnelNH(cNH, enc, netip.MustParseAddr(strangerAddr), blueKey, netBlue))
			before = counters(t, tn.b)
			x.send(t, enc, "192.0.2.3", b, blueKey, innerFromC)
			waitFor(t, "the old next hop's packet dropped", 10*time.Second, func() bool {
				return drop(counters(t, tn.b), "tunnel-unknown-source")-drop(before, "tunnel-unknown-source") == 1
			})
			n := capBlue.n.Load()
			x.send(t, enc, strangerAddr, b, blueKey, innerFromC)
			waitFor(t, "the new next hop's packet delivered", 10*time.Second, func() bool { return capBlue.n.Load() > n })
			apply(t, tn.b, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRoute{DeleteRoute: &vrouterv1.Route{Vrf: vrfBlue, Prefix: innerFromC + "/32"}}})
			before = counters(t, tn.b)
			x.send(t, enc, strangerAddr, b, blueKey, innerFromC)
			waitFor(t, "the withdrawn route's source dropped", 10*time.Second, func() bool {
				return drop(counters(t, tn.b), "tunnel-unknown-source")-drop(before, "tunnel-unknown-source") == 1
			})
			if got := capBlue.Stop(); got != n+1 {
				t.Errorf("blue endpoint on b received %d packets from %s, want %d", got, innerFromC, n+1)
			}
			mustPing(t, tn.bluA, "10.1.0.3")
		})
	}
}

// eventually polls cond until it holds (true) or d passes (false).
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
