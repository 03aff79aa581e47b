package packet

import (
	"encoding/binary"
	"fmt"
	"net"
)

// EtherTypes the vRouter handles.
const (
	EtherTypeIPv4          = 0x0800
	EtherTypeARP           = 0x0806
	EtherTypeVLAN          = 0x8100 // IEEE 802.1Q customer tag
	EtherTypeQinQ          = 0x88A8 // IEEE 802.1ad service tag
	EtherTypeIPv6          = 0x86DD
	EtherTypeMPLS          = 0x8847 // MPLS unicast
	EtherTypeMPLSMulticast = 0x8848
)

// Ethernet header sizes.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
)

// MAC is an Ethernet address. Unlike net.HardwareAddr it is a comparable
// value, usable as a map key and copied without allocation.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ParseMAC parses a 6-byte MAC in any form net.ParseMAC accepts.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	if len(hw) != 6 {
		return MAC{}, fmt.Errorf("mac %q: %d bytes, want 6", s, len(hw))
	}
	return MAC(hw), nil
}

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsZero reports whether m is 00:00:00:00:00:00 (unset).
func (m MAC) IsZero() bool { return m == MAC{} }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether m has the group bit set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// Ethernet is a view of an Ethernet II frame with at most one VLAN tag
// (TPID 0x8100 or 0x88a8). A second tag shows as EtherType() == 0x8100.
type Ethernet struct{ b []byte }

// ParseEthernet checks that b holds the header (and the tag, if tagged).
func ParseEthernet(b []byte) (Ethernet, error) {
	if len(b) < EthernetHeaderLen {
		return Ethernet{}, errShort("ethernet", "header", 0, len(b), EthernetHeaderLen)
	}
	if isVLANTPID(binary.BigEndian.Uint16(b[12:14])) && len(b) < EthernetHeaderLen+VLANTagLen {
		return Ethernet{}, errShort("ethernet", "802.1q tag", 12, len(b), EthernetHeaderLen+VLANTagLen)
	}
	return Ethernet{b: b}, nil
}

func isVLANTPID(t uint16) bool { return t == EtherTypeVLAN || t == EtherTypeQinQ }

// Bytes is the whole frame.
func (e Ethernet) Bytes() []byte { return e.b }

// Dst is the destination MAC.
func (e Ethernet) Dst() MAC { return MAC(e.b[0:6]) }

// Src is the source MAC.
func (e Ethernet) Src() MAC { return MAC(e.b[6:12]) }

// SetDst rewrites the destination MAC.
func (e Ethernet) SetDst(m MAC) { copy(e.b[0:6], m[:]) }

// SetSrc rewrites the source MAC.
func (e Ethernet) SetSrc(m MAC) { copy(e.b[6:12], m[:]) }

// HasVLAN reports whether the frame carries a VLAN tag.
func (e Ethernet) HasVLAN() bool { return isVLANTPID(binary.BigEndian.Uint16(e.b[12:14])) }

// VLAN is the tag's VLAN ID, 0 when untagged.
func (e Ethernet) VLAN() uint16 {
	if !e.HasVLAN() {
		return 0
	}
	return binary.BigEndian.Uint16(e.b[14:16]) & 0x0fff
}

// PCP is the tag's priority code point, 0 when untagged.
func (e Ethernet) PCP() uint8 {
	if !e.HasVLAN() {
		return 0
	}
	return e.b[14] >> 5
}

// EtherType is the type of the payload, after the tag if there is one.
func (e Ethernet) EtherType() uint16 {
	if e.HasVLAN() {
		return binary.BigEndian.Uint16(e.b[16:18])
	}
	return binary.BigEndian.Uint16(e.b[12:14])
}

// HeaderLen is 14, or 18 with a tag.
func (e Ethernet) HeaderLen() int {
	if e.HasVLAN() {
		return EthernetHeaderLen + VLANTagLen
	}
	return EthernetHeaderLen
}

// Payload is what follows the header (including any trailing padding).
func (e Ethernet) Payload() []byte { return e.b[e.HeaderLen():] }

// PutEthernet writes an untagged header at the start of b and returns its
// length.
func PutEthernet(b []byte, dst, src MAC, etherType uint16) (int, error) {
	if len(b) < EthernetHeaderLen {
		return 0, errBuf("ethernet", len(b), EthernetHeaderLen)
	}
	putEthernet(b, dst, src, etherType)
	return EthernetHeaderLen, nil
}

func putEthernet(b []byte, dst, src MAC, etherType uint16) {
	_ = b[13]
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
}

// PutEthernetVLAN writes an 802.1Q-tagged header at the start of b and
// returns its length. vid must be below 4095 and pcp below 8.
func PutEthernetVLAN(b []byte, dst, src MAC, vid uint16, pcp uint8, etherType uint16) (int, error) {
	if len(b) < EthernetHeaderLen+VLANTagLen {
		return 0, errBuf("ethernet", len(b), EthernetHeaderLen+VLANTagLen)
	}
	if vid >= 0x0fff || pcp > 7 {
		return 0, fmt.Errorf("ethernet: vlan %d pcp %d out of range", vid, pcp)
	}
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], EtherTypeVLAN)
	binary.BigEndian.PutUint16(b[14:16], uint16(pcp)<<13|vid)
	binary.BigEndian.PutUint16(b[16:18], etherType)
	return EthernetHeaderLen + VLANTagLen, nil
}
