package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARPLen is the length of an ARP message for IPv4 over Ethernet.
const ARPLen = 28

// ARP is a view of an ARP message for IPv4 over Ethernet (RFC 826), the
// only kind the proxy answers.
type ARP struct{ b []byte }

// ParseARP checks the fixed fields: hardware type 1 (Ethernet) with 6-byte
// addresses, protocol type 0x0800 with 4-byte addresses, operation 1 or 2.
// Trailing bytes (Ethernet padding) are not part of the view.
func ParseARP(b []byte) (ARP, error) {
	if len(b) < ARPLen {
		return ARP{}, errShort("arp", "message", 0, len(b), ARPLen)
	}
	if h := binary.BigEndian.Uint16(b[0:2]); h != 1 {
		return ARP{}, errField("arp", "hardware type", 0, int(h), 1, fmtWant)
	}
	if p := binary.BigEndian.Uint16(b[2:4]); p != EtherTypeIPv4 {
		return ARP{}, errField("arp", "protocol type", 2, int(p), EtherTypeIPv4, fmtWant)
	}
	if b[4] != 6 {
		return ARP{}, errField("arp", "hardware length", 4, int(b[4]), 6, fmtWant)
	}
	if b[5] != 4 {
		return ARP{}, errField("arp", "protocol length", 5, int(b[5]), 4, fmtWant)
	}
	if op := binary.BigEndian.Uint16(b[6:8]); op != ARPRequest && op != ARPReply {
		return ARP{}, errField("arp", "operation", 6, int(op), ARPRequest, "%d, want %d or 2")
	}
	return ARP{b: b[:ARPLen]}, nil
}

// Bytes is the 28-byte message.
func (a ARP) Bytes() []byte { return a.b }

// Op is ARPRequest or ARPReply.
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a.b[6:8]) }

// SenderMAC is the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a.b[8:14]) }

// SenderIP is the sender protocol address.
func (a ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(a.b[14:18])) }

// TargetMAC is the target hardware address (zero in requests).
func (a ARP) TargetMAC() MAC { return MAC(a.b[18:24]) }

// TargetIP is the target protocol address.
func (a ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(a.b[24:28])) }

// IsGratuitous reports whether sender and target addresses are the same
// (an announcement, not a question).
func (a ARP) IsGratuitous() bool { return a.SenderIP() == a.TargetIP() }

// PutARP writes an IPv4-over-Ethernet ARP message at the start of b.
// spa and tpa must be IPv4 addresses.
func PutARP(b []byte, op uint16, sha MAC, spa netip.Addr, tha MAC, tpa netip.Addr) (ARP, error) {
	if len(b) < ARPLen {
		return ARP{}, errBuf("arp", len(b), ARPLen)
	}
	if !spa.Is4() || !tpa.Is4() {
		return ARP{}, fmt.Errorf("arp: addresses %v and %v must be IPv4", spa, tpa)
	}
	binary.BigEndian.PutUint16(b[0:2], 1)
	binary.BigEndian.PutUint16(b[2:4], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:8], op)
	copy(b[8:14], sha[:])
	s, t := spa.As4(), tpa.As4()
	copy(b[14:18], s[:])
	copy(b[18:24], tha[:])
	copy(b[24:28], t[:])
	return ARP{b: b[:ARPLen]}, nil
}
