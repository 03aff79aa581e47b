package port

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// TAPConfig is a TAP port the vRouter creates for an endpoint.
type TAPConfig struct {
	// Name is the host-side name (at most 15 bytes), created in the
	// caller's network namespace; Port.Name returns it.
	Name string
	// Netns is where the endpoint lives: "" keeps the device in the
	// caller's namespace; a name means /run/netns/<name>; a path
	// (/proc/<pid>/ns/net, /var/run/netns/x as CNI gives it) is used as is.
	Netns string
	// NetnsIfname is the device's name inside Netns: "" means "eth0" when
	// Netns is set, else Name (without Netns it must be "" or Name).
	NetnsIfname string
	// MAC is the endpoint's MAC, set on the device; zero picks a random
	// locally administered unicast address.
	MAC packet.MAC
	// MTU is set on the device; 0 leaves the kernel's default (1500).
	MTU int
	// Addresses are assigned inside (IPv6 without DAD).
	Addresses []netip.Prefix
	// Gateways, at most one per family: a default route via each, on-link,
	// inside. DefaultGateways gives the usual ones.
	Gateways []netip.Addr
	// GSOMaxSegs, when not 0, caps the segments of the GSO super-frames
	// the endpoint's stack sends into the device (gso_max_segs), so that
	// each fits one UDP GSO send of the tunnel it leaves by (see
	// dataplane.Engine.TrainSegments); 0 leaves the kernel's default.
	GSOMaxSegs int
}

// Offloads asked of every TAP (TUNSETOFFLOAD): partial checksums, TSO for
// both families (TSO_ECN too, so that a super-frame with CWR set is not
// cut up by the kernel; the ECN bit is translated, see decodeVnet), and
// UDP segmentation where the kernel has it (Linux 6.2+, both or neither).
const (
	tapOffloads    = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tapOffloadsUSO = tapOffloads | unix.TUN_F_USO4 | unix.TUN_F_USO6
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

// CreateTAP creates the device, moves it into cfg.Netns and configures it
// there (name, MAC, MTU, addresses, link up, default routes). On any
// failure the device is removed (closing the only file descriptor of a
// non-persistent TAP unregisters it, in whatever namespace it is by then)
// and the error names the step.
func CreateTAP(cfg TAPConfig) (*TAP, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("tap %s: %w", cfg.Name, err)
	}
	mac := cfg.MAC
	if mac.IsZero() {
		var err error
		if mac, err = randomMAC(); err != nil {
			return nil, fmt.Errorf("tap %s: mac: %w", cfg.Name, err)
		}
	}
	// Open the target first: a namespace that is not there must not cost
	// a device.
	target := netns.None()
	var nsPath string
	if cfg.Netns != "" {
		var err error
		if nsPath, err = netnsPath(cfg.Netns); err != nil {
			return nil, fmt.Errorf("tap %s: netns: %w", cfg.Name, err)
		}
		if target, err = netns.GetFromPath(nsPath); err != nil {
			return nil, fmt.Errorf("tap %s: netns %s: %w", cfg.Name, nsPath, err)
		}
		defer target.Close()
	}

	fd, offloads, err := openTAP(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("tap %s: %w", cfg.Name, err)
	}
	file := os.NewFile(uintptr(fd), "tap:"+cfg.Name)
	fail := func(err error) (*TAP, error) {
		file.Close()
		return nil, fmt.Errorf("tap %s: %w", cfg.Name, err)
	}
	if err := configureTAP(&cfg, mac, target, nsPath); err != nil {
		return fail(err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return fail(fmt.Errorf("raw conn: %w", err))
	}
	t := &TAP{name: cfg.Name, mac: mac, offloads: offloads, file: file, rc: rc}
	t.readFn = t.readBatch
	t.txPool.New = func() any {
		s := &tapTx{t: t}
		s.fn = s.run
		return s
	}
	return t, nil
}

func (c *TAPConfig) check() error {
	if err := checkIfname(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if c.NetnsIfname != "" {
		if err := checkIfname(c.NetnsIfname); err != nil {
			return fmt.Errorf("netnsIfname: %w", err)
		}
		if c.Netns == "" && c.NetnsIfname != c.Name {
			return fmt.Errorf("netnsIfname: %q without netns, want %q or empty", c.NetnsIfname, c.Name)
		}
	}
	if c.MAC.IsMulticast() {
		return fmt.Errorf("mac: %v is a group address", c.MAC)
	}
	if c.MTU < 0 || c.MTU > 65535 || (c.MTU > 0 && c.MTU < 68) {
		return fmt.Errorf("mtu: %d, want 0 or 68..65535", c.MTU)
	}
	if c.GSOMaxSegs < 0 || c.GSOMaxSegs > 65535 {
		return fmt.Errorf("gsoMaxSegs: %d, want 0..65535", c.GSOMaxSegs)
	}
	for i, p := range c.Addresses {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("addresses[%d]: %v is not a valid prefix", i, p)
		}
	}
	var have4, have6 bool
	for i, g := range c.Gateways {
		switch {
		case !g.IsValid() || g.Is4In6() || g.IsUnspecified() || g.IsMulticast():
			return fmt.Errorf("gateways[%d]: %v is not a unicast address", i, g)
		case g.Is4() && have4, g.Is6() && have6:
			return fmt.Errorf("gateways[%d]: a second gateway of the family of %v", i, g)
		}
		have4, have6 = have4 || g.Is4(), have6 || g.Is6()
	}
	return nil
}

func checkIfname(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) >= unix.IFNAMSIZ:
		return fmt.Errorf("%q is %d bytes, want at most %d", s, len(s), unix.IFNAMSIZ-1)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not an interface name", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q: character %q not allowed", s, r)
		}
	}
	return nil
}

// randomMAC is a locally administered unicast address.
func randomMAC() (packet.MAC, error) {
	var m packet.MAC
	if _, err := rand.Read(m[:]); err != nil {
		return m, err
	}
	m[0] = m[0]&^0x01 | 0x02
	return m, nil
}

// openTAP creates the device name in the calling thread's namespace and
// returns its non-blocking descriptor and the offloads accepted.
func openTAP(name string) (fd, offloads int, err error) {
	fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, 0, fmt.Errorf("name: %w", err)
	}
	// IFF_TUN_EXCL: fail rather than attach to an existing device of
	// that name (a persistent TAP someone else configured).
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return -1, 0, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		return -1, 0, fmt.Errorf("TUNSETVNETHDRSZ %d: %w", vnetHdrLen, err)
	}
	// The header's byte order is the host's unless we ask for little-
	// endian, the virtio 1.x order our codec uses.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return -1, 0, fmt.Errorf("TUNSETVNETLE: %w", err)
	}
	offloads = tapOffloadsUSO
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		offloads = tapOffloads
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
			return -1, 0, fmt.Errorf("TUNSETOFFLOAD %#x: %w", offloads, err)
		}
	}
	return fd, offloads, nil
}

// configureTAP moves the device cfg.Name into target (if open) and sets it
// up there.
func configureTAP(cfg *TAPConfig, mac packet.MAC, target netns.NsHandle, nsPath string) error {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer host.Close()
	link, err := host.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	nl, ifname := host, cfg.Name
	if target.IsOpen() {
		if err := host.LinkSetNsFd(link, int(target)); err != nil {
			return fmt.Errorf("move to netns %s: %w", nsPath, err)
		}
		var inside *netlink.Handle
		err := nsexec.DoHandle(target, func() (err error) {
			inside, err = netlink.NewHandle(unix.NETLINK_ROUTE)
			return err
		})
		if err != nil {
			return fmt.Errorf("netlink in netns %s: %w", nsPath, err)
		}
		defer inside.Close()
		if link, err = inside.LinkByName(cfg.Name); err != nil {
			return fmt.Errorf("find link in netns %s: %w", nsPath, err)
		}
		nl, ifname = inside, cfg.NetnsIfname
		if ifname == "" {
			ifname = "eth0"
		}
		if ifname != cfg.Name {
			if err := nl.LinkSetName(link, ifname); err != nil {
				return fmt.Errorf("netns %s: rename to %s: %w", nsPath, ifname, err)
			}
		}
	}
	where := ifname
	if nsPath != "" {
		where = "netns " + nsPath + " " + ifname
	}
	if err := nl.LinkSetHardwareAddr(link, net.HardwareAddr(mac[:])); err != nil {
		return fmt.Errorf("%s: mac %v: %w", where, mac, err)
	}
	if cfg.MTU > 0 {
		if err := nl.LinkSetMTU(link, cfg.MTU); err != nil {
			return fmt.Errorf("%s: mtu %d: %w", where, cfg.MTU, err)
		}
	}
	if cfg.GSOMaxSegs > 0 {
		if err := nl.LinkSetGSOMaxSegs(link, cfg.GSOMaxSegs); err != nil {
			return fmt.Errorf("%s: gso_max_segs %d: %w", where, cfg.GSOMaxSegs, err)
		}
	}
	for i, p := range cfg.Addresses {
		a := &netlink.Addr{IPNet: prefixIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrAdd(link, a); err != nil {
			return fmt.Errorf("%s: addresses[%d] %v: %w", where, i, p, err)
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: link up: %w", where, err)
	}
	for i, gw := range cfg.Gateways {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       prefixIPNet(dst),
			Gw:        net.IP(gw.AsSlice()),
			Flags:     int(netlink.FLAG_ONLINK),
		}
		if err := nl.RouteAdd(r); err != nil {
			return fmt.Errorf("%s: gateways[%d] default route via %v: %w", where, i, gw, err)
		}
	}
	return nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

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

// kernelDrops reads tx_dropped of the device wherever it is now: the tun
// descriptor gives its namespace (TUNGETDEVNETNS) and current name.
func (t *TAP) kernelDrops() (uint64, error) {
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
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	var drops uint64
	err = nsexec.DoHandle(netns.NsHandle(nsfd), func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		if st := l.Attrs().Statistics; st != nil {
			drops = st.TxDropped
		}
		return nil
	})
	return drops, err
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
