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
