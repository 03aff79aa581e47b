package gso

import "encoding/binary"

// Setters for header fields that the views of package packet read but do
// not write (yet): IPv4 Total Length and ID, IPv6 Payload Length, TCP
// Sequence Number and Flags, UDP Length, and a raw checksum store; and the
// addresses as the bytes they are in the header (the views return
// netip.Addr, whose conversion back to bytes costs more than the checksum
// of the pseudo-header they go into). Each takes the header's bytes, which
// a view has already bounds-checked, and works at the field's RFC offset.

// ipv4Addrs is Source and Destination Address (RFC 791, offsets 12-19).
func ipv4Addrs(ip []byte) []byte { return ip[12:20] }

// ipv6Addrs is Source and Destination Address (RFC 8200, offsets 8-39).
func ipv6Addrs(ip []byte) []byte { return ip[8:40] }

// setIPv4TotalLen writes Total Length (RFC 791, offset 2).
func setIPv4TotalLen(ip []byte, n int) { binary.BigEndian.PutUint16(ip[2:4], uint16(n)) }

// setIPv4ID writes Identification (RFC 791, offset 4).
func setIPv4ID(ip []byte, id uint16) { binary.BigEndian.PutUint16(ip[4:6], id) }

// setIPv4Checksum recomputes the header checksum (RFC 791, offset 10) over
// hl header bytes, options included.
func setIPv4Checksum(ip []byte, hl int) {
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(ip[:hl], 0)))
}

// setIPv6PayloadLen writes Payload Length (RFC 8200, offset 4).
func setIPv6PayloadLen(ip []byte, n int) { binary.BigEndian.PutUint16(ip[4:6], uint16(n)) }

// setTCPSeq writes the Sequence Number (RFC 9293, offset 4).
func setTCPSeq(tcp []byte, seq uint32) { binary.BigEndian.PutUint32(tcp[4:8], seq) }

// setTCPFlags writes the flags byte (RFC 9293, offset 13).
func setTCPFlags(tcp []byte, flags uint8) { tcp[13] = flags }

// setUDPLen writes Length (RFC 768, offset 4).
func setUDPLen(udp []byte, n int) { binary.BigEndian.PutUint16(udp[4:6], uint16(n)) }

// Offsets of the transport checksum fields, as virtio's csum_offset.
const (
	tcpCsumOff = 16
	udpCsumOff = 6
)

// putCsum stores a network-order checksum value at off.
func putCsum(b []byte, off int, c uint16) { binary.BigEndian.PutUint16(b[off:off+2], c) }
