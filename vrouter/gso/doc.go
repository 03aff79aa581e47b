// Package gso cuts TCP and UDP super-frames into wire-sized packets and
// merges TCP segments back into super-frames, in pure Go, so that a TCP
// stream crosses the vRouter in 64 KiB units: a TAP hands the forwarder a
// GSO super-frame (frame.Offload), Segment cuts it for a tunnel (laid out
// for UDP GSO: equal strides with room for the tunnel header), and on the
// far side a Coalescer merges what the tunnel delivers into super-frames to
// write into a TAP, as the kernel's GSO and GRO would.
//
// Segment follows Linux's tcp_gso_segment and __udp_gso_segment: IPv4 IDs
// incremented, sequence numbers advanced, FIN and PSH on the last segment
// only, CWR on the first only, every length and checksum complete. The
// Coalescer follows tcp_gro_receive's rules (see Coalescer.Add), and also
// requires an equal window, as tcp_gro_receive does.
//
// Checksums are computed by this package's sum, which handles 64 bytes per
// iteration in two carry chains of little-endian words; see checksum.go.
// The Coalescer verifies a segment's checksum before merging it, unless
// the caller vouches for it (AddCovered: a datagram of a UDP GRO train,
// whose UDP checksum the kernel verified), and, with Gather, points the
// super-frame at the merged payloads where they are instead of copying
// them (frame.Frame.Frags, which the port's write gathers).
//
// Packets are read through the views of package packet; the few header
// fields those views cannot write yet are set by the helpers in fields.go.
//
// Not supported: IPv6 extension headers in super-frames (Segment refuses
// them; the Coalescer passes such packets through), IPv4 fragments, BIG TCP
// (an IP length of 0 for packets over 64 KiB), GSO with ECN
// (VIRTIO_NET_HDR_GSO_ECN, which frame.Offload does not carry), and the
// tunnel GSO types (the vRouter writes tunnel headers itself).
package gso
