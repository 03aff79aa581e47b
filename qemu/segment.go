package qemu

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
)

// FreePort returns 127.0.0.1 with a port free for network ("tcp" or "udp")
// right now. Another process may take it before QEMU binds it; tests on one
// host rarely race for the same ephemeral port.
func FreePort(network string) (netip.AddrPort, error) {
	switch network {
	case "tcp":
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("free tcp port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).AddrPort(), nil
	case "udp":
		// The wildcard address: a multicast segment binds group:port, which
		// a port taken on any local address would disturb.
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("free udp port: %w", err)
		}
		defer c.Close()
		port := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("free port: network %q (want tcp or udp)", network)
}

// Segment is one virtual Ethernet segment for any number of VMs on this
// host: QEMU's UDP multicast transport (-netdev dgram with a multicast
// remote) with 127.0.0.1 as the multicast interface, so no frame leaves the
// loopback. The group (in 239.255.0.0/16, organisation-local) and the port
// are chosen per segment, so concurrent tests do not hear each other.
//
// Topology: a hub. Every frame a VM sends reaches every VM on the segment,
// itself included (multicast loopback; Linux guests ignore their own ARP and
// IPv6 DAD copes through its nonce). VMs join and leave in any order, unlike
// a -netdev socket listen/connect pair, which links exactly two VMs and
// needs the listener started first.
type Segment struct {
	Group netip.AddrPort
}

// NewSegment picks a fresh group and a free UDP port.
func NewSegment() (*Segment, error) {
	ap, err := FreePort("udp")
	if err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	// Avoid 239.255.0.x and .255, which some stacks treat specially.
	r[0] = max(r[0], 1)
	r[1] = min(max(r[1], 1), 254)
	group := netip.AddrFrom4([4]byte{239, 255, r[0], r[1]})
	return &Segment{Group: netip.AddrPortFrom(group, ap.Port())}, nil
}

// NIC is a NIC on the segment; a nil mac means the VM's default MAC.
func (s *Segment) NIC(mac net.HardwareAddr) NIC {
	return NIC{MAC: mac, Socket: &SocketNet{MCast: s.Group.String()}}
}
