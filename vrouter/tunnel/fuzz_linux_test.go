package tunnel

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/frame"
)

// FuzzParseCmsgs: any control buffer parses without a panic, and a GRO
// size found is never negative.
func FuzzParseCmsgs(f *testing.F) {
	f.Add(cmsg(unix.SOL_UDP, unix.UDP_GRO, le32(1400)))
	f.Add(append(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, le32(3)), cmsg(unix.SOL_UDP, unix.UDP_GRO, le32(9000))...))
	f.Add(cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{0xff, 0xff, 0xff, 0xff}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if gro, _, _ := parseCmsgs(b); gro < 0 {
			t.Fatalf("negative GRO size %d", gro)
		}
	})
}

// FuzzIPv4Outer: an accepted header lies within b, is 20 to 60 bytes,
// and is not a fragment.
func FuzzIPv4Outer(f *testing.F) {
	f.Add(append(ipv4Hdr(5, 28, 0, 47), 0, 0, 0x88, 0x47, 0, 0, 0, 0))
	f.Add(append(ipv4Hdr(15, 64, 0, 47), 1, 2, 3, 4))
	f.Add(ipv4Hdr(5, 20, 0x4000, 47))
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		hl, pl, why := ipv4Outer(b, protoGRE)
		if why != dropNone {
			return
		}
		if hl < 20 || hl > 60 || pl < 0 || hl+pl > len(b) {
			t.Fatalf("header %d, payload %d of %d bytes", hl, pl, len(b))
		}
		if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
			t.Fatal("fragment accepted")
		}
	})
}

// FuzzReceive runs the whole receive post-processing of both Conns over
// one entry made of fuzz input: data, control bytes, sockaddr family and
// length, message flags. It must never panic, and a message handed up
// lies within its frame at the headroom.
func FuzzReceive(f *testing.F) {
	f.Add(append(ipv4Hdr(5, 28, 0, 47), 0, 0, 0x88, 0x47, 0, 0, 0, 0), cmsg(unix.SOL_UDP, unix.UDP_GRO, le32(4)), uint16(unix.AF_INET), uint32(16), int32(0))
	f.Add([]byte{}, []byte{}, uint16(unix.AF_INET6), uint32(28), int32(unix.MSG_TRUNC))
	f.Add([]byte{1, 2, 3}, []byte{0xff}, uint16(0), uint32(0), int32(0))
	f.Fuzz(func(t *testing.T, data, ctrl []byte, family uint16, namelen uint32, flags int32) {
		if len(data) > 4096 {
			data = data[:4096]
		}
		e := entry{data: data, family: family, namelen: namelen % 64, flags: flags, ctrl: ctrl}
		check := func(msgs []Msg, n int) {
			for _, m := range msgs[:n] {
				if m.F.Off != frame.Headroom || m.F.Len < 0 || m.F.Off+m.F.Len > len(m.F.Buf) || m.SegSize < 0 {
					t.Fatalf("msg off %d len %d seg %d", m.F.Off, m.F.Len, m.SegSize)
				}
			}
		}
		u := &UDPConn{r: newRxBatch(1, rxCtrlSize)}
		msgs := freshMsgs(1)
		fill(t, u.r, msgs, frame.Headroom, []entry{e})
		check(msgs, u.finish(msgs))
		for _, v4 := range []bool{true, false} {
			g := &GREConn{v4: v4, r: newRxBatch(1, rxCtrlSize)}
			at := frame.Headroom
			if v4 {
				at -= ipv4OuterMin
			}
			msgs := freshMsgs(1)
			fill(t, g.r, msgs, at, []entry{e})
			check(msgs, g.finish(msgs, at))
		}
	})
}
