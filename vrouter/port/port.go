// Package port holds the vRouter's workload attachments: a TAP device the
// vRouter creates and moves into a workload's network namespace, or an
// AF_PACKET socket on an existing netdev (a libvirt tap, a physical NIC for
// a bare-metal host). Both carry Ethernet frames with virtio-net offload
// metadata, so GSO super-frames and partial checksums cross the vRouter
// without being cut up (see package frame).
package port

import (
	"errors"

	"github.com/weftnet/weft/vrouter/frame"
)

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("port closed")

// Port is one attachment's frame I/O. It is batch-oriented, in the manner
// of wireguard-go's tun.Device:
//
//   - Read blocks until at least one frame arrived, then fills frames[0:n]
//     with up to len(frames) frames without blocking again, and returns n.
//     Each frame's data starts at frame.Headroom (Off), holds one Ethernet
//     frame (Len bytes) and its Offload as the kernel gave it: a GSO
//     super-frame of up to 64 KiB, a partial checksum. The frames and their
//     buffers belong to the caller; Read writes into them and keeps nothing.
//   - Write sends frames[i].Data(), then its Frags gathered from where they
//     are, with frames[i].Offload (a GSO super-frame is cut by the kernel),
//     in order, and returns how many were sent. It may be called from
//     several goroutines at once. A frame the kernel refuses (malformed
//     offload, too long) is dropped and counted, not an error; the error is
//     for a port that is gone.
//   - BatchSize is a good len(frames) for Read.
//   - After Close, Read and Write return ErrClosed.
type Port interface {
	Name() string // the host-side interface name
	Read(frames []*frame.Frame) (int, error)
	Write(frames []*frame.Frame) (int, error)
	BatchSize() int
	Close() error
}

// MTUSetter is a Port whose endpoint-side device the vRouter configures
// (a TAP it created), so that the device's MTU can follow the underlay's.
// SetMTU sets the device's MTU and, when gsoMaxSegs is not 0, its
// gso_max_segs (see TAPConfig.GSOMaxSegs).
type MTUSetter interface {
	SetMTU(mtu, gsoMaxSegs int) error
}
