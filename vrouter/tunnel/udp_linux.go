package tunnel

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
)

// UDPConn is the underlay socket of a UDP encapsulation (MPLSoUDP, VXLAN).
//
// Datagrams are received on one socket bound to UDPConfig.Listen, with UDP
// GRO when the kernel has it. They are sent from SendSockets other
// sockets, each bound to its own source port (see UDPConfig.SourcePortBase)
// and chosen by Msg.Hash, so that the fabric's ECMP, which hashes the
// outer 5-tuple, keeps a flow on one path and spreads flows across paths.
// The send sockets drop anything sent to them with a socket filter.
//
// Outer fragmentation: see setFragPolicy. In short, an IPv4 datagram
// larger than the interface MTU leaves fragmented without DF; an IPv6 one
// is fragmented at the path MTU. The vRouter itself answers inner DF
// packets with ICMP. A GSO send whose segments exceed the MTU is refused
// by the kernel and counted in Drops.GSOTooBig.
//
// Read reorders frames within msgs: a datagram that is dropped (truncated,
// odd source) leaves its frame after the n that Read returns, swapped with
// a later one's. Every frame stays in msgs. Read calls are serialised;
// Write may be called from several goroutines at once.
type UDPConn struct {
	sender
	name     string // encapsulation, for errors
	readWhat string // name + " read", made once: Read must not allocate
	local    netip.AddrPort
	rx       *sock
	send     []*sock
	ports    []uint16
	batch    int
	gro      bool

	closed atomic.Bool
	st     counters

	rmu sync.Mutex
	r   *rxBatch

	wpool sync.Pool
}

var _ Conn = (*UDPConn)(nil)

// ListenUDP opens the receive socket and the send sockets of a UDP
// encapsulation.
func ListenUDP(cfg UDPConfig) (*UDPConn, error) {
	cfg, err := cfg.withDefaults()
	name := encapName(cfg.RemotePort)
	if err != nil {
		return nil, fmt.Errorf("%s listen %v: %w", name, cfg.Listen, err)
	}
	c, err := listenUDP(cfg, name)
	if err != nil {
		return nil, fmt.Errorf("%s listen %v: %w", name, cfg.Listen, err)
	}
	return c, nil
}

func listenUDP(cfg UDPConfig, name string) (c *UDPConn, err error) {
	family, v6only := familyOf(cfg.Listen.Addr())
	c = &UDPConn{name: name, readWhat: name + " read", batch: cfg.Batch}
	defer func() {
		if err != nil {
			closeAll(append([]*sock{c.rx}, c.send...)...)
		}
	}()

	fd, err := udpSocket(family, v6only)
	if err != nil {
		return nil, err
	}
	if c.rx, err = newSock(fd, name+"-rx"); err != nil {
		return nil, err
	}
	if err := setBuf(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rcvBufBytes); err != nil {
		return nil, fmt.Errorf("receive buffer: %w", err)
	}
	// SO_RXQ_OVFL tells, with each datagram, how many the kernel dropped:
	// the loss an operator otherwise finds only in /proc/net/udp.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		return nil, fmt.Errorf("SO_RXQ_OVFL: %w", err)
	}
	if !cfg.NoGRO {
		// Kernels before 5.0 lack UDP_GRO: plain datagrams then, not an error.
		c.gro = unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	}
	bsa, err := bindSockaddr(cfg.Listen, family)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, bsa); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if c.local, err = localAddrPort(fd); err != nil {
		return nil, err
	}
	if cfg.RemotePort == 0 {
		cfg.RemotePort = c.local.Port() // Listen asked for an ephemeral port: tests
	}

	next := int(cfg.SourcePortBase)
	firstSend := -1
	for i := range cfg.SendSockets {
		fd, err := udpSocket(family, v6only)
		if err != nil {
			return nil, err
		}
		s, err := newSock(fd, fmt.Sprintf("%s-tx%d", name, i))
		if err != nil {
			return nil, err
		}
		c.send = append(c.send, s)
		if i == 0 {
			firstSend = fd
		}
		if err := setupSendSocket(fd, family, v6only); err != nil {
			return nil, err
		}
		port, err := bindSourcePort(fd, cfg.Listen.Addr(), family, &next, c.local.Port())
		if err != nil {
			return nil, fmt.Errorf("send socket %d: %w", i, err)
		}
		c.ports = append(c.ports, port)
	}

	c.sender = sender{
		family: family,
		v6only: v6only,
		port:   cfg.RemotePort,
		st:     &c.st,
		closed: &c.closed,
		what:   name + " write",
	}
	if !cfg.NoGSO {
		// Getting UDP_SEGMENT works from Linux 4.18, where UDP GSO came.
		_, err := unix.GetsockoptInt(firstSend, unix.SOL_UDP, unix.UDP_SEGMENT)
		c.gso.Store(err == nil)
	}
	c.r = newRxBatch(cfg.Batch, rxCtrlSize) // GRO sizes and overflow counts
	nsend := len(c.send)
	c.wpool.New = func() any {
		w := newTxBatch(cfg.Batch)
		w.sockOf = make([]int32, cfg.Batch)
		w.order = make([]int32, cfg.Batch)
		w.count = make([]int32, nsend)
		w.next = make([]int32, nsend)
		return w
	}
	return c, nil
}

func udpSocket(family int, v6only bool) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if family == unix.AF_INET6 {
		v := 0
		if v6only {
			v = 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	return fd, nil
}

func setupSendSocket(fd, family int, v6only bool) error {
	if err := setBuf(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sndBufBytes); err != nil {
		return fmt.Errorf("send buffer: %w", err)
	}
	// The smallest receive buffer the kernel allows; the filter keeps it empty.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
	if err := dropAll(fd); err != nil {
		return err
	}
	return setFragPolicy(fd, family, v6only)
}

// bindSourcePort binds fd to the first free port from *next up to 65535
// (skipping skip, the receive port), then to an ephemeral one once the
// range is used up, and returns the port bound.
func bindSourcePort(fd int, addr netip.Addr, family int, next *int, skip uint16) (uint16, error) {
	for ; *next <= 65535; *next++ {
		p := uint16(*next)
		if p == skip {
			continue
		}
		sa, err := bindSockaddr(netip.AddrPortFrom(addr, p), family)
		if err != nil {
			return 0, err
		}
		switch err := unix.Bind(fd, sa); err {
		case nil:
			*next++
			return p, nil
		case unix.EADDRINUSE, unix.EACCES:
			continue
		default:
			return 0, fmt.Errorf("bind port %d: %w", p, err)
		}
	}
	sa, err := bindSockaddr(netip.AddrPortFrom(addr, 0), family)
	if err != nil {
		return 0, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return 0, fmt.Errorf("bind ephemeral port: %w", err)
	}
	ap, err := localAddrPort(fd)
	return ap.Port(), err
}

func interfaceIndex(name string) (uint32, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}

// Read blocks until datagrams arrived and fills msgs[0:n] (see Conn): the
// UDP payload at frame.Headroom, SegSize from UDP GRO, Addr the sender.
// Frames must have room for a GRO super-datagram (frame.New's BufSize);
// a datagram larger than the frame is dropped as truncated.
func (c *UDPConn) Read(msgs []Msg) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.closed.Load() {
			return 0, ErrClosed
		}
		if err := c.r.prepare(msgs, frame.Headroom); err != nil {
			return 0, fmt.Errorf("%s read: %w", c.name, err)
		}
		err := readSock(c.rx, c.r, &c.closed, &c.st, c.readWhat)
		if err != nil {
			c.r.release()
			return 0, err
		}
		n := c.finish(msgs)
		c.r.release()
		if n > 0 {
			return n, nil
		}
	}
}

// finish turns the entries recvmmsg filled into msgs, compacting past
// dropped ones, and counts.
func (c *UDPConn) finish(msgs []Msg) int {
	r := c.r
	k := 0
	var dgrams, bytes, gro, ovfl uint64
	for i := range r.got {
		h := &r.hdrs[i]
		if h.Hdr.Flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			c.st.drop(dropTruncated)
			continue
		}
		addr, ok := sockaddrAddr(&r.names[i], h.Hdr.Namelen)
		if !ok {
			c.st.drop(dropBadSource)
			continue
		}
		seg, drops, hasDrops := parseCmsgs(r.ctrlOf(i))
		if hasDrops {
			ovfl = max(ovfl, drops)
		}
		if k != i {
			msgs[k].F, msgs[i].F = msgs[i].F, msgs[k].F
		}
		m := &msgs[k]
		n := min(int(h.Len), len(m.F.Buf)-frame.Headroom)
		if seg >= n {
			seg = 0 // one datagram, whatever the kernel called it
		}
		m.F.Off, m.F.Len, m.F.Offload = frame.Headroom, n, frame.Offload{}
		m.SegSize, m.Addr, m.Hash = seg, addr, 0
		k++
		bytes += uint64(n)
		if seg > 0 {
			gro++
			dgrams += uint64((n + seg - 1) / seg)
		} else {
			dgrams++
		}
	}
	c.st.dgramsIn.Add(dgrams)
	c.st.bytesIn.Add(bytes)
	if gro > 0 {
		c.st.groReads.Add(gro)
	}
	if ovfl > 0 {
		c.st.seenOverflow(ovfl)
	}
	return k
}

// Write sends msgs (see Conn), each from the send socket that its Hash
// picks, to Addr at the remote port. A message with SegSize > 0 goes out
// as UDP GSO sends of up to 64 segments, or, without GSO, as one datagram
// per segment. Messages for different send sockets may leave in a
// different order than given; one flow's keep their order. n counts the
// messages sent or dropped and counted (see Stats); on an error (the Conn
// is closed) those completed before it.
func (c *UDPConn) Write(msgs []Msg) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	w := c.wpool.Get().(*txBatch)
	defer c.wpool.Put(w)
	done := 0
	for start := 0; start < len(msgs); start += c.batch {
		chunk := msgs[start:min(start+c.batch, len(msgs))]
		c.group(w, chunk)
		pos := int32(0)
		for k, s := range c.send {
			cnt := w.count[k]
			if cnt == 0 {
				continue
			}
			for _, j := range w.order[pos : pos+cnt] {
				d, err := c.addMsg(w, s, &chunk[j])
				if done += d; err != nil {
					w.reset()
					return done, err
				}
			}
			pos += cnt
			d, err := c.flush(w, s)
			if done += d; err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// group sorts the chunk's message indices by send socket (a counting
// sort: stable, so one flow's messages keep their order).
func (c *UDPConn) group(w *txBatch, chunk []Msg) {
	clear(w.count)
	n := len(c.send)
	for j := range chunk {
		k := int32(pickSocket(chunk[j].Hash, n))
		w.sockOf[j] = k
		w.count[k]++
	}
	sum := int32(0)
	for k, cnt := range w.count {
		w.next[k] = sum
		sum += cnt
	}
	for j := range chunk {
		k := w.sockOf[j]
		w.order[w.next[k]] = int32(j)
		w.next[k]++
	}
}

// BatchSize is UDPConfig.Batch: a good len(msgs) for Read and Write.
func (c *UDPConn) BatchSize() int { return c.batch }

// GSO reports whether Write hands SegSize > 0 to the kernel as UDP GSO.
// Write accepts such messages either way (it cuts them itself without).
func (c *UDPConn) GSO() bool { return c.gso.Load() }

// GRO reports whether the receive socket has UDP GRO.
func (c *UDPConn) GRO() bool { return c.gro }

// LocalAddr is the receive socket's address.
func (c *UDPConn) LocalAddr() netip.AddrPort { return c.local }

// SourcePorts are the send sockets' ports, in the order Msg.Hash picks
// them.
func (c *UDPConn) SourcePorts() []uint16 { return append([]uint16(nil), c.ports...) }

// SourcePort is the source port that a flow of hash leaves from.
func (c *UDPConn) SourcePort(hash uint64) uint16 {
	if len(c.ports) == 0 {
		return 0
	}
	return c.ports[pickSocket(hash, len(c.ports))]
}

// Stats returns the counters.
func (c *UDPConn) Stats() Stats { return c.st.snapshot() }

// Close closes the sockets; a blocked Read or Write returns ErrClosed.
// Closing again does nothing.
func (c *UDPConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := closeAll(append([]*sock{c.rx}, c.send...)...); err != nil {
		return fmt.Errorf("%s close %v: %w", c.name, c.local, err)
	}
	return nil
}
