// Package nexthop holds the vRouter's next hops: what to do with a packet
// once its route is found. A next hop is a local port (rewrite the Ethernet
// header, send out of the port), a tunnel (encapsulate toward another
// vRouter), a composite (ECMP over member next hops), discard or receive
// (deliver to the vRouter itself).
//
// Next hops live in a Table keyed by ID. Readers (the forwarding loops)
// never lock and never allocate: the table is an immutable snapshot
// published with an atomic pointer, which the single writer replaces
// copy-on-write.
package nexthop

import (
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/vrouter/packet"
)

// ID names a next hop. 0 is never a valid ID, so that a zero value in a
// route or label table means "none".
type ID uint32

// MaxID is the largest ID a Table accepts: 2^20, as many as the
// OpenContrail vRouter's default next-hop table. IDs should be allocated
// densely from 1: the table's size follows the largest ID in use.
const MaxID = 1 << 20

// MaxMembers bounds a composite next hop; member selection costs one hash
// per member.
const MaxMembers = 64

// PortID names a vRouter port (a workload's TAP or AF_PACKET attachment).
type PortID uint32

// Kind is what a next hop does with a packet.
type Kind uint8

const (
	KindInvalid Kind = iota
	Discard          // drop the packet (counted): a blackhole route
	Receive          // deliver to the vRouter itself: its gateway address, ARP/ND/DHCP
	Port             // send out of a local port after rewriting MACs
	Tunnel           // encapsulate toward another vRouter or gateway
	Composite        // ECMP: pick one member by the flow's hash
	VRFLookup        // look the inner destination up again in VRF (a per-VRF label or VNI)
)

var kindNames = [...]string{KindInvalid: "invalid", Discard: "discard", Receive: "receive", Port: "port", Tunnel: "tunnel", Composite: "composite", VRFLookup: "vrf-lookup"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// NextHop is one next hop. Which fields mean something depends on Kind;
// the others must be zero. A *NextHop obtained from a Table is shared with
// every reader and must not be modified.
type NextHop struct {
	ID   ID
	Kind Kind

	// Port: send out of Port with the Ethernet header rewritten from
	// SrcMAC (the vRouter's gateway MAC as the endpoint sees it) to DstMAC
	// (the endpoint's MAC).
	Port   PortID
	DstMAC packet.MAC
	SrcMAC packet.MAC

	// Tunnel: encapsulate with Encap toward Underlay, the remote vRouter
	// or gateway, with Label (MPLSoUDP, MPLSoGRE; 16 to 2^20-1) or VNI
	// (VXLAN). RouterMAC is the VXLAN inner destination MAC the remote
	// expects (its EVPN router MAC); zero leaves that to the sender's
	// default.
	Encap     packet.Encap
	Underlay  netip.Addr
	Label     uint32
	VNI       uint32
	RouterMAC packet.MAC

	// AcceptEncaps are further encapsulations Underlay may send with to
	// this vRouter (the agent lists what this node offers: each end
	// chooses by its own priority): a VRF whose routes use this next hop
	// takes tunnel packets from Underlay over Encap and these (package
	// sources).
	AcceptEncaps []packet.Encap

	// Composite: ECMP over Members, none of them composite. A flow stays on
	// its member when other members come or go (see Select).
	Members []ID

	// VRFLookup: the VRF to look the packet's destination up in.
	VRF uint32

	// Network is the virtual network the destination belongs to (its VNI),
	// for policy between networks; 0 is unknown (outside every network).
	// Any kind may carry it.
	Network uint32

	// seeds[i] is the rendezvous-hash seed of Members[i], set by Table.Set.
	seeds []uint64
}

// validate checks the fields of nh for its kind, not its references.
func (nh *NextHop) validate() error {
	if nh.ID == 0 || nh.ID > MaxID {
		return fmt.Errorf("nexthop %d: id out of range 1..%d", nh.ID, MaxID)
	}
	if nh.Kind != Composite && len(nh.Members) != 0 {
		return fmt.Errorf("nexthop %d: %s with members", nh.ID, nh.Kind)
	}
	if nh.Kind != Tunnel && (nh.Underlay.IsValid() || nh.Encap != packet.EncapNone || nh.Label != 0 || nh.VNI != 0 || !nh.RouterMAC.IsZero() || len(nh.AcceptEncaps) != 0) {
		return fmt.Errorf("nexthop %d: %s with tunnel fields", nh.ID, nh.Kind)
	}
	if nh.Kind != VRFLookup && nh.VRF != 0 {
		return fmt.Errorf("nexthop %d: %s with a vrf", nh.ID, nh.Kind)
	}
	if nh.Kind != Port && (nh.Port != 0 || !nh.DstMAC.IsZero() || !nh.SrcMAC.IsZero()) {
		return fmt.Errorf("nexthop %d: %s with port fields", nh.ID, nh.Kind)
	}
	switch nh.Kind {
	case Discard, Receive:
	case VRFLookup:
		if nh.VRF == 0 {
			return fmt.Errorf("nexthop %d: vrf-lookup: vrf 0", nh.ID)
		}
	case Port:
		if nh.DstMAC.IsZero() || nh.DstMAC.IsMulticast() {
			return fmt.Errorf("nexthop %d: port: dst mac %v must be unicast", nh.ID, nh.DstMAC)
		}
		if nh.SrcMAC.IsZero() || nh.SrcMAC.IsMulticast() {
			return fmt.Errorf("nexthop %d: port: src mac %v must be unicast", nh.ID, nh.SrcMAC)
		}
	case Tunnel:
		u := nh.Underlay
		if !u.IsValid() || u.IsUnspecified() || u.IsMulticast() || u.Is4In6() || u.Zone() != "" {
			return fmt.Errorf("nexthop %d: tunnel: underlay %v must be a unicast IPv4 or IPv6 address", nh.ID, u)
		}
		switch nh.Encap {
		case packet.EncapMPLSoUDP, packet.EncapMPLSoGRE:
			if nh.Label < 16 || nh.Label > packet.MaxMPLSLabel {
				return fmt.Errorf("nexthop %d: tunnel: %s label %d out of range 16..%d", nh.ID, nh.Encap, nh.Label, packet.MaxMPLSLabel)
			}
			if nh.VNI != 0 || !nh.RouterMAC.IsZero() {
				return fmt.Errorf("nexthop %d: tunnel: %s with vxlan fields", nh.ID, nh.Encap)
			}
		case packet.EncapVXLAN:
			if nh.VNI > packet.MaxVNI {
				return fmt.Errorf("nexthop %d: tunnel: vni %d exceeds 24 bits", nh.ID, nh.VNI)
			}
			if nh.Label != 0 {
				return fmt.Errorf("nexthop %d: tunnel: vxlan with a label", nh.ID)
			}
			if nh.RouterMAC.IsMulticast() {
				return fmt.Errorf("nexthop %d: tunnel: router mac %v must be unicast", nh.ID, nh.RouterMAC)
			}
		default:
			return fmt.Errorf("nexthop %d: tunnel: encapsulation %v not supported", nh.ID, nh.Encap)
		}
		for i, e := range nh.AcceptEncaps {
			if e != packet.EncapMPLSoUDP && e != packet.EncapMPLSoGRE && e != packet.EncapVXLAN {
				return fmt.Errorf("nexthop %d: tunnel: accept_encaps[%d]: encapsulation %v not supported", nh.ID, i, e)
			}
		}
	case Composite:
		if len(nh.Members) == 0 || len(nh.Members) > MaxMembers {
			return fmt.Errorf("nexthop %d: composite: %d members, want 1..%d", nh.ID, len(nh.Members), MaxMembers)
		}
		for i, m := range nh.Members {
			if m == nh.ID {
				return fmt.Errorf("nexthop %d: composite: members[%d] is itself", nh.ID, i)
			}
			for j := range i {
				if nh.Members[j] == m {
					return fmt.Errorf("nexthop %d: composite: members[%d] repeats member %d", nh.ID, i, m)
				}
			}
		}
	default:
		return fmt.Errorf("nexthop %d: kind %v not supported", nh.ID, nh.Kind)
	}
	return nil
}

// Rendezvous (highest random weight) hashing: each member scores every
// flow with a hash of (flow, member) and the highest score wins. Removing a
// member moves exactly the flows it won, each to the member that scored
// next; adding one moves only the flows it now wins. Scores depend on the
// member's ID, not its position, so reordering Members moves nothing.

// mix64 is the splitmix64 finalizer: a bijection with full avalanche, so
// that mix64(h^seedA) and mix64(h^seedB) behave as independent draws.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Seed is member id's rendezvous-hash seed, which Select mixes with a
// flow's hash (the in-kernel fast path mirrors Select with it).
func Seed(id ID) uint64 { return memberSeed(id) }

func memberSeed(id ID) uint64 { return mix64(uint64(id)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019) }

// Select picks the member of a composite next hop for a flow with the
// given hash (packet.FiveTuple.Hash). It returns 0 for other kinds. It
// costs one multiply-mix per member and allocates nothing.
func (nh *NextHop) Select(flowHash uint64) ID {
	best := -1
	var bestScore uint64
	for i, s := range nh.seeds {
		sc := mix64(flowHash ^ s)
		if best < 0 || sc > bestScore || (sc == bestScore && nh.Members[i] < nh.Members[best]) {
			best, bestScore = i, sc
		}
	}
	if best < 0 {
		return 0
	}
	return nh.Members[best]
}
