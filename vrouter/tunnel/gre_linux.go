package tunnel

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
)

// protoGRE is GRE's IP protocol number.
const protoGRE = 47

// GREConn is the underlay socket of MPLSoGRE: a raw IP socket of protocol
// 47, so no kernel GRE module is needed. The kernel writes the outer IP
// header on send; Msg.F holds the GRE header and what follows. On receive
// an IPv4 raw socket delivers the outer header too: Read strips it. The
// kernel hands the socket every GRE datagram for its address, whatever the
// payload; the caller parses GRE and drops what is not MPLS.
//
// Fragmentation follows the UDP tunnels' policy (see setFragPolicy): an
// outer IPv4 datagram over the interface MTU leaves fragmented without DF.
//
// Read reorders frames within msgs as UDPConn.Read does. Read calls are
// serialised; Write may be called from several goroutines at once.
type GREConn struct {
	sender
	local netip.Addr
	v4    bool
	s     *sock

	closed atomic.Bool
	st     counters

	rmu sync.Mutex
	r   *rxBatch

	wpool sync.Pool
}

var _ Conn = (*GREConn)(nil)

// ListenGRE opens a raw GRE socket bound to local, IPv4 or IPv6 by local's
// family (an unspecified address receives GRE for every local address of
// that family).
func ListenGRE(local netip.Addr) (*GREConn, error) {
	c, err := listenGRE(local)
	if err != nil {
		return nil, fmt.Errorf("mplsogre listen %v: %w", local, err)
	}
	return c, nil
}

func listenGRE(local netip.Addr) (c *GREConn, err error) {
	if !local.IsValid() {
		return nil, fmt.Errorf("local address is not valid")
	}
	family, _ := familyOf(local)
	if family == unix.AF_INET {
		local = local.Unmap()
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, protoGRE)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	s, err := newSock(fd, "mplsogre")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			closeAll(s)
		}
	}()
	if err := setBuf(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rcvBufBytes); err != nil {
		return nil, fmt.Errorf("receive buffer: %w", err)
	}
	if err := setBuf(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sndBufBytes); err != nil {
		return nil, fmt.Errorf("send buffer: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		return nil, fmt.Errorf("SO_RXQ_OVFL: %w", err)
	}
	// A raw socket of one family: v6only for addressing purposes (an IPv6
	// raw socket cannot reach v4-mapped peers).
	if err := setFragPolicy(fd, family, true); err != nil {
		return nil, err
	}
	sa, err := bindSockaddr(netip.AddrPortFrom(local, 0), family)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	c = &GREConn{local: local, v4: family == unix.AF_INET, s: s}
	c.sender = sender{
		family: family,
		v6only: true,
		st:     &c.st,
		closed: &c.closed,
		what:   "mplsogre write",
	}
	c.r = newRxBatch(DefaultBatch, rxCtrlSize)
	c.wpool.New = func() any { return newTxBatch(DefaultBatch) }
	return c, nil
}

// Read blocks until datagrams arrived and fills msgs[0:n] (see Conn): the
// GRE header at frame.Headroom, Addr the outer source. An IPv4 outer
// header is checked and stripped (options honoured); a fragment, a
// malformed or a truncated header is dropped and counted.
func (c *GREConn) Read(msgs []Msg) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	at := frame.Headroom
	if c.v4 {
		// Land a 20-byte outer header in the headroom, so that without
		// options the GRE header is at frame.Headroom with no copy.
		at -= ipv4OuterMin
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.closed.Load() {
			return 0, ErrClosed
		}
		if err := c.r.prepare(msgs, at); err != nil {
			return 0, fmt.Errorf("mplsogre read: %w", err)
		}
		if err := readSock(c.s, c.r, &c.closed, &c.st, "mplsogre read"); err != nil {
			c.r.release()
			return 0, err
		}
		n := c.finish(msgs, at)
		c.r.release()
		if n > 0 {
			return n, nil
		}
	}
}

func (c *GREConn) finish(msgs []Msg, at int) int {
	r := c.r
	k := 0
	var dgrams, bytes, ovfl uint64
	for i := range r.got {
		h := &r.hdrs[i]
		if h.Hdr.Flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			c.st.drop(dropTruncated)
			continue
		}
		addr, ok := sockaddrAddr(&r.names[i], h.Hdr.Namelen)
		if !ok || addr.Is4() != c.v4 {
			c.st.drop(dropBadSource)
			continue
		}
		if _, drops, hasDrops := parseCmsgs(r.ctrlOf(i)); hasDrops {
			ovfl = max(ovfl, drops)
		}
		f := msgs[i].F
		got := min(int(h.Len), len(f.Buf)-at)
		off, n := at, got
		if c.v4 {
			hl, pl, why := ipv4Outer(f.Buf[at:at+got], protoGRE)
			if why != dropNone {
				c.st.drop(why)
				continue
			}
			off, n = at+hl, pl
		}
		if off != frame.Headroom {
			copy(f.Buf[frame.Headroom:], f.Buf[off:off+n]) // IPv4 options: rare
		}
		if k != i {
			msgs[k].F, msgs[i].F = msgs[i].F, msgs[k].F
		}
		m := &msgs[k]
		m.F.Off, m.F.Len, m.F.Offload = frame.Headroom, n, frame.Offload{}
		m.SegSize, m.Addr, m.Hash = 0, addr, 0
		k++
		dgrams++
		bytes += uint64(n)
	}
	c.st.dgramsIn.Add(dgrams)
	c.st.bytesIn.Add(bytes)
	if ovfl > 0 {
		c.st.seenOverflow(ovfl)
	}
	return k
}

// Write sends msgs (see Conn) to each Addr, one GRE datagram per Msg; the
// kernel adds the outer IP header. A Msg with SegSize > 0 (not needed:
// GSO() is false) is sent as one datagram per segment.
func (c *GREConn) Write(msgs []Msg) (int, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	w := c.wpool.Get().(*txBatch)
	defer c.wpool.Put(w)
	done := 0
	for i := range msgs {
		d, err := c.addMsg(w, c.s, &msgs[i])
		if done += d; err != nil {
			w.reset()
			return done, err
		}
	}
	d, err := c.flush(w, c.s)
	return done + d, err
}

// BatchSize is a good len(msgs) for Read and Write.
func (c *GREConn) BatchSize() int { return DefaultBatch }

// GSO is false: raw sockets have no segmentation offload.
func (c *GREConn) GSO() bool { return false }

// LocalAddr is the bound address, port 0.
func (c *GREConn) LocalAddr() netip.AddrPort { return netip.AddrPortFrom(c.local, 0) }

// Stats returns the counters.
func (c *GREConn) Stats() Stats { return c.st.snapshot() }

// Close closes the socket; a blocked Read or Write returns ErrClosed.
// Closing again does nothing.
func (c *GREConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := closeAll(c.s); err != nil {
		return fmt.Errorf("mplsogre close %v: %w", c.local, err)
	}
	return nil
}
