// Package tunnel holds the vRouter's underlay sockets, one per
// encapsulation: UDP for MPLSoUDP (6635) and VXLAN (4789), a raw IP socket
// of protocol 47 for MPLSoGRE. The kernel writes and strips the outer IP
// (and UDP) headers; no kernel tunnel module is involved. Linux speed-ups
// (recvmmsg/sendmmsg, UDP GSO and GRO) sit in _linux.go files behind Conn.
package tunnel

import (
	"errors"
	"net/netip"

	"github.com/weftnet/weft/vrouter/frame"
)

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("tunnel closed")

// Msg is one underlay datagram, or several of equal size in one buffer.
type Msg struct {
	// F holds the tunnel payload: for UDP encapsulations what follows the
	// UDP header (an MPLS label stack or a VXLAN header, then the inner
	// packet); for GRE what follows the outer IP header (the GRE header).
	F *frame.Frame

	// SegSize > 0 means F holds consecutive datagrams of SegSize bytes
	// each, the last one possibly shorter: on Read the kernel coalesced
	// them (UDP GRO); on Write the kernel is to send them as separate
	// datagrams (UDP GSO). 0 means one datagram.
	SegSize int

	// Addr is the remote vRouter's underlay address: the source on Read,
	// the destination on Write.
	Addr netip.Addr

	// Hash is the inner flow's hash (packet.FiveTuple.Hash) on Write: it
	// picks the UDP source port, so that the fabric spreads flows by ECMP
	// while one flow keeps one path. Ignored by GRE.
	Hash uint64
}

// Conn is the underlay socket of one encapsulation. Like port.Port it is
// batch-oriented:
//
//   - Read blocks until at least one datagram arrived, then fills
//     msgs[0:n] (up to len(msgs), without blocking again) and returns n.
//     Each msgs[i].F must be a frame the caller owns; Read puts the payload
//     at frame.Headroom and sets Len, SegSize and Addr.
//   - Write sends msgs in order and returns how many were sent. It may be
//     called from several goroutines at once. A datagram the kernel refuses
//     for one destination (no route, message too long) is dropped and
//     counted, not an error; the error is for a socket that is gone.
//   - After Close, Read and Write return ErrClosed.
type Conn interface {
	Read(msgs []Msg) (int, error)
	Write(msgs []Msg) (int, error)
	BatchSize() int
	// GSO reports whether Write accepts SegSize > 0 (UDP GSO); when false
	// the caller sends one datagram per Msg.
	GSO() bool
	LocalAddr() netip.AddrPort
	Close() error
}
