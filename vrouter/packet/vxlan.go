package packet

import (
	"encoding/binary"
	"fmt"
)

// VXLAN header size and flags (RFC 7348).
const (
	VXLANHeaderLen = 8
	VXLANFlagI     = 0x08 // the VNI is valid
	MaxVNI         = 1<<24 - 1
)

// VXLAN is a view of a VXLAN header and the inner Ethernet frame after it.
type VXLAN struct{ b []byte }

// ParseVXLAN checks the length and the I flag, without which the VNI means
// nothing. Reserved bits are ignored, as RFC 7348 asks of receivers.
func ParseVXLAN(b []byte) (VXLAN, error) {
	if len(b) < VXLANHeaderLen {
		return VXLAN{}, errShort("vxlan", "header", 0, len(b), VXLANHeaderLen)
	}
	if b[0]&VXLANFlagI == 0 {
		return VXLAN{}, errField("vxlan", "flags", 0, int(b[0]), VXLANFlagI, "%#02x lack the I flag %#02x")
	}
	return VXLAN{b: b}, nil
}

// Bytes is the header and inner frame.
func (v VXLAN) Bytes() []byte { return v.b }

// Flags is the flags byte.
func (v VXLAN) Flags() uint8 { return v.b[0] }

// VNI is the 24-bit VXLAN network identifier.
func (v VXLAN) VNI() uint32 { return binary.BigEndian.Uint32(v.b[4:8]) >> 8 }

// Payload is the inner Ethernet frame.
func (v VXLAN) Payload() []byte { return v.b[VXLANHeaderLen:] }

// PutVXLAN writes a header with the I flag and vni at the start of b and
// returns 8.
func PutVXLAN(b []byte, vni uint32) (int, error) {
	if vni > MaxVNI {
		return 0, fmt.Errorf("vxlan: vni %d exceeds 24 bits", vni)
	}
	if len(b) < VXLANHeaderLen {
		return 0, errBuf("vxlan", len(b), VXLANHeaderLen)
	}
	putVXLAN(b, vni)
	return VXLANHeaderLen, nil
}

func putVXLAN(b []byte, vni uint32) {
	binary.BigEndian.PutUint32(b[0:4], VXLANFlagI<<24)
	binary.BigEndian.PutUint32(b[4:8], vni<<8)
}
