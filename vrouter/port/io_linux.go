package port

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// BatchSize is what both kinds of port return from BatchSize: enough frames
// per call to amortise a system call and the forwarder's per-batch work,
// few enough that a receive loop's frames (BatchSize × frame.BufSize, about
// 2 MiB) stay reasonable with hundreds of ports.
const BatchSize = 32

// minReadBuf is the buffer a frame needs for Read: the headroom and the
// largest frame (a 64 KiB GSO super-frame).
const minReadBuf = frame.Headroom + frame.MaxLen

// errConcurrentRead is returned by a Read while another is in progress:
// a port has one receive loop, and Read keeps its batch state in the port
// so that it allocates nothing.
var errConcurrentRead = errors.New("concurrent Read on one port")

// checkReadFrames verifies that every frame can take any frame the kernel
// may deliver, before the first system call, so that nothing is consumed
// from the kernel only to be lost.
func checkReadFrames(frames []*frame.Frame) error {
	for i, f := range frames {
		if f == nil {
			return fmt.Errorf("frames[%d]: nil", i)
		}
		if len(f.Buf) < minReadBuf {
			return fmt.Errorf("frames[%d]: buffer of %d bytes, want at least %d", i, len(f.Buf), minReadBuf)
		}
	}
	return nil
}

// txData returns the frame's data if Off and Len are inside Buf and the
// length is that of an Ethernet frame.
func txData(f *frame.Frame) ([]byte, bool) {
	if f == nil || f.Off < 0 || f.Len < packet.EthernetHeaderLen || f.Len > frame.MaxLen || f.Off > len(f.Buf)-f.Len {
		return nil, false
	}
	return f.Buf[f.Off : f.Off+f.Len], true
}

// txFullLen is the length of a frame with Frags, -1 when they are more than
// frame.MaxFrags or the whole is longer than a frame may be.
func txFullLen(f *frame.Frame) int {
	if len(f.Frags) > frame.MaxFrags {
		return -1
	}
	n := f.FullLen()
	if n > frame.MaxLen {
		return -1
	}
	return n
}

// txErr sorts a write's errno: a reason to drop this one frame and go on,
// or (fatal) a port that is gone.
func txErr(err error) (r DropReason, fatal bool) {
	switch err {
	case unix.EINVAL, unix.EFAULT, unix.EPROTO, unix.EOPNOTSUPP:
		return DropTxRefused, false
	case unix.EMSGSIZE:
		return DropTxTooBig, false
	case unix.ENOBUFS, unix.ENOMEM:
		return DropTxNoBuffer, false
	case unix.ENETDOWN, unix.EIO:
		return DropTxLinkDown, false
	case unix.EBADF, unix.EBADFD, unix.ENXIO, unix.ENODEV:
		return 0, true
	}
	// Something we do not know of: drop the frame rather than stop the
	// port for good; the counter shows it.
	return DropTxRefused, false
}
