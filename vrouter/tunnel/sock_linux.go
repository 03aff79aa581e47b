package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
)

// Socket sizing. The buffers are forced past net.core.[rw]mem_max when we
// may (CAP_NET_ADMIN): a forwarding engine's receive loop stalls for a GC
// or a slow batch, and a default 208 KiB buffer holds only a few hundred
// small datagrams.
const (
	rcvBufBytes = 4 << 20
	sndBufBytes = 2 << 20

	// rxCtrlSize is the control buffer per received message: UDP_GRO and
	// SO_RXQ_OVFL take CmsgSpace(4) each (24 bytes on 64-bit), with room
	// to spare so that neither is cut off (MSG_CTRUNC).
	rxCtrlSize = 64

	// gsoMaxSegs is UDP_MAX_SEGMENTS of the oldest kernels with UDP GSO
	// (64; Linux 6.x allows 128). Write cuts larger messages into several
	// GSO sends.
	gsoMaxSegs = 64
	// gsoMaxBytes is the largest UDP payload of one GSO send over IPv6
	// (65535 - 40 - 8); IPv4 allows 20 bytes more, this fits both.
	gsoMaxBytes = 65535 - 40 - 8
)

// sizeofCmsghdr and cmsgAlign follow the kernel's struct cmsghdr and
// CMSG_ALIGN: the length field is a size_t, data aligned to it.
const (
	sizeofCmsghdr = unix.SizeofCmsghdr
	cmsgAlign     = int(unsafe.Sizeof(uintptr(0)))
)

// sock is one non-blocking socket in Go's poller: RawConn.Read and Write
// park the goroutine on EAGAIN, and closing the file wakes them, which is
// how Close unblocks a Read.
type sock struct {
	f  *os.File
	rc syscall.RawConn
}

func newSock(fd int, name string) (*sock, error) {
	f := os.NewFile(uintptr(fd), name)
	if f == nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fd %d is not valid", fd)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &sock{f: f, rc: rc}, nil
}

// ---- receive ----

// rxBatch is the scratch of one recvmmsg: the kernel's view of msgs. It
// belongs to a Conn's Read (under its mutex); fn is built once so that
// RawConn.Read gets a func without allocating a closure per call.
type rxBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // ctrlSize bytes per entry
	cs    int
	n     int // entries offered to the kernel
	got   int // entries filled
	errno unix.Errno
	fn    func(uintptr) bool
}

func newRxBatch(n, ctrlSize int) *rxBatch {
	r := &rxBatch{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		ctrl:  alignedBytes(n * ctrlSize),
		cs:    ctrlSize,
	}
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		if ctrlSize > 0 {
			h.Control = &r.ctrl[i*ctrlSize]
		}
	}
	r.fn = r.recv
	return r
}

// prepare points the entries at msgs' frames, the data to land at Buf[at:].
func (r *rxBatch) prepare(msgs []Msg, at int) error {
	n := min(len(msgs), len(r.hdrs))
	for i := range n {
		f := msgs[i].F
		if f == nil {
			return fmt.Errorf("msgs[%d]: no frame", i)
		}
		if len(f.Buf) <= frame.Headroom {
			return fmt.Errorf("msgs[%d]: frame buffer of %d bytes, not longer than the %d-byte headroom", i, len(f.Buf), frame.Headroom)
		}
		r.iovs[i].Base = &f.Buf[at]
		r.iovs[i].SetLen(len(f.Buf) - at)
		h := &r.hdrs[i]
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.SetControllen(r.cs)
		h.Hdr.Flags = 0
		h.Len = 0
	}
	r.n, r.got = n, 0
	return nil
}

// release drops the references to the caller's frames (the frame package
// promises that no call keeps one).
func (r *rxBatch) release() {
	for i := range r.n {
		r.iovs[i].Base = nil
	}
}

// ctrlOf is entry i's control data as the kernel filled it.
func (r *rxBatch) ctrlOf(i int) []byte {
	if r.cs == 0 {
		return nil
	}
	n := min(int(r.hdrs[i].Hdr.Controllen), r.cs)
	return r.ctrl[i*r.cs : i*r.cs+n]
}

func (r *rxBatch) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.n), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // park in the poller until readable
		case 0:
			r.got, r.errno = int(n), 0
		default:
			r.got, r.errno = 0, e
		}
		return true
	}
}

// readSock blocks until r holds at least one datagram. A receive error
// that is about a peer (an ICMP error the kernel queued on the socket) is
// counted and skipped; only a broken socket is returned.
func readSock(s *sock, r *rxBatch, closed *atomic.Bool, st *counters, what string) error {
	for {
		if err := s.rc.Read(r.fn); err != nil {
			if closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		switch {
		case r.errno == 0 && r.got > 0:
			return nil
		case r.errno == 0:
		case recvDead(r.errno):
			if closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("%s: recvmmsg: %w", what, r.errno)
		default:
			st.drop(dropRecvError)
		}
	}
}

func recvDead(e unix.Errno) bool {
	switch e {
	case unix.EBADF, unix.ENOTSOCK, unix.EFAULT, unix.EINVAL:
		return true
	}
	return false
}

// parseCmsgs walks a received control buffer for the UDP_GRO segment size
// (0 when the datagram was not coalesced) and the SO_RXQ_OVFL drop count.
// It never reads past b, whatever the kernel (or a fuzzer) put there.
func parseCmsgs(b []byte) (gro int, drops uint64, hasDrops bool) {
	for len(b) >= sizeofCmsghdr {
		var l int
		var level, typ int32
		if sizeofCmsghdr == 16 {
			l64 := binary.NativeEndian.Uint64(b[0:8])
			if l64 > uint64(len(b)) {
				return
			}
			l = int(l64)
			level, typ = int32(binary.NativeEndian.Uint32(b[8:12])), int32(binary.NativeEndian.Uint32(b[12:16]))
		} else {
			l = int(binary.NativeEndian.Uint32(b[0:4]))
			level, typ = int32(binary.NativeEndian.Uint32(b[4:8])), int32(binary.NativeEndian.Uint32(b[8:12]))
		}
		if l < sizeofCmsghdr || l > len(b) {
			return
		}
		data := b[sizeofCmsghdr:l]
		switch {
		case level == unix.SOL_UDP && typ == unix.UDP_GRO && len(data) >= 4:
			gro = int(int32(binary.NativeEndian.Uint32(data)))
			if gro < 0 {
				gro = 0
			}
		case level == unix.SOL_UDP && typ == unix.UDP_GRO && len(data) >= 2:
			gro = int(binary.NativeEndian.Uint16(data))
		case level == unix.SOL_SOCKET && typ == unix.SO_RXQ_OVFL && len(data) >= 4:
			drops, hasDrops = uint64(binary.NativeEndian.Uint32(data)), true
		}
		next := (l + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if next >= len(b) {
			return
		}
		b = b[next:]
	}
	return
}

// ---- addresses ----

// putSockaddr writes a's sockaddr for a socket of family into sa and
// returns its length, 0 when the socket cannot send there. A dual-stack
// AF_INET6 socket (v6only false) reaches IPv4 peers by their v4-mapped
// address. Zones are ignored: the socket's bound device decides.
func putSockaddr(sa *unix.RawSockaddrInet6, family int, v6only bool, a netip.Addr, port uint16) uint32 {
	if !a.IsValid() {
		return 0
	}
	a = a.Unmap()
	switch family {
	case unix.AF_INET:
		if !a.Is4() {
			return 0
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		putPort(&s4.Port, port)
		return unix.SizeofSockaddrInet4
	case unix.AF_INET6:
		if a.Is4() && v6only {
			return 0
		}
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		putPort(&sa.Port, port)
		return unix.SizeofSockaddrInet6
	}
	return 0
}

// putPort stores port in network byte order, as sockaddr wants it.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// sockaddrAddr is the address of a sockaddr the kernel filled in (n bytes
// of it), IPv4-mapped addresses unmapped.
func sockaddrAddr(sa *unix.RawSockaddrInet6, n uint32) (netip.Addr, bool) {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.Addr{}, false
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(s4.Addr), true
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(sa.Addr).Unmap(), true
	}
	return netip.Addr{}, false
}

func bindSockaddr(ap netip.AddrPort, family int) (unix.Sockaddr, error) {
	a := ap.Addr()
	switch family {
	case unix.AF_INET:
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	default:
		sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			ifi, err := interfaceIndex(z)
			if err != nil {
				return nil, err
			}
			sa.ZoneId = ifi
		}
		return sa, nil
	}
}

// familyOf is the socket family for a local address: IPv4 (mapped or not)
// or IPv6, and whether an IPv6 socket is to be IPv6-only: all but [::].
func familyOf(a netip.Addr) (family int, v6only bool) {
	if a.Unmap().Is4() {
		return unix.AF_INET, false
	}
	return unix.AF_INET6, !a.IsUnspecified()
}

func localAddrPort(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("getsockname: unexpected %T", sa)
}

// ---- socket options ----

// setBuf sets a buffer size, past the sysctl limit when privileged.
func setBuf(fd, force, plain, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}

// setFragPolicy sets the outer-fragmentation policy of a sending socket.
//
// IPv4: IP_PMTUDISC_OMIT. The vRouter sends ICMP "fragmentation needed"
// itself for inner DF packets that do not fit the overlay MTU; an inner
// packet without DF that does not fit is the fabric's to fragment, so the
// outer datagram goes without DF and the kernel fragments it at the
// interface MTU instead of refusing it. OMIT also ignores learned (and
// forgeable) path MTUs, so the fragmentation point and the GSO size limit
// are the interface MTU, predictably. Kernels before 3.16 lack OMIT and get
// IP_PMTUDISC_DONT, which differs only in honouring learned path MTUs.
//
// IPv6: IPV6_PMTUDISC_WANT, the kernel's default made explicit. Routers do
// not fragment IPv6, so the source must, at the path MTU that Packet Too
// Big messages teach; refusing would black-hole non-DF inner traffic. A
// forged PTB can at worst make us fragment at 1280.
func setFragPolicy(fd, family int, v6only bool) error {
	if family == unix.AF_INET || !v6only {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_OMIT); err != nil {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
				return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
			}
		}
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_WANT); err != nil {
			return fmt.Errorf("IPV6_MTU_DISCOVER: %w", err)
		}
	}
	return nil
}

// dropAll attaches a socket filter that accepts nothing: a send-only
// socket bound to a source port would otherwise queue whatever anyone
// sends to that port until its buffer fills, unread.
func dropAll(fd int) error {
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	return nil
}

// ---- send ----

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

// alignedBytes returns n zero bytes aligned for a cmsghdr.
func alignedBytes(n int) []byte {
	if n == 0 {
		return nil
	}
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// closeAll closes socks, returning the first error.
func closeAll(socks ...*sock) error {
	var errs []error
	for _, s := range socks {
		if s != nil {
			if err := s.f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
