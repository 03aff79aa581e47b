package port

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// afpRcvBuf is the receive buffer asked for: room for a few dozen GSO
// super-frames while the receive loop is busy. SO_RCVBUFFORCE passes
// rmem_max when we have CAP_NET_ADMIN; otherwise the kernel's cap holds.
const afpRcvBuf = 4 << 20

// AFPacket is an AF_PACKET socket on an existing netdev (a libvirt tap, a
// physical NIC): it receives every frame the netdev receives, whatever
// its destination MAC, and transmits frames out of it. It implements Port.
//
// With PACKET_VNET_HDR a virtio-net header comes with each frame both
// ways, so GSO super-frames and partial checksums pass whole, as on a TAP
// (12 bytes with PACKET_VNET_HDR_SZ, Linux 6.7+; 10 before). Frames the
// host itself sends out of the netdev are not seen
// (PACKET_IGNORE_OUTGOING). Reads are batched with recvmmsg, writes with
// sendmmsg; both keep the header in the frame's headroom.
//
// The netdev is brought up if it is down and is otherwise left as it is:
// the promiscuous membership is the socket's and ends with it.
//
// Limitation: a VLAN tag the NIC stripped (rx VLAN offload) is not put
// back; the port is meant for untagged attachments.
type AFPacket struct {
	name    string
	ifindex int
	hdrLen  int
	file    *os.File
	rc      syscall.RawConn
	closed  atomic.Bool
	ctr     counters
	kdrops  atomic.Uint64

	// Read's state, for one receive loop (see TAP).
	reading  atomic.Bool
	rframes  []*frame.Frame
	rn       int
	rerr     error
	rcount   batchCount
	down     bool // the link went down: check for the netdev's removal
	deadline bool // a read deadline is set (down was true)
	rmsgs    []mmsghdr
	riovs    []unix.Iovec
	readFn   func(fd uintptr) bool

	txPool sync.Pool
}

var _ Port = (*AFPacket)(nil)

// mmsghdr is struct mmsghdr; the compiler pads it like the C struct.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// OpenAFPacket opens a port on ifname, in the calling thread's namespace.
func OpenAFPacket(ifname string) (*AFPacket, error) {
	if err := checkIfname(ifname); err != nil {
		return nil, fmt.Errorf("afpacket: name: %w", err)
	}
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("afpacket %s: netlink: %w", ifname, err)
	}
	defer nl.Close()
	link, err := nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("afpacket %s: find link: %w", ifname, err)
	}
	ifindex := link.Attrs().Index
	fd, hdrLen, err := openPacketSocket(ifindex)
	if err != nil {
		return nil, fmt.Errorf("afpacket %s: %w", ifname, err)
	}
	file := os.NewFile(uintptr(fd), "afpacket:"+ifname)
	if link.Attrs().Flags&unix.IFF_UP == 0 {
		if err := nl.LinkSetUp(link); err != nil {
			file.Close()
			return nil, fmt.Errorf("afpacket %s: link up: %w", ifname, err)
		}
	}
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("afpacket %s: raw conn: %w", ifname, err)
	}
	p := &AFPacket{name: ifname, ifindex: ifindex, hdrLen: hdrLen, file: file, rc: rc}
	p.readFn = p.readBatch
	p.growRx(BatchSize)
	p.txPool.New = func() any {
		s := &afpTx{p: p}
		s.fn = s.run
		return s
	}
	return p, nil
}

// openPacketSocket returns a non-blocking packet socket bound to ifindex,
// set up before binding so that no frame arrives without its header.
func openPacketSocket(ifindex int) (fd, hdrLen int, err error) {
	// Protocol 0 receives nothing until bind names ETH_P_ALL.
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	hdrLen = vnetHdrLen
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR_SZ, vnetHdrLen); err != nil {
		hdrLen = vnetHdrLenLegacy
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return -1, 0, fmt.Errorf("PACKET_VNET_HDR: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return -1, 0, fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, afpRcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, afpRcvBuf) // best effort
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, 0, fmt.Errorf("bind ifindex %d: %w", ifindex, err)
	}
	// Frames are addressed to the vRouter's gateway MAC, not the
	// netdev's: a NIC filters those out unless promiscuous.
	mreq := &unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq); err != nil {
		return -1, 0, fmt.Errorf("promiscuous membership: %w", err)
	}
	return fd, hdrLen, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// growRx sizes the recvmmsg arrays for n frames; it allocates only when a
// caller asks for a larger batch than ever before.
func (p *AFPacket) growRx(n int) {
	if n <= len(p.rmsgs) {
		return
	}
	p.rmsgs = make([]mmsghdr, n)
	p.riovs = make([]unix.Iovec, n)
	for i := range p.rmsgs {
		p.rmsgs[i].hdr.Iov = &p.riovs[i]
		p.rmsgs[i].hdr.SetIovlen(1)
	}
}

// Name is the netdev's name.
func (p *AFPacket) Name() string { return p.name }

// BatchSize is a good len(frames) for Read.
func (p *AFPacket) BatchSize() int { return BatchSize }

// Read implements Port.Read (one recvmmsg per readiness, up to
// len(frames)). Frame buffers must hold frame.Headroom+frame.MaxLen bytes.
// When the kernel delivers a frame Read must drop (truncated, bad
// offload), the following frames' pointers move down in frames to close
// the gap: frames is permuted, never shortened. One Read at a time.
func (p *AFPacket) Read(frames []*frame.Frame) (int, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	if len(frames) == 0 {
		return 0, nil
	}
	if err := checkReadFrames(frames); err != nil {
		return 0, fmt.Errorf("afpacket %s: read: %w", p.name, err)
	}
	if !p.reading.CompareAndSwap(false, true) {
		return 0, fmt.Errorf("afpacket %s: %w", p.name, errConcurrentRead)
	}
	p.growRx(len(frames))
	p.rframes, p.rn, p.rerr, p.rcount = frames, 0, nil, batchCount{}
	err := p.readWait()
	n, rerr := p.rn, p.rerr
	p.ctr.addRx(&p.rcount)
	p.rframes = nil
	for i := range p.riovs[:len(frames)] {
		p.riovs[i].Base = nil
	}
	p.reading.Store(false)
	if n > 0 {
		return n, nil
	}
	if p.closed.Load() {
		return 0, ErrClosed
	}
	if err == nil {
		err = rerr
	}
	return 0, fmt.Errorf("afpacket %s: read: %w", p.name, err)
}

// downCheck is how often a Read looks whether the netdev still exists
// while its link is down.
const downCheck = time.Second

// readWait runs readBatch in the poller. While the link is down it wakes
// up every downCheck to see whether the netdev was unregistered: the
// kernel reports ENETDOWN when the link goes down, but says nothing more
// when the device then goes away.
func (p *AFPacket) readWait() error {
	for {
		if p.down != p.deadline {
			// Entering or leaving the down state: set or clear the
			// periodic wake-up (only then, it is not free).
			var d time.Time
			if p.down {
				d = time.Now().Add(downCheck)
			}
			p.file.SetReadDeadline(d)
			p.deadline = p.down
		} else if p.down {
			p.file.SetReadDeadline(time.Now().Add(downCheck))
		}
		err := p.rc.Read(p.readFn)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			gone := false
			p.rc.Control(func(fd uintptr) { gone = p.unbound(fd) })
			if gone {
				p.rerr = errNetdevGone
				return nil
			}
		case err == nil && p.rn == 0 && p.rerr == nil:
			// readBatch stopped on ENETDOWN: wait again, with the
			// wake-up set.
		default:
			return err
		}
	}
}

var errNetdevGone = errors.New("netdev is gone")

func (p *AFPacket) readBatch(fd uintptr) bool {
	for p.rn < len(p.rframes) {
		want := len(p.rframes) - p.rn
		off := frame.Headroom - p.hdrLen
		for i := 0; i < want; i++ {
			b := p.rframes[p.rn+i].Buf[off:]
			p.riovs[i].Base = &b[0]
			p.riovs[i].SetLen(len(b))
			p.rmsgs[i].hdr.Flags = 0
			p.rmsgs[i].len = 0
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&p.rmsgs[0])), uintptr(want), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return p.rn > 0
		case unix.ENETDOWN:
			// The link went down (sk_err, reported once). The socket
			// comes back by itself when it is up again, unless the
			// netdev is gone: then its ifindex is -1.
			if p.unbound(fd) {
				p.rerr = errNetdevGone
				return true
			}
			p.down = true
			return true
		default:
			p.rerr = e
			return true
		}
		if r > 0 {
			p.down = false // frames come in, the link is up
		}
		base := p.rn
		for i := 0; i < int(r); i++ {
			f := p.rframes[base+i]
			m := &p.rmsgs[i]
			n := int(m.len)
			if m.hdr.Flags&unix.MSG_TRUNC != 0 || n < p.hdrLen+packet.EthernetHeaderLen {
				p.rcount.drop(DropRxTruncated)
				continue
			}
			b := f.Buf[off : off+n]
			data := b[p.hdrLen:]
			if decodeVnet(b[:p.hdrLen], data, &f.Offload) != nil {
				p.rcount.drop(DropRxBadOffload)
				continue
			}
			f.Off, f.Len = frame.Headroom, len(data)
			p.rcount.frame(len(data), f.GSO != frame.GSONone)
			if dst := p.rn; dst != base+i {
				p.rframes[dst], p.rframes[base+i] = p.rframes[base+i], p.rframes[dst]
			}
			p.rn++
		}
		if int(r) < want {
			break // the queue is empty: do not pay for an EAGAIN
		}
	}
	return true
}

// unbound reports whether the socket lost its netdev (unregistered).
func (p *AFPacket) unbound(fd uintptr) bool {
	sa, err := unix.Getsockname(int(fd))
	if err != nil {
		return true
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	return !ok || ll.Ifindex <= 0
}

// afpIovs is the iovecs of one message: header, data, the frame's Frags.
const afpIovs = 2 + frame.MaxFrags

// afpTx is one Write call's state: a sendmmsg vector and, for frames
// without headroom, their headers.
type afpTx struct {
	p     *AFPacket
	items []*frame.Frame
	i     int // next frame to send
	err   error
	bc    batchCount
	msgs  []mmsghdr
	iovs  []unix.Iovec
	hdrs  [][vnetHdrLen]byte
	fn    func(fd uintptr) bool
}

// Write implements Port.Write with sendmmsg, up to BatchSize frames per
// call. The virtio-net header goes into each frame's headroom
// (Buf[Off-hdrLen:Off]); frames with less headroom take a second iovec.
// It returns len(frames) unless the port is gone; drops are counted.
func (p *AFPacket) Write(frames []*frame.Frame) (int, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	if len(frames) == 0 {
		return 0, nil
	}
	s := p.txPool.Get().(*afpTx)
	s.items, s.i, s.err, s.bc = frames, 0, nil, batchCount{}
	err := p.rc.Write(s.fn)
	n, werr := s.i, s.err
	p.ctr.addTx(&s.bc)
	s.items = nil
	for k := range s.iovs {
		s.iovs[k].Base = nil
	}
	p.txPool.Put(s)
	if err == nil && werr == nil {
		return n, nil
	}
	if p.closed.Load() {
		return n, ErrClosed
	}
	if err == nil {
		err = werr
	}
	return n, fmt.Errorf("afpacket %s: write: %w", p.name, err)
}

// prepare drops (and counts) the invalid frames at s.i, then fills the
// vector with the run of valid frames that follows, up to BatchSize, and
// returns its length: msgs[k] is items[s.i+k]. An invalid frame ends the
// run; the next prepare drops it.
func (s *afpTx) prepare() int {
	if s.msgs == nil {
		s.msgs = make([]mmsghdr, BatchSize)
		s.iovs = make([]unix.Iovec, afpIovs*BatchSize)
		s.hdrs = make([][vnetHdrLen]byte, BatchSize)
	}
	hl := s.p.hdrLen
	m := 0
	for j := s.i; j < len(s.items) && m < len(s.msgs); j++ {
		f := s.items[j]
		data, ok := txData(f)
		reason := DropTxBadFrame
		n := len(data)
		if ok && len(f.Frags) > 0 {
			n = txFullLen(f)
			ok = n >= 0
		}
		if ok {
			if checkOffload(&f.Offload, n) != nil {
				ok, reason = false, DropTxBadOffload
			}
		}
		if !ok {
			if m > 0 {
				break
			}
			s.bc.drop(reason)
			s.i = j + 1
			continue
		}
		iov := s.iovs[afpIovs*m : afpIovs*(m+1)]
		msg := &s.msgs[m].hdr
		msg.Iov = &iov[0]
		k := 0
		if f.Off >= hl {
			b := f.Buf[f.Off-hl : f.Off+f.Len]
			encodeVnet(b[:hl], &f.Offload, data)
			iov[0].Base = &b[0]
			iov[0].SetLen(len(b))
			k = 1
		} else {
			h := s.hdrs[m][:hl]
			encodeVnet(h, &f.Offload, data)
			iov[0].Base = &h[0]
			iov[0].SetLen(hl)
			iov[1].Base = &data[0]
			iov[1].SetLen(len(data))
			k = 2
		}
		for _, b := range f.Frags {
			if len(b) > 0 {
				iov[k].Base = &b[0]
				iov[k].SetLen(len(b))
				k++
			}
		}
		msg.SetIovlen(k)
		m++
	}
	return m
}

func (s *afpTx) run(fd uintptr) bool {
	for s.i < len(s.items) {
		m := s.prepare()
		if m == 0 {
			continue // what was left is dropped; s.i moved past it
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(m), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			for _, f := range s.items[s.i : s.i+int(r)] {
				s.bc.frame(f.FullLen(), f.GSO != frame.GSONone)
			}
			s.i += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// sendmmsg fails only when its first message did (a later
			// failure shortens r and comes back first next time): drop
			// that one and go on.
			reason, fatal := txErr(e)
			if fatal {
				s.err = e
				return true
			}
			s.bc.drop(reason)
			s.i++
		}
	}
	return true
}

// Stats returns the port's counters, with the socket's kernel drops
// (PACKET_STATISTICS, which resets on read, so they are summed here).
func (p *AFPacket) Stats() Stats {
	p.rc.Control(func(fd uintptr) {
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			p.kdrops.Add(uint64(st.Drops))
		}
	})
	s := p.ctr.snapshot()
	s.Drops[DropKernel] += p.kdrops.Load()
	return s
}

// Close closes the socket (its promiscuous membership with it) and makes
// a blocked Read return ErrClosed. Later calls return nil.
func (p *AFPacket) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := p.file.Close(); err != nil {
		return fmt.Errorf("afpacket %s: close: %w", p.name, err)
	}
	return nil
}
