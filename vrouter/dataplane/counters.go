package dataplane

import (
	"sync/atomic"

	"github.com/weftnet/weft/vrouter/packet"
)

// Reason is why the engine dropped a packet. Every drop is counted under
// exactly one reason; the names are what `weft ctl` and /metrics show.
type Reason uint8

const (
	DropMalformed       Reason = iota // a header from a port failed to parse
	DropSpoofedMAC                    // source MAC is not the port's
	DropSpoofedIP                     // source IP is not one the port may use
	DropNotToGateway                  // unicast to a MAC other than the gateway's
	DropL2                            // broadcast/multicast the vRouter does not serve
	DropNoRoute                       // no route in the VRF
	DropDiscard                       // a discard next hop
	DropPolicy                        // no rule allows the flow between networks
	DropTTL                           // TTL/hop limit expired (an ICMP error was sent)
	DropTooBig                        // over the path MTU with DF (an ICMP error was sent)
	DropUnknownLabel                  // an incoming MPLS label nobody owns
	DropUnknownVNI                    // an incoming VNI with no VRF
	DropTunnelMalformed               // a tunnel datagram that failed to parse
	DropNoPort                        // a next hop names a port that is gone
	DropNoTunnel                      // no underlay socket for the encapsulation
	DropBadNextHop                    // a next hop that cannot forward this packet
	DropServices                      // a malformed ARP/ND/DHCP message
	DropFragment                      // a fragment where the vRouter needs the transport header
	DropTxError                       // a write the kernel refused
	DropTunnelSource                  // a tunnel packet from an outer source no route leads to (for its encapsulation)
	DropTunnelVRF                     // a tunnel packet from a real vRouter, for a VRF none of whose routes lead to it
	numReasons
)

var reasonNames = [numReasons]string{
	DropMalformed:       "malformed",
	DropSpoofedMAC:      "spoofed-mac",
	DropSpoofedIP:       "spoofed-ip",
	DropNotToGateway:    "not-to-gateway",
	DropL2:              "l2-unsupported",
	DropNoRoute:         "no-route",
	DropDiscard:         "discard",
	DropPolicy:          "policy",
	DropTTL:             "ttl-expired",
	DropTooBig:          "too-big",
	DropUnknownLabel:    "unknown-label",
	DropUnknownVNI:      "unknown-vni",
	DropTunnelMalformed: "tunnel-malformed",
	DropNoPort:          "no-port",
	DropNoTunnel:        "no-tunnel",
	DropBadNextHop:      "bad-next-hop",
	DropServices:        "services-malformed",
	DropFragment:        "fragment",
	DropTxError:         "tx-error",
	DropTunnelSource:    "tunnel-unknown-source",
	DropTunnelVRF:       "tunnel-wrong-vrf",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

func (e *Engine) drop(r Reason) { e.drops[r].Add(1) }

// PortCounters are one port's traffic as the engine saw it.
type PortCounters struct {
	RxPackets, RxBytes, TxPackets, TxBytes, Drops uint64
}

type portCounters struct {
	rxPackets, rxBytes, txPackets, txBytes, drops atomic.Uint64
}

func (c *portCounters) snapshot() PortCounters {
	return PortCounters{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(), Drops: c.drops.Load(),
	}
}

// Counters is a snapshot of the engine's counters.
type Counters struct {
	Ports    map[uint32]PortCounters
	Drops    map[string]uint64 // by Reason name, only non-zero ones
	TunnelRx map[string]uint64 // datagrams by encapsulation
	TunnelTx map[string]uint64
}

// Counters reads every counter.
func (e *Engine) Counters() Counters {
	c := Counters{Ports: map[uint32]PortCounters{}, Drops: map[string]uint64{}, TunnelRx: map[string]uint64{}, TunnelTx: map[string]uint64{}}
	for _, ps := range *e.ports.Load() {
		if ps != nil {
			c.Ports[ps.cfg.ID] = ps.c.snapshot()
		}
	}
	for r := range numReasons {
		if v := e.drops[r].Load(); v != 0 {
			c.Drops[r.String()] = v
		}
	}
	for _, enc := range []packet.Encap{packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN} {
		if v := e.tunRx[enc].Load(); v != 0 {
			c.TunnelRx[enc.String()] = v
		}
		if v := e.tunTx[enc].Load(); v != 0 {
			c.TunnelTx[enc.String()] = v
		}
	}
	return c
}

// Drops returns the count of one reason (for tests and metrics).
func (e *Engine) Drops(r Reason) uint64 {
	if r >= numReasons {
		return 0
	}
	return e.drops[r].Load()
}
