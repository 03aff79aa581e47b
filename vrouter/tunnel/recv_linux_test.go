package tunnel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
)

// These tests drive the receive post-processing (what Read does after
// recvmmsg) with entries filled by hand: kernels validate outer headers
// before a raw socket sees them, so truncated or fragmented headers, odd
// sockaddrs and cut-off control data cannot be made to arrive for real.

// entry is one fake recvmmsg result.
type entry struct {
	data    []byte // as the kernel would have written it at the receive offset
	family  uint16
	src     netip.Addr
	namelen uint32
	flags   int32
	ctrl    []byte
}

// fill puts entries into r and msgs' frames as recvmmsg would have.
func fill(t testing.TB, r *rxBatch, msgs []Msg, at int, es []entry) {
	t.Helper()
	if err := r.prepare(msgs, at); err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		copy(msgs[i].F.Buf[at:], e.data)
		h := &r.hdrs[i]
		h.Len = uint32(len(e.data))
		h.Hdr.Flags = e.flags
		h.Hdr.Namelen = e.namelen
		sa := &r.names[i]
		*sa = unix.RawSockaddrInet6{Family: e.family}
		if e.src.Is4() {
			(*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr = e.src.As4()
		} else if e.src.IsValid() {
			sa.Addr = e.src.As16()
		}
		n := copy(r.ctrl[i*r.cs:(i+1)*r.cs], e.ctrl)
		h.Hdr.SetControllen(n)
	}
	r.got = len(es)
}

func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func le32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func ipv4Hdr(ihl int, total int, frag uint16, proto byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:], uint16(total))
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8], h[9] = 64, proto
	return h
}

func freshMsgs(n int) []Msg {
	msgs := make([]Msg, n)
	for i, f := range frame.Batch(n) {
		msgs[i].F = f
	}
	return msgs
}

func TestGREFinish(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.9")
	gre := []byte{0, 0, 0x88, 0x47, 1, 2, 3, 4}
	with := func(h []byte) []byte { return append(append([]byte(nil), h...), gre...) }
	es := []entry{
		{data: with(ipv4Hdr(5, 28, 0, 47))},                     // good
		{data: ipv4Hdr(5, 20, 0, 47)[:12]},                      // header cut short
		{data: with(ipv4Hdr(5, 28, 0x2000, 47))},                // MF: a fragment
		{data: with(ipv4Hdr(5, 28, 0x0010, 47))},                // offset: a fragment
		{data: with(ipv4Hdr(4, 28, 0, 47))},                     // IHL below 5
		{data: with(ipv4Hdr(5, 60, 0, 47))},                     // total length past the data
		{data: with(ipv4Hdr(5, 10, 0, 47))},                     // total length below IHL
		{data: with(ipv4Hdr(6, 32, 0, 47))},                     // good, with 4 bytes of options
		{data: append(with(ipv4Hdr(5, 28, 0, 47)), 0, 0, 0, 0)}, // good, link padding past total length
		{data: with(ipv4Hdr(5, 28, 0, 17))},                     // not GRE
		{data: with(ipv4Hdr(5, 28, 0, 47)), flags: unix.MSG_TRUNC},
		{data: with(ipv4Hdr(5, 28, 0, 47)), family: unix.AF_INET6, src: netip.MustParseAddr("2001:db8::9")}, // wrong family
		{data: with(ipv4Hdr(5, 28, 0, 47)), namelen: 4},                                                     // short sockaddr
		{data: nil},                            // empty
		{data: with(ipv4Hdr(5, 8, 0, 47))[:8]}, // shorter than 20 bytes
	}
	for i := range es {
		e := &es[i]
		if e.family == 0 {
			e.family, e.src = unix.AF_INET, src
		}
		if e.namelen == 0 {
			e.namelen = unix.SizeofSockaddrInet4
		}
	}
	// And a header of the wrong IP version.
	bad := with(ipv4Hdr(5, 28, 0, 47))
	bad[0] = 0x65
	es = append(es, entry{data: bad, family: unix.AF_INET, src: src, namelen: unix.SizeofSockaddrInet4})

	c := &GREConn{v4: true, r: newRxBatch(len(es), rxCtrlSize)}
	msgs := freshMsgs(len(es))
	frames := map[*frame.Frame]bool{}
	for _, m := range msgs {
		frames[m.F] = true
	}
	at := frame.Headroom - ipv4OuterMin
	fill(t, c.r, msgs, at, es)
	n := c.finish(msgs, at)
	if n != 3 {
		t.Fatalf("finish kept %d, want 3", n)
	}
	for i := range n {
		m := msgs[i]
		if m.F.Off != frame.Headroom || !bytes.Equal(m.F.Data(), gre) || m.Addr != src {
			t.Errorf("msg %d: off %d data %x from %v", i, m.F.Off, m.F.Data(), m.Addr)
		}
	}
	for _, m := range msgs {
		delete(frames, m.F)
	}
	if len(frames) != 0 {
		t.Errorf("%d frames lost from msgs", len(frames))
	}
	d := c.st.snapshot().Drops
	want := Drops{ShortHeader: 4, Fragment: 2, BadHeader: 4, Truncated: 1, BadSource: 2}
	if d != want {
		t.Errorf("drops %+v\nwant  %+v", d, want)
	}
}

func TestUDPFinish(t *testing.T) {
	src4 := netip.MustParseAddr("192.0.2.9")
	src6 := netip.MustParseAddr("2001:db8::9")
	mapped := netip.AddrFrom16(src4.As16())
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, le32(100))
	ovfl := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, le32(42))
	es := []entry{
		{data: payload(1, 350), family: unix.AF_INET6, src: mapped, ctrl: append(append([]byte(nil), gro...), ovfl...)},
		{data: payload(2, 50), family: unix.AF_INET6, src: src6, flags: unix.MSG_TRUNC},
		{data: payload(3, 50), family: unix.AF_INET6, src: src6, ctrl: gro}, // GRO size over the length: one datagram
		{data: payload(4, 50), family: unix.AF_UNIX, src: src6},
		{data: payload(5, 50), family: unix.AF_INET6, src: src6, flags: unix.MSG_CTRUNC},
		{data: nil, family: unix.AF_INET6, src: src6, ctrl: []byte{1, 2, 3}}, // garbage control data
	}
	for i := range es {
		es[i].namelen = unix.SizeofSockaddrInet6
	}
	c := &UDPConn{r: newRxBatch(len(es), rxCtrlSize)}
	msgs := freshMsgs(len(es))
	fill(t, c.r, msgs, frame.Headroom, es)
	n := c.finish(msgs)
	if n != 3 {
		t.Fatalf("finish kept %d, want 3", n)
	}
	want := []struct {
		id   uint32
		seg  int
		from netip.Addr
	}{{1, 100, src4}, {3, 0, src6}, {6, 0, src6}}
	for i, w := range want {
		m := msgs[i]
		if w.id != 6 && binary.BigEndian.Uint32(m.F.Data()) != w.id || m.SegSize != w.seg || m.Addr != w.from {
			t.Errorf("msg %d: %d bytes seg %d from %v; want id %d seg %d from %v", i, m.F.Len, m.SegSize, m.Addr, w.id, w.seg, w.from)
		}
	}
	st := c.st.snapshot()
	if st.GROReads != 1 || st.DatagramsIn != 4+1+1 || st.Drops.Truncated != 2 || st.Drops.BadSource != 1 || st.Drops.Overflow != 42 {
		t.Errorf("stats %+v", st)
	}
}

func TestParseCmsgs(t *testing.T) {
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, le32(1400))
	ovfl := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, le32(7))
	other := cmsg(unix.SOL_IP, unix.IP_TOS, []byte{0x10})
	for _, tc := range []struct {
		name     string
		b        []byte
		gro      int
		drops    uint64
		hasDrops bool
	}{
		{"empty", nil, 0, 0, false},
		{"gro", gro, 1400, 0, false},
		{"both", append(append([]byte(nil), ovfl...), gro...), 1400, 7, true},
		{"other first", append(append([]byte(nil), other...), gro...), 1400, 0, false},
		{"gro cut short", gro[:len(gro)-8], 0, 0, false},
		{"length zero", make([]byte, 32), 0, 0, false},
		{"length huge", func() []byte { b := append([]byte(nil), gro...); b[0], b[7] = 0xff, 0xff; return b }(), 0, 0, false},
		{"header only", gro[:unix.SizeofCmsghdr-1], 0, 0, false},
	} {
		g, d, ok := parseCmsgs(tc.b)
		if g != tc.gro || d != tc.drops || ok != tc.hasDrops {
			t.Errorf("%s: parseCmsgs = %d, %d, %v; want %d, %d, %v", tc.name, g, d, ok, tc.gro, tc.drops, tc.hasDrops)
		}
	}
}

func TestSockaddr(t *testing.T) {
	for _, tc := range []struct {
		family int
		v6only bool
		a      string
		want   uint32
	}{
		{unix.AF_INET, false, "192.0.2.1", unix.SizeofSockaddrInet4},
		{unix.AF_INET, false, "::ffff:192.0.2.1", unix.SizeofSockaddrInet4},
		{unix.AF_INET, false, "2001:db8::1", 0},
		{unix.AF_INET6, false, "192.0.2.1", unix.SizeofSockaddrInet6},
		{unix.AF_INET6, true, "192.0.2.1", 0},
		{unix.AF_INET6, true, "2001:db8::1", unix.SizeofSockaddrInet6},
		{unix.AF_INET6, false, "", 0},
	} {
		var a netip.Addr
		if tc.a != "" {
			a = netip.MustParseAddr(tc.a)
		}
		var sa unix.RawSockaddrInet6
		n := putSockaddr(&sa, tc.family, tc.v6only, a, 6635)
		if n != tc.want {
			t.Errorf("putSockaddr(%d, %v, %v) = %d, want %d", tc.family, tc.v6only, a, n, tc.want)
			continue
		}
		if n == 0 {
			continue
		}
		if p := (*[2]byte)(unsafe.Pointer(&sa.Port)); p[0] != 6635>>8 || p[1] != 6635&0xff {
			t.Errorf("%v: port bytes %x", a, p)
		}
		back, ok := sockaddrAddr(&sa, n)
		if !ok || back != a.Unmap() {
			t.Errorf("%v: round trip gave %v, %v", a, back, ok)
		}
	}
}
