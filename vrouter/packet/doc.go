// Package packet holds the vRouter's wire formats: a small view type per
// header over a []byte, in the manner of gVisor's tcpip/header, and builders
// that write headers into caller-provided buffers.
//
// # Views
//
// A view (Ethernet, ARP, IPv4, IPv6, UDP, TCP, ICMPv4, ICMPv6, MPLS, VXLAN,
// GRE) is made only by its Parse function, which checks every bound the
// accessors rely on once; after that no accessor can panic or read past the
// header, whatever the bytes were. The zero value of a view is not valid.
// A view aliases the caller's buffer: setters write through to it, and the
// view is valid only as long as the buffer holds that packet. Parsing
// allocates nothing on success; a failure returns a *ParseError naming the
// header, the field and its byte offset:
//
//	ipv4: total length 1500 exceeds 60 bytes of packet
//
// Parsers check structure, not checksums: the caller decides whether to pay
// for ChecksumValid on its path. The one parser that accepts a header cut
// short is ParseQuotedFiveTuple, for the datagram an ICMP error quotes.
//
// # Builders
//
// Put* functions write one header at the start of a buffer; Build*
// functions write a whole packet (ICMP errors, neighbor advertisements).
// A tunnel packet is the shim (PutMPLS, PutGRE, PutVXLAN) that the data
// path (vrouter/dataplane) writes into the headroom in front of the inner
// packet; the outer IP and UDP headers are the kernel's, written by the
// tunnel sockets (vrouter/tunnel). Encap.Overhead counts both. Buffers too
// short are an error, never a panic.
package packet
