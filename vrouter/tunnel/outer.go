package tunnel

import "encoding/binary"

// ipv4OuterMin is the outer IPv4 header without options, the length a raw
// IPv4 socket's Read plans for so that the payload lands at frame.Headroom
// without a copy.
const ipv4OuterMin = 20

// ipv4Outer checks the outer IPv4 header that a raw IPv4 socket delivers
// in front of each datagram and returns the header length and payload
// length within b (bytes past Total Length are link padding, not payload).
// It is not packet.ParseIPv4 because a receive path that drops garbage must
// not allocate an error per datagram, and it needs the reason as a counter
// index.
func ipv4Outer(b []byte, proto uint8) (hdrLen, payloadLen int, why dropReason) {
	if len(b) < ipv4OuterMin {
		return 0, 0, dropShortHeader
	}
	if b[0]>>4 != 4 {
		return 0, 0, dropBadHeader
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4OuterMin {
		return 0, 0, dropBadHeader
	}
	if ihl > len(b) {
		return 0, 0, dropShortHeader
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < ihl {
		return 0, 0, dropBadHeader
	}
	if total > len(b) {
		return 0, 0, dropShortHeader
	}
	if b[9] != proto {
		return 0, 0, dropBadHeader
	}
	// MF or a fragment offset: the kernel reassembles before raw delivery,
	// so a fragment here is malformed input, not something to glue.
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return 0, 0, dropFragment
	}
	return ihl, total - ihl, dropNone
}
