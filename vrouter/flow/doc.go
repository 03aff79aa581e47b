// Package flow is the vRouter's policy between networks and its flow
// table.
//
// Traffic inside one network is always allowed and never reaches this
// package. Between two different networks only what a Rule allows passes.
// The decision is taken on a flow's first packet by a compiled Policy and
// cached in a Table together with the reverse flow, so that the replies of
// an allowed flow pass. Each vRouter decides for its own ports: the one at
// the far end of a tunnel sees the forward packet arrive from the fabric
// and decides (and caches the reverse) too.
//
// # The caller's contract
//
// For each packet between two different networks the forwarding path calls
// Table.Decide with:
//
//   - Key.VRF: the VRF of the local port the packet comes from (from a
//     port) or goes to (from the fabric). A packet between two local ports
//     of different VRFs is decided twice, on ingress under the source
//     port's VRF and on delivery under the destination port's, exactly as
//     two vRouters would; each side then holds the flow and its reverse.
//   - Key.Tuple: packet.ParseFiveTuple of the packet (the inner packet of a
//     tunnel). ICMP echo carries its identifier in both ports, so a reply's
//     tuple is the reverse of its request's and hits the request's reverse
//     entry.
//   - srcNet, dstNet: the networks of the source and destination, as the
//     FIB and ports know them; 0 for unknown or external. They are part of
//     the cached decision: a reply gives them swapped, and a packet that
//     gives others (an address moved to another network, a floating IP
//     re-associated) is re-decided, not served from the cache.
//   - tcpFlags: the TCP flags byte of a TCP packet, else 0.
//   - bytes: the packet's length, for the counters.
//   - now: a nanosecond clock (time.Now().UnixNano(), read once per batch
//     is enough); Sweep is given the same clock.
//
// ICMP errors (destination unreachable, fragmentation needed, packet too
// big, time exceeded, parameter problem) go to Table.DecideICMPError
// instead, with the tuple of the datagram the error quotes; an error about
// an allowed flow passes. The quoted datagram is cut short (8 bytes of
// payload for ICMPv4), so that tuple comes from packet.ParseQuotedFiveTuple,
// which accepts a truncated header (packet.IPv4.ICMPError and
// packet.IPv6.ICMPError find the quote).
//
// One goroutine calls Sweep every second or so. SetPolicy puts a new
// Policy in force; decisions cached under the old one are re-decided by
// their flow's next packet (see SetPolicy for why not a flush).
//
// # Limitations
//
// Fragments carry no ports in packet.FiveTuple, so a fragmented TCP or UDP
// datagram is decided as a flow with ports 0: a rule with DstPorts does not
// allow it, one without does.
package flow
