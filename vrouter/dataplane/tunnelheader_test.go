package dataplane

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

// TestTunnelHeaders: what the data path writes in front of an inner
// packet for each encapsulation (the kernel's tunnel socket adds the
// outer IP and UDP), byte for byte: the MPLS entry with the next hop's
// label, bottom of stack and the default TTL; GRE carrying MPLS with no
// options; VXLAN with the VNI, then the inner Ethernet to the router MAC.
// With the outer headers, that is Encap.Overhead.
func TestTunnelHeaders(t *testing.T) {
	b := newBed(t, false)
	for _, tc := range []struct {
		enc  packet.Encap
		conn *memConn
		dst  netip.Addr
	}{
		{packet.EncapMPLSoUDP, b.mpls, addrMPLS},
		{packet.EncapMPLSoGRE, b.gre, addrGRE},
		{packet.EncapVXLAN, b.vx, addrVX},
	} {
		t.Run(tc.enc.String(), func(t *testing.T) {
			tc.conn.keep = true
			in := udp4(gwMAC, macA, addrA, tc.dst, 200)
			b.send(b.psA, in)
			msgs := tc.conn.written()
			if len(msgs) != 1 {
				t.Fatalf("%d datagrams sent to %s, drops %v", len(msgs), tc.dst, b.e.Counters().Drops)
			}
			if msgs[0].Addr != remote {
				t.Errorf("sent to %v, want %v", msgs[0].Addr, remote)
			}
			d := msgs[0].F.Data()
			innerIP := in[packet.EthernetHeaderLen:]
			var got []byte
			outer := packet.IPv4MinHeaderLen // what the socket adds
			switch tc.enc {
			case packet.EncapMPLSoUDP, packet.EncapMPLSoGRE:
				shim := d
				if tc.enc == packet.EncapMPLSoGRE {
					g, err := packet.ParseGRE(d)
					if err != nil {
						t.Fatal(err)
					}
					if g.Protocol() != packet.EtherTypeMPLS || g.HeaderLen() != packet.GREHeaderLen {
						t.Fatalf("gre %x", g.Bytes()[:4])
					}
					shim = g.Payload()
				} else {
					outer += packet.UDPHeaderLen
				}
				m, err := packet.ParseMPLS(shim)
				if err != nil {
					t.Fatal(err)
				}
				if m.Depth() != 1 || m.Top().Label() != labelA || !m.Top().Bottom() || m.Top().TTL() != packet.DefaultTTL {
					t.Fatalf("mpls %x", m.Bytes()[:4])
				}
				got = m.Payload()
			case packet.EncapVXLAN:
				outer += packet.UDPHeaderLen
				v, err := packet.ParseVXLAN(d)
				if err != nil {
					t.Fatal(err)
				}
				if v.VNI() != vniNet {
					t.Fatalf("vni %d, want %d", v.VNI(), vniNet)
				}
				e, err := packet.ParseEthernet(v.Payload())
				if err != nil {
					t.Fatal(err)
				}
				if e.Dst() != gwMAC || e.Src() != gwMAC || e.EtherType() != packet.EtherTypeIPv4 {
					t.Fatalf("inner ethernet %x", e.Bytes()[:14])
				}
				got = e.Payload()
			}
			if n := len(d) - len(innerIP) + outer; n != tc.enc.Overhead(false) {
				t.Errorf("header of %d bytes with the outer IPv4, Overhead says %d", n, tc.enc.Overhead(false))
			}
			// The inner packet is routed: its TTL one less, all else equal.
			if len(got) != len(innerIP) || got[8] != innerIP[8]-1 || !bytes.Equal(got[packet.IPv4MinHeaderLen:], innerIP[packet.IPv4MinHeaderLen:]) {
				t.Fatalf("inner packet\n got %x\nwant %x", got, innerIP)
			}
		})
	}
}
