package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/vrouter/frame"
)

// The test underlay: namespace A (the sender, 192.0.2.1, 2001:db8::1) and
// namespace B (192.0.2.2-4, 2001:db8::2) joined by a veth pair va/vb.
// Traffic goes only to these addresses.
var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrB  = netip.MustParseAddr("192.0.2.2")
	addrB3 = netip.MustParseAddr("192.0.2.3")
	addrB4 = netip.MustParseAddr("192.0.2.4")
	addrA6 = netip.MustParseAddr("2001:db8::1")
	addrB6 = netip.MustParseAddr("2001:db8::2")
	// noRoute has no route in either namespace: a send to it fails in
	// the kernel (ENETUNREACH) and nothing leaves.
	noRoute = netip.MustParseAddr("198.51.100.1")
)

// underlay builds the two namespaces, named wtt-<tag>a and wtt-<tag>b
// (tag at most 9 bytes), removed when t ends.
func underlay(t testing.TB, tag string) (a, b *nettest.NS) {
	t.Helper()
	a = nettest.New(t, "wtt-"+tag+"a")
	b = nettest.New(t, "wtt-"+tag+"b")
	nettest.Veth(t, a, "va", "192.0.2.1/24", b, "vb", "192.0.2.2/24")
	a.Up(t, "va", "2001:db8::1/64")
	for _, p := range []string{"192.0.2.3/24", "192.0.2.4/24", "2001:db8::2/64"} {
		b.Up(t, "vb", p)
	}
	// Permanent neighbours: no datagram waits on (or is lost to) ARP or
	// NDP while the link comes up.
	neighbours(t, a, "va", b, "vb", addrB, addrB3, addrB4, addrB6)
	neighbours(t, b, "vb", a, "va", addrA, addrA6)
	// An IPv6 address added before its link was up becomes local only
	// when addrconf's deferred work runs after link-up (NODAD or not; the
	// flags do not show it): until then datagrams to it are dropped as
	// address errors. Wait for the local routes.
	local(t, a, addrA6)
	local(t, b, addrB6)
	return a, b
}

// local waits until addr is a local address in ns (its route is local).
func local(t testing.TB, ns *nettest.NS, addr netip.Addr) {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(2 * time.Millisecond) {
		rs, err := ns.NL.RouteGet(addr.AsSlice())
		if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v is not local in %s: %v, %v", addr, ns.Name, rs, err)
		}
	}
}

// neighbours tells ns, on link, that addrs are at peer's peerLink.
func neighbours(t testing.TB, ns *nettest.NS, link string, peer *nettest.NS, peerLink string, addrs ...netip.Addr) {
	t.Helper()
	l, err := ns.NL.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := peer.NL.LinkByName(peerLink)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: pl.Attrs().HardwareAddr}
		if err := ns.NL.NeighSet(n); err != nil {
			t.Fatalf("neighbour %v on %s in %s: %v", a, link, ns.Name, err)
		}
	}
}

func listenUDPIn(t testing.TB, ns *nettest.NS, cfg UDPConfig) *UDPConn {
	t.Helper()
	var c *UDPConn
	if err := ns.Do(func() (err error) { c, err = ListenUDP(cfg); return err }); err != nil {
		t.Fatalf("in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func listenGREIn(t testing.TB, ns *nettest.NS, local netip.Addr) (*GREConn, error) {
	t.Helper()
	var c *GREConn
	if err := ns.Do(func() (err error) { c, err = ListenGRE(local); return err }); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// plainUDP is an ordinary net.UDPConn in ns, the independent witness.
func plainUDP(t testing.TB, ns *nettest.NS, ap netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		t.Fatalf("in %s: listen %v: %v", ns.Name, ap, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// got is one received message, copied.
type got struct {
	data []byte
	seg  int
	from netip.Addr
}

// collect reads c in a goroutine until it is closed, sending copies.
func collect(t testing.TB, c Conn) <-chan got {
	t.Helper()
	ch := make(chan got, 4096)
	msgs := make([]Msg, c.BatchSize())
	for i, f := range frame.Batch(len(msgs)) {
		msgs[i].F = f
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := c.Read(msgs)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("read: %v", err)
				}
				close(ch)
				return
			}
			for _, m := range msgs[:n] {
				ch <- got{data: bytes.Clone(m.F.Data()), seg: m.SegSize, from: m.Addr}
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return ch
}

// take waits for n messages from ch, failing after timeout.
func take(t testing.TB, ch <-chan got, n int, timeout time.Duration) []got {
	t.Helper()
	var out []got
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case g, ok := <-ch:
			if !ok {
				t.Fatalf("reader closed after %d of %d messages", len(out), n)
			}
			out = append(out, g)
		case <-deadline:
			t.Fatalf("got %d of %d messages within %v", len(out), n, timeout)
		}
	}
	return out
}

// quiet checks that nothing more arrives on ch for a while.
func quiet(t testing.TB, ch <-chan got, d time.Duration) {
	t.Helper()
	select {
	case g := <-ch:
		t.Fatalf("unexpected message of %d bytes from %v", len(g.data), g.from)
	case <-time.After(d):
	}
}

// payload is n bytes that name their message: a 4-byte id, then a
// pattern derived from it, so that any mix-up or corruption shows.
func payload(id uint32, n int) []byte {
	b := make([]byte, n)
	var idb [4]byte
	binary.BigEndian.PutUint32(idb[:], id)
	copy(b, idb[:])
	for i := 4; i < n; i++ {
		b[i] = byte(uint32(i)*7 + id*13)
	}
	return b
}

// msgOf is a Msg carrying data at the standard headroom.
func msgOf(data []byte, to netip.Addr, hash uint64, seg int) Msg {
	f := frame.New()
	copy(f.Buf[frame.Headroom:], data)
	f.SetData(frame.Headroom, len(data))
	return Msg{F: f, Addr: to, Hash: hash, SegSize: seg}
}

func readPlain(t testing.TB, c *net.UDPConn, timeout time.Duration) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("plain read: %v", err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}
