package port

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/mtu"
	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// TAP is a TAP device created by the vRouter, possibly living in another
// network namespace, read and written through its file descriptor, which
// stays in the vRouter's namespace. It implements Port.
//
// Every frame carries a 12-byte virtio-net header, kept in the frame's
// headroom: Read puts the Ethernet frame at frame.Headroom with the header
// in front of it, Write encodes the header into Buf[Off-12:Off] and sends
// header and frame with one write(2), without a copy.
type TAP struct {
	name     string
	mac      packet.MAC
	offloads int
	file     *os.File
	rc       syscall.RawConn
	closed   atomic.Bool
	ctr      counters
	kdrops   atomic.Uint64 // last tx_dropped seen on the netdev

	// Read's state: one reader at a time, so that the callback given to
	// the poller is made once and Read allocates nothing.
	reading atomic.Bool
	rframes []*frame.Frame
	rn      int
	rerr    error
	rcount  batchCount
	readFn  func(fd uintptr) bool

	// Write may be called from several goroutines: each call takes its
	// state (and a callback bound to it) from the pool.
	txPool sync.Pool
}

var _ Port = (*TAP)(nil)

// Name is the host-side name given at creation.
func (t *TAP) Name() string { return t.name }

// MAC is the endpoint's MAC actually set on the device.
func (t *TAP) MAC() packet.MAC { return t.mac }

// USO reports whether the kernel took UDP segmentation offload, so that
// the TAP may deliver (and accepts) GSOUDPL4 super-frames.
func (t *TAP) USO() bool { return t.offloads&unix.TUN_F_USO4 != 0 }

// BatchSize is a good len(frames) for Read.
func (t *TAP) BatchSize() int { return BatchSize }

// Read implements Port.Read, one read(2) per frame: the virtio-net header
// lands in Buf[Headroom-12:Headroom], the frame at Headroom. Each frame's
// Buf must hold at least frame.Headroom+frame.MaxLen bytes (frame.New's
// do). Read is for one receive loop: a concurrent second Read returns an
// error.
func (t *TAP) Read(frames []*frame.Frame) (int, error) {
	if t.closed.Load() {
		return 0, ErrClosed
	}
	if len(frames) == 0 {
		return 0, nil
	}
	if err := checkReadFrames(frames); err != nil {
		return 0, fmt.Errorf("tap %s: read: %w", t.name, err)
	}
	if !t.reading.CompareAndSwap(false, true) {
		return 0, fmt.Errorf("tap %s: %w", t.name, errConcurrentRead)
	}
	t.rframes, t.rn, t.rerr, t.rcount = frames, 0, nil, batchCount{}
	err := t.rc.Read(t.readFn)
	n, rerr := t.rn, t.rerr
	t.ctr.addRx(&t.rcount)
	t.rframes = nil // keep no reference to the caller's frames
	t.reading.Store(false)
	if n > 0 {
		return n, nil
	}
	if t.closed.Load() {
		return 0, ErrClosed
	}
	if err == nil {
		err = rerr
	}
	return 0, fmt.Errorf("tap %s: read: %w", t.name, err)
}

// readBatch is the poller callback: read frames until the batch is full
// or the device has nothing more; false (wait for readiness) only while
// nothing was read.
func (t *TAP) readBatch(fd uintptr) bool {
	for t.rn < len(t.rframes) {
		f := t.rframes[t.rn]
		b := f.Buf[frame.Headroom-vnetHdrLen:]
		n, err := unix.Read(int(fd), b)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return t.rn > 0
		default:
			t.rerr = err
			return true
		}
		if n > len(b) {
			// tun returns the frame's length even when it did not fit.
			t.rcount.drop(DropRxTruncated)
			continue
		}
		if n < vnetHdrLen+packet.EthernetHeaderLen {
			t.rcount.drop(DropRxTruncated)
			continue
		}
		data := b[vnetHdrLen:n]
		if decodeVnet(b[:vnetHdrLen], data, &f.Offload) != nil {
			t.rcount.drop(DropRxBadOffload)
			continue
		}
		f.Off, f.Len = frame.Headroom, len(data)
		t.rcount.frame(len(data), f.GSO != frame.GSONone)
		t.rn++
	}
	return true
}

// tapTx is one Write call's state.
type tapTx struct {
	t      *TAP
	frames []*frame.Frame
	i      int
	err    error
	bc     batchCount
	hdr    [vnetHdrLen]byte
	iov    [2 + frame.MaxFrags]unix.Iovec // header, data, the frame's Frags
	fn     func(fd uintptr) bool
}

// Write implements Port.Write: one write(2) per frame, the virtio-net
// header written into the frame's headroom (Buf[Off-12:Off], which Write
// may overwrite). A frame with less headroom goes out with writev from a
// header of Write's own. It returns len(frames) unless the port is gone
// (then the number handled before); frames dropped on the way are counted
// in Stats. Concurrent calls are safe; Go's poller serialises them on the
// descriptor, one batch at a time.
func (t *TAP) Write(frames []*frame.Frame) (int, error) {
	if t.closed.Load() {
		return 0, ErrClosed
	}
	if len(frames) == 0 {
		return 0, nil
	}
	s := t.txPool.Get().(*tapTx)
	s.frames, s.i, s.err, s.bc = frames, 0, nil, batchCount{}
	err := t.rc.Write(s.fn)
	n, werr := s.i, s.err
	t.ctr.addTx(&s.bc)
	s.frames = nil
	clear(s.iov[:]) // keep no reference to the caller's frames
	t.txPool.Put(s)
	if err == nil && werr == nil {
		return n, nil
	}
	if t.closed.Load() {
		return n, ErrClosed
	}
	if err == nil {
		err = werr
	}
	return n, fmt.Errorf("tap %s: write: %w", t.name, err)
}

func (s *tapTx) run(fd uintptr) bool {
	for s.i < len(s.frames) {
		f := s.frames[s.i]
		data, ok := txData(f)
		if !ok {
			s.bc.drop(DropTxBadFrame)
			s.i++
			continue
		}
		n := len(data)
		if len(f.Frags) > 0 {
			n = txFullLen(f)
		}
		if n < 0 {
			s.bc.drop(DropTxBadFrame)
			s.i++
			continue
		}
		if checkOffload(&f.Offload, n) != nil {
			s.bc.drop(DropTxBadOffload)
			s.i++
			continue
		}
		var err error
		if len(f.Frags) > 0 {
			err = s.writeGather(fd, f, data)
		} else if f.Off >= vnetHdrLen {
			b := f.Buf[f.Off-vnetHdrLen : f.Off+f.Len]
			encodeVnet(b[:vnetHdrLen], &f.Offload, data)
			_, err = unix.Write(int(fd), b)
		} else {
			encodeVnet(s.hdr[:], &f.Offload, data)
			s.iov[0].Base, s.iov[0].Len = &s.hdr[0], vnetHdrLen
			s.iov[1].Base = &data[0]
			s.iov[1].SetLen(len(data))
			_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.iov[0])), 2)
			if e != 0 {
				err = e
			}
		}
		switch err {
		case nil:
			s.bc.frame(n, f.GSO != frame.GSONone)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r, fatal := txErr(err)
			if fatal {
				s.err = err
				return true
			}
			s.bc.drop(r)
		}
		s.i++
	}
	return true
}

// writeGather writes a frame with Frags in one writev: the virtio-net
// header (in the headroom when there is room), the data, each fragment.
func (s *tapTx) writeGather(fd uintptr, f *frame.Frame, data []byte) error {
	iov := s.iov[:0]
	if f.Off >= vnetHdrLen {
		b := f.Buf[f.Off-vnetHdrLen : f.Off+f.Len]
		encodeVnet(b[:vnetHdrLen], &f.Offload, data)
		iov = append(iov, unix.Iovec{Base: &b[0]})
		iov[0].SetLen(len(b))
	} else {
		encodeVnet(s.hdr[:], &f.Offload, data)
		iov = append(iov, unix.Iovec{Base: &s.hdr[0]}, unix.Iovec{Base: &data[0]})
		iov[0].SetLen(vnetHdrLen)
		iov[1].SetLen(len(data))
	}
	for _, b := range f.Frags {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return e
	}
	return nil
}

// Stats returns the port's counters. The kernel's drops (the device's
// tx_dropped: frames queued for us while we did not read) are fetched
// from the device's namespace, which costs a few system calls: call it
// for metrics, not per packet. If the device cannot be reached the last
// value seen is kept.
func (t *TAP) Stats() Stats {
	if d, err := t.kernelDrops(); err == nil {
		t.kdrops.Store(d)
	}
	s := t.ctr.snapshot()
	s.Drops[DropKernel] += t.kdrops.Load()
	return s
}

// kernelDrops reads tx_dropped of the device wherever it is now.
func (t *TAP) kernelDrops() (uint64, error) {
	var drops uint64
	err := t.inDevice(func(_ *netlink.Handle, l netlink.Link) error {
		if st := l.Attrs().Statistics; st != nil {
			drops = st.TxDropped
		}
		return nil
	})
	return drops, err
}

var _ MTUSetter = (*TAP)(nil)

// SetMTU implements MTUSetter on the device, in whatever namespace it is.
func (t *TAP) SetMTU(n, gsoMaxSegs int) error {
	if n < mtu.LinkMin || n > mtu.Max || gsoMaxSegs < 0 || gsoMaxSegs > 65535 {
		return fmt.Errorf("tap %s: mtu %d / gso_max_segs %d out of range", t.name, n, gsoMaxSegs)
	}
	err := t.inDevice(func(h *netlink.Handle, l netlink.Link) error {
		// A larger MTU with the old segment cap may make a super-frame one
		// UDP GSO send cannot carry, and a smaller cap never harms: the
		// cap goes down before, and up after, the MTU.
		if gsoMaxSegs > 0 && gsoMaxSegs < int(l.Attrs().GSOMaxSegs) {
			if err := h.LinkSetGSOMaxSegs(l, gsoMaxSegs); err != nil {
				return fmt.Errorf("gso_max_segs %d: %w", gsoMaxSegs, err)
			}
		}
		if l.Attrs().MTU != n {
			if err := h.LinkSetMTU(l, n); err != nil {
				return fmt.Errorf("n %d: %w", n, err)
			}
		}
		if gsoMaxSegs > int(l.Attrs().GSOMaxSegs) {
			if err := h.LinkSetGSOMaxSegs(l, gsoMaxSegs); err != nil {
				return fmt.Errorf("gso_max_segs %d: %w", gsoMaxSegs, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	return nil
}

// inDevice runs f with a netlink handle in the device's namespace and the
// device as it is now: the tun descriptor gives its namespace
// (TUNGETDEVNETNS) and current name, wherever it was moved and renamed.
func (t *TAP) inDevice(f func(*netlink.Handle, netlink.Link) error) error {
	nsfd, ifname := -1, ""
	var cerr error
	err := t.rc.Control(func(fd uintptr) {
		nsfd, cerr = unix.IoctlRetInt(int(fd), unix.TUNGETDEVNETNS)
		if cerr != nil {
			return
		}
		ifr, err := unix.NewIfreq("")
		if err != nil {
			cerr = err
			return
		}
		if cerr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr); cerr == nil {
			ifname = ifr.Name()
		}
	})
	if nsfd >= 0 {
		defer unix.Close(nsfd)
	}
	if err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	return nsexec.DoHandle(netns.NsHandle(nsfd), func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		return f(h, l)
	})
}

// Close closes the descriptor, which removes the device wherever it is;
// a Read blocked on it returns ErrClosed. When Close returns the device is
// gone. Later calls return nil.
func (t *TAP) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	// os.File.Close waits for the descriptor's in-flight calls to leave
	// the poller, so the close(2) that unregisters the device has
	// happened when it returns.
	if err := t.file.Close(); err != nil {
		return fmt.Errorf("tap %s: close: %w", t.name, err)
	}
	return nil
}
