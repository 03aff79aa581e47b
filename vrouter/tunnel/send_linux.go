package tunnel

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The send side of a tunnel socket: Msgs batched into one sendmmsg, UDP
// GSO trains, and the per-datagram fallback when the kernel refuses GSO.

// txEntry is what a sendmmsg entry stands for.
type txEntry struct {
	data []byte // the entry's bytes, kept for the GSO fallback
	segs int    // datagrams on the wire
	seg  int    // segment size when gso
	gso  bool
	last bool // the last entry of its Msg
}

// txBatch is the scratch of one Write: sendmmsg entries and, for UDP, the
// grouping of the batch by send socket. Writes may run concurrently, so
// each takes one from its Conn's sync.Pool.
type txBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // txCtrlSize bytes per entry, a UDP_SEGMENT cmsg header in place
	ents  []txEntry
	n     int

	off, sent int // the sendmmsg in progress
	errno     unix.Errno
	fn        func(uintptr) bool

	split *txBatch // per-segment entries for the GSO fallback, made when needed

	// UDP grouping by send socket.
	sockOf []int32
	count  []int32
	next   []int32
	order  []int32
}

var txCtrlSize = unix.CmsgSpace(2)

func newTxBatch(n int) *txBatch {
	w := &txBatch{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		ctrl:  alignedBytes(n * txCtrlSize),
		ents:  make([]txEntry, n),
	}
	for i := range w.hdrs {
		h := &w.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		h.Iov = &w.iovs[i]
		h.SetIovlen(1)
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&w.ctrl[i*txCtrlSize]))
		cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		cm.SetLen(unix.CmsgLen(2))
	}
	w.fn = w.send
	return w
}

func (w *txBatch) full() bool { return w.n == len(w.hdrs) }

func (w *txBatch) add(data []byte, sa *unix.RawSockaddrInet6, salen uint32, seg int, gso, last bool) {
	i := w.n
	w.iovs[i].Base = unsafe.SliceData(data)
	w.iovs[i].SetLen(len(data))
	w.names[i] = *sa
	h := &w.hdrs[i]
	h.Hdr.Namelen = salen
	h.Hdr.Flags = 0
	h.Len = 0
	segs := 1
	if gso {
		c := w.ctrl[i*txCtrlSize : (i+1)*txCtrlSize]
		binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(seg))
		h.Hdr.Control = &c[0]
		h.Hdr.SetControllen(txCtrlSize)
		segs = (len(data) + seg - 1) / seg
	} else {
		h.Hdr.Control = nil
		h.Hdr.SetControllen(0)
	}
	w.ents[i] = txEntry{data: data, segs: segs, seg: seg, gso: gso, last: last}
	w.n++
}

// reset forgets the entries and the frames they pointed at.
func (w *txBatch) reset() {
	for i := range w.n {
		w.iovs[i].Base = nil
		w.ents[i].data = nil
	}
	w.n = 0
}

// testSendmmsg, set only by tests, stands in for the sendmmsg syscall:
// some refusals cannot be provoked on a given kernel (EIO for GSO needs
// IPsec since Linux 6.11), yet their handling must be tested.
var testSendmmsg func(fd uintptr, hs []unix.Mmsghdr) (int, unix.Errno)

func sendmmsg(fd uintptr, hs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

func (w *txBatch) send(fd uintptr) bool {
	for {
		var n int
		var e unix.Errno
		if testSendmmsg != nil {
			n, e = testSendmmsg(fd, w.hdrs[w.off:w.n])
		} else {
			n, e = sendmmsg(fd, w.hdrs[w.off:w.n])
		}
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // park until the socket has room
		case 0:
			w.sent, w.errno = n, 0
		default:
			w.sent, w.errno = 0, e
		}
		return true
	}
}

// What a send error means for the entry and the socket.
const (
	sendDrop  = iota // drop and count the entry, go on
	sendDead         // the socket is gone: return the error
	sendSplit        // GSO refused as such (EIO): send the segments one by one
)

func classifySend(e unix.Errno, gso bool) (dropReason, int) {
	switch e {
	case unix.EMSGSIZE:
		if gso {
			return dropGSOTooBig, sendDrop
		}
		return dropTooBig, sendDrop
	case unix.EINVAL:
		// Kernels before 6.x said EINVAL, not EMSGSIZE, for a GSO segment
		// over the MTU (and for too many segments, which Write prevents).
		if gso {
			return dropGSOTooBig, sendDrop
		}
		return dropOther, sendDrop
	case unix.EIO:
		if gso {
			return dropNone, sendSplit
		}
		return dropOther, sendDrop
	case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENETDOWN, unix.EADDRNOTAVAIL:
		return dropUnreachable, sendDrop
	case unix.ECONNREFUSED:
		return dropRefused, sendDrop
	case unix.ENOBUFS, unix.ENOMEM:
		return dropNoBuffer, sendDrop
	case unix.EPERM, unix.EACCES:
		return dropDenied, sendDrop
	case unix.EAFNOSUPPORT, unix.EDESTADDRREQ:
		return dropInvalid, sendDrop
	case unix.EBADF, unix.ENOTSOCK, unix.EFAULT, unix.EPIPE, unix.ENOTCONN, unix.ESHUTDOWN:
		return dropNone, sendDead
	}
	return dropOther, sendDrop
}

// sender is what UDP and GRE writes share: addressing a Msg, cutting it
// into sendmmsg entries, pushing them and counting.
type sender struct {
	family int
	v6only bool
	port   uint16      // destination port; 0 for raw sockets
	gso    atomic.Bool // UDP GSO in use
	st     *counters
	closed *atomic.Bool
	what   string // "mplsoudp write"
}

// addMsg appends m's entries to w, flushing w through s when it fills, and
// returns how many messages were completed (sent or dropped) meanwhile.
func (c *sender) addMsg(w *txBatch, s *sock, m *Msg) (int, error) {
	f := m.F
	if f == nil || f.Off < 0 || f.Len < 0 || f.Off > len(f.Buf) || f.Len > len(f.Buf)-f.Off {
		c.st.drop(dropInvalid)
		return 1, nil
	}
	var sa unix.RawSockaddrInet6
	salen := putSockaddr(&sa, c.family, c.v6only, m.Addr, c.port)
	if salen == 0 {
		c.st.drop(dropInvalid)
		return 1, nil
	}
	data := f.Buf[f.Off : f.Off+f.Len]
	done := 0
	seg := m.SegSize
	if seg <= 0 || seg >= len(data) {
		if w.full() {
			d, err := c.flush(w, s)
			if done += d; err != nil {
				return done, err
			}
		}
		w.add(data, &sa, salen, 0, false, true)
		return done, nil
	}
	per := 1 // segments per entry
	if c.gso.Load() {
		// At least 1: a segment over gsoMaxBytes goes alone, and the
		// kernel refuses it as too big.
		per = max(1, min(gsoMaxSegs, gsoMaxBytes/seg))
	} else {
		c.st.gsoSplit.Add(1)
	}
	for off := 0; off < len(data); {
		end := min(off+per*seg, len(data))
		if w.full() {
			d, err := c.flush(w, s)
			if done += d; err != nil {
				return done, err
			}
		}
		w.add(data[off:end], &sa, salen, seg, per > 1 && end-off > seg, end == len(data))
		off = end
	}
	return done, nil
}

// flush sends w's entries through s, drops and counts those the kernel
// refuses, and returns the number of messages completed.
func (c *sender) flush(w *txBatch, s *sock) (int, error) {
	var done, dgrams, bytes, gsoSends int
	defer func() {
		c.st.dgramsOut.Add(uint64(dgrams))
		c.st.bytesOut.Add(uint64(bytes))
		if gsoSends > 0 {
			c.st.gsoSends.Add(uint64(gsoSends))
		}
		w.reset()
	}()
	for off := 0; off < w.n; {
		w.off = off
		if err := s.rc.Write(w.fn); err != nil {
			if c.closed.Load() {
				return done, ErrClosed
			}
			return done, fmt.Errorf("%s: %w", c.what, err)
		}
		if w.errno == 0 && w.sent > 0 {
			for i := off; i < off+w.sent; i++ {
				e := &w.ents[i]
				dgrams += e.segs
				bytes += len(e.data)
				if e.gso {
					gsoSends++
				}
				if e.last {
					done++
				}
			}
			off += w.sent
			continue
		}
		e := &w.ents[off]
		reason, action := classifySend(w.errno, e.gso)
		if w.errno == 0 {
			reason, action = dropOther, sendDrop // sendmmsg sent nothing yet said nothing
		}
		switch action {
		case sendDead:
			if c.closed.Load() {
				return done, ErrClosed
			}
			return done, fmt.Errorf("%s: sendmmsg: %w", c.what, w.errno)
		case sendSplit:
			if c.gso.CompareAndSwap(true, false) {
				c.st.gsoFallback.Add(1)
			}
			if _, err := c.sendSegments(w, s, off); err != nil {
				return done, err
			}
		default:
			c.st.drop(reason)
		}
		if e.last {
			done++
		}
		off++
	}
	return done, nil
}

// sendSegments sends the GSO entry i of w as separate datagrams, after the
// kernel refused the offload for its route.
func (c *sender) sendSegments(w *txBatch, s *sock, i int) (int, error) {
	if w.split == nil {
		w.split = newTxBatch(gsoMaxSegs)
	}
	e := &w.ents[i]
	salen := w.hdrs[i].Hdr.Namelen
	for off := 0; off < len(e.data); off += e.seg {
		w.split.add(e.data[off:min(off+e.seg, len(e.data))], &w.names[i], salen, 0, false, false)
	}
	return c.flush(w.split, s)
}
