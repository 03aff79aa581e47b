package port

import (
	"encoding/binary"
	"errors"

	"github.com/weftnet/weft/vrouter/frame"
)

// The virtio-net header (struct virtio_net_hdr_mrg_rxbuf, virtio 1.x
// §5.1.6) in front of every frame a TAP or a PACKET_VNET_HDR socket
// carries. Fields are little-endian: the TAP is put in little-endian mode
// (TUNSETVNETLE) and AF_PACKET uses the host's order, which is little on
// every platform Weft builds for.
//
//	0 flags  1 gso_type  2 hdr_len  4 gso_size  6 csum_start  8 csum_offset  10 num_buffers
//
// We always use the 12-byte form: it is what frame.Headroom budgets, what
// virtio 1.x devices and vhost backends use (VIRTIO_F_VERSION_1 makes
// num_buffers unconditional), so a later vhost-user or AF_XDP port shares
// the layout; the kernel ignores num_buffers on write and zeroes it on read.
const (
	vnetHdrLen       = 12
	vnetHdrLenLegacy = 10 // PACKET_VNET_HDR on kernels before 6.7
)

// virtio_net_hdr flags and gso types.
const (
	vnetFlagNeedsCsum = 1
	vnetFlagDataValid = 2

	vnetGSONone  = 0
	vnetGSOTCPv4 = 1
	vnetGSOUDP   = 3 // UFO: IP fragmentation; never enabled, refused on read
	vnetGSOTCPv6 = 4
	vnetGSOUDPL4 = 5
	vnetGSOECN   = 0x80
)

// Offsets in the Ethernet frame used to derive the ECN bit and HdrLen.
const (
	tcpFlagsOff = 13 // from the TCP header
	tcpFlagCWR  = 0x80
	tcpMinLen   = 20
	udpLen      = 8
)

// Why a frame's offload could not be translated; each maps to a
// DropReason. They are values, so returning them allocates nothing.
var (
	errGSOType   = errors.New("unknown gso type")
	errGSOSize   = errors.New("gso without gso size")
	errGSOCsum   = errors.New("gso without partial checksum")
	errCsumRange = errors.New("checksum start/offset beyond the frame")
	errHdrLen    = errors.New("header length beyond the frame")
	errL4Header  = errors.New("transport header beyond the frame")
)

// decodeVnet reads the virtio-net header h (at least 10 bytes) of the
// Ethernet frame data into o, exactly:
//
//   - flags: NEEDS_CSUM gives NeedsCsum, CsumStart, CsumOffset (else they
//     are zero); DATA_VALID gives CsumValid. Other bits (RSC) are ignored.
//   - gso_type TCPV4, TCPV6, UDP_L4 give GSOTCPv4/GSOTCPv6/GSOUDPL4 and
//     GSOSize; anything else (UFO, unknown) is an error.
//   - the ECN bit is dropped: Linux sets it exactly when the super-frame's
//     TCP header has CWR set (tcp_gro_complete, tcp_ecn_send), so it is
//     in the frame itself and encodeVnet derives it back from there.
//   - hdr_len is not taken from the kernel: for the device-to-driver
//     direction virtio makes it a hint, and kernels have filled it with
//     skb_headlen (the linear part, not the headers). HdrLen is computed
//     from the frame as Offload documents it, CsumStart plus the transport
//     header, so it means the same on every kernel (6.18 gives exactly
//     that); 0 for a frame without GSO.
//
// A GSO frame must carry a partial checksum (the virtio spec requires it
// and Linux always sets it); every offset is checked against data, so the
// forwarder can trust the Offload it gets.
func decodeVnet(h, data []byte, o *frame.Offload) error {
	_ = h[9]
	flags, gt := h[0], h[1]
	*o = frame.Offload{}
	if flags&vnetFlagDataValid != 0 {
		o.CsumValid = true
	}
	if flags&vnetFlagNeedsCsum != 0 {
		o.NeedsCsum = true
		o.CsumStart = binary.LittleEndian.Uint16(h[6:8])
		o.CsumOffset = binary.LittleEndian.Uint16(h[8:10])
		if int(o.CsumStart)+int(o.CsumOffset)+2 > len(data) {
			return errCsumRange
		}
	}
	switch gt &^ vnetGSOECN {
	case vnetGSONone:
		if gt != vnetGSONone {
			return errGSOType // ECN without a GSO type
		}
		return nil
	case vnetGSOTCPv4:
		o.GSO = frame.GSOTCPv4
	case vnetGSOTCPv6:
		o.GSO = frame.GSOTCPv6
	case vnetGSOUDPL4:
		if gt&vnetGSOECN != 0 {
			return errGSOType
		}
		o.GSO = frame.GSOUDPL4
	default:
		return errGSOType
	}
	o.GSOSize = binary.LittleEndian.Uint16(h[4:6])
	if o.GSOSize == 0 {
		return errGSOSize
	}
	if !o.NeedsCsum {
		return errGSOCsum
	}
	hl, err := l4HeaderEnd(o.GSO, o.CsumStart, data)
	if err != nil {
		return err
	}
	o.HdrLen = hl
	return nil
}

// l4HeaderEnd is the offset just past the transport header that starts at
// start: the TCP data offset, or the 8-byte UDP header.
func l4HeaderEnd(g frame.GSOType, start uint16, data []byte) (uint16, error) {
	s := int(start)
	n := udpLen
	if g != frame.GSOUDPL4 {
		if s+tcpMinLen > len(data) {
			return 0, errL4Header
		}
		n = int(data[s+12]>>4) * 4
		if n < tcpMinLen {
			return 0, errL4Header
		}
	}
	if s+n > len(data) {
		return 0, errL4Header
	}
	return uint16(s + n), nil
}

// checkOffload verifies that o can be encoded for data and is coherent
// enough that no kernel should see it: the virtio spec's rules for what a
// driver sends (GSO needs a partial checksum and a segment size) and the
// bounds. What is left (csum_offset of the wrong protocol, a gso type
// that does not match the frame's EtherType) the kernel refuses with
// EINVAL, and the port counts that as DropTxRefused.
func checkOffload(o *frame.Offload, n int) error {
	if int(o.HdrLen) > n {
		return errHdrLen
	}
	if o.NeedsCsum && int(o.CsumStart)+int(o.CsumOffset)+2 > n {
		return errCsumRange
	}
	switch o.GSO {
	case frame.GSONone:
		return nil
	case frame.GSOTCPv4, frame.GSOTCPv6, frame.GSOUDPL4:
	default:
		return errGSOType
	}
	if o.GSOSize == 0 {
		return errGSOSize
	}
	if !o.NeedsCsum {
		return errGSOCsum
	}
	return nil
}

// encodeVnet writes the virtio-net header for o and the frame data into h
// (at least 10 bytes; bytes 10-11, num_buffers, are zeroed when present).
// o must have passed checkOffload for data. The ECN bit is set for a TCP
// super-frame whose header has CWR set (see decodeVnet).
func encodeVnet(h []byte, o *frame.Offload, data []byte) {
	_ = h[9]
	var flags, gt uint8
	var start, off uint16
	if o.NeedsCsum {
		flags |= vnetFlagNeedsCsum
		start, off = o.CsumStart, o.CsumOffset
	}
	if o.CsumValid {
		flags |= vnetFlagDataValid
	}
	switch o.GSO {
	case frame.GSOTCPv4:
		gt = vnetGSOTCPv4
	case frame.GSOTCPv6:
		gt = vnetGSOTCPv6
	case frame.GSOUDPL4:
		gt = vnetGSOUDPL4
	}
	if (gt == vnetGSOTCPv4 || gt == vnetGSOTCPv6) && int(start)+tcpFlagsOff < len(data) &&
		data[int(start)+tcpFlagsOff]&tcpFlagCWR != 0 {
		gt |= vnetGSOECN
	}
	var gsoSize uint16
	if gt != vnetGSONone {
		gsoSize = o.GSOSize
	}
	h[0], h[1] = flags, gt
	binary.LittleEndian.PutUint16(h[2:4], o.HdrLen)
	binary.LittleEndian.PutUint16(h[4:6], gsoSize)
	binary.LittleEndian.PutUint16(h[6:8], start)
	binary.LittleEndian.PutUint16(h[8:10], off)
	if len(h) >= vnetHdrLen {
		h[10], h[11] = 0, 0
	}
}
