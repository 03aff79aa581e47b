// Package frame is the packet buffer every part of the vRouter's data path
// shares: ports read into frames, the forwarder rewrites and encapsulates
// them in place, tunnels and ports write them out. A frame carries the
// offload metadata of a TAP's virtio-net header (GSO super-frames, partial
// checksums), so that a 64 KiB TCP segment can cross the vRouter as one
// unit and be cut to size only where it must be.
//
// Ownership: a Frame and its Buf belong to the loop that allocated them
// (a port's or a tunnel's receive loop, from a Pool). Read and Write calls
// borrow the frames for the duration of the call and keep no reference to
// them afterwards. Nothing on the fast path allocates: frames are reused.
// A frame to write may also point at bytes it does not own (Frags, the
// payloads of a GRO train still in the receive buffers): the writer
// gathers them, so that a merged super-frame is copied only by the kernel.
package frame

// Headroom is the space kept free in front of a received frame's data, so
// that outer headers can be pushed without a copy: the largest tunnel header
// the vRouter writes itself (VXLAN 8 + inner Ethernet 14, or GRE 4 + MPLS 4;
// the kernel writes the outer IP and UDP headers) plus a virtio-net header
// (12), rounded up generously for an outer IPv6 header if ever needed.
const Headroom = 128

// MaxLen is the largest frame data: a GSO super-frame of 64 KiB plus its
// Ethernet header.
const MaxLen = 65535 + 14 + 4

// BufSize is the size of every frame buffer: headroom, the largest frame,
// and room for the tunnel header when a super-frame is encapsulated whole.
const BufSize = Headroom + MaxLen + 64

// GSOType is the kind of a GSO super-frame (virtio-net's gso_type).
type GSOType uint8

const (
	GSONone  GSOType = iota // one ordinary frame
	GSOTCPv4                // TCP over IPv4, cut into GSOSize-byte segments
	GSOTCPv6                // TCP over IPv6
	GSOUDPL4                // UDP (USO), cut into GSOSize-byte datagrams
)

func (g GSOType) String() string {
	switch g {
	case GSONone:
		return "none"
	case GSOTCPv4:
		return "tcpv4"
	case GSOTCPv6:
		return "tcpv6"
	case GSOUDPL4:
		return "udp"
	}
	return "gso?"
}

// Offload is what the kernel said about (on read) or is asked to do with
// (on write) a frame, as in struct virtio_net_hdr. All offsets count from
// the start of the frame data (the Ethernet header).
type Offload struct {
	// GSO, GSOSize: a super-frame whose transport payload is to be cut into
	// GSOSize-byte segments (the MSS for TCP). HdrLen is the length of all
	// headers up to and including the transport header.
	GSO     GSOType
	GSOSize uint16
	HdrLen  uint16

	// NeedsCsum: the transport checksum is not computed yet. The field at
	// CsumStart+CsumOffset holds the pseudo-header sum; the checksum covers
	// everything from CsumStart to the end (VIRTIO_NET_HDR_F_NEEDS_CSUM).
	NeedsCsum  bool
	CsumStart  uint16
	CsumOffset uint16

	// CsumValid: the transport checksum was verified already
	// (VIRTIO_NET_HDR_F_DATA_VALID); on write it spares the kernel doing it.
	CsumValid bool
}

// Frame is one packet buffer.
type Frame struct {
	// Buf is the whole buffer (BufSize bytes for frames from a Pool). The
	// data is Buf[Off : Off+Len]; Buf[:Off] is headroom.
	Buf []byte
	Off int
	Len int

	Offload

	// Port is where the frame came from or goes to, as the forwarder
	// tracks it (a vRouter port ID); Read leaves it alone.
	Port uint32

	// Frags, on a frame to be written to a port, is more of the frame after
	// Data(), left where it is (at most MaxFrags slices): Write gathers
	// them (writev, an iovec each) instead of the frame being copied whole
	// into Buf. The merging of a GRO train into a super-frame points them
	// at the segments' payloads in the receive buffers. Len does not count
	// them (FullLen does); Read never sets them, Reset empties them, and
	// the bytes they point at belong to whoever filled them, unchanged
	// until the Write returns.
	Frags [][]byte
}

// MaxFrags bounds Frame.Frags, so that a writer sizes its iovecs once.
const MaxFrags = 64

// FullLen is the frame's length: Len and the Frags.
func (f *Frame) FullLen() int {
	n := f.Len
	for _, b := range f.Frags {
		n += len(b)
	}
	return n
}

// Data returns the frame's bytes.
func (f *Frame) Data() []byte { return f.Buf[f.Off : f.Off+f.Len] }

// Reset makes the frame empty with the standard headroom and no offload.
func (f *Frame) Reset() {
	f.Off, f.Len = Headroom, 0
	f.Offload = Offload{}
	if len(f.Frags) > 0 {
		clear(f.Frags) // keep no reference to what they pointed at
		f.Frags = f.Frags[:0]
	}
}

// SetData makes the frame's data Buf[off:off+n].
func (f *Frame) SetData(off, n int) { f.Off, f.Len = off, n }

// Push grows the data by n bytes at the front (into the headroom) and
// returns the new first n bytes; false when the headroom is too small.
func (f *Frame) Push(n int) ([]byte, bool) {
	if n > f.Off {
		return nil, false
	}
	f.Off -= n
	f.Len += n
	return f.Buf[f.Off : f.Off+n], true
}

// Pull drops n bytes from the front of the data; false when the frame is
// shorter than n.
func (f *Frame) Pull(n int) bool {
	if n > f.Len {
		return false
	}
	f.Off += n
	f.Len -= n
	return true
}

// New returns a frame with a fresh BufSize buffer, reset.
func New() *Frame {
	f := &Frame{Buf: make([]byte, BufSize)}
	f.Reset()
	return f
}

// Batch returns n fresh frames, for a receive loop that owns them.
func Batch(n int) []*Frame {
	fs := make([]*Frame, n)
	for i := range fs {
		fs[i] = New()
	}
	return fs
}
