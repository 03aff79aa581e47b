package flow

import (
	"sync/atomic"

	"github.com/weftnet/weft/vrouter/packet"
)

// Bits of Entry.state: what the entry's direction has sent (TCP), and
// whether it is a reverse entry (set before the entry is published, never
// changed).
const (
	stFIN     = 1
	stRST     = 2
	stTCP     = stFIN | stRST
	stReverse = 4
)

// Entry is one direction of a cached flow. Its methods may be called at
// any time, also on an entry the table has since dropped; the values are
// updated with atomics while packets flow.
//
// The layout is two cache lines (an Entry is 128 bytes and a pair 256, so
// the allocator aligns them): the first holds what a cached decision reads
// and writes, the second what a lookup compares. A hit touches those two
// lines and the slot, nothing else.
type Entry struct {
	dec     atomic.Pointer[decision] // usually &d0
	packets atomic.Uint64
	bytes   atomic.Uint64
	last    atomic.Int64
	d0      decision // the first decision, in place, so a miss allocates once
	state   atomic.Uint32
	vrf     uint32

	tuple packet.FiveTuple
	peer  *Entry // the other direction of an allowed flow; nil for a denied one
}

// pair holds both directions of an allowed flow in one allocation.
type pair struct{ fwd, rev Entry }

// Allowed reports the cached decision. After a policy change it is the
// decision of the old policy until the flow's next packet re-decides it.
func (e *Entry) Allowed() bool { return e.dec.Load().allowed }

// Rule is the ID of the rule that allowed the flow (for a reverse entry,
// the rule that allowed its forward flow); 0 when denied.
func (e *Entry) Rule() uint32 { return e.dec.Load().rule }

// Networks are the source and destination networks of the entry's
// direction, as given to the Decide that cached it.
func (e *Entry) Networks() (src, dst uint32) {
	d := e.dec.Load()
	return d.srcNet, d.dstNet
}

// Reverse reports an entry created as the reply direction of an allowed
// flow, not by a packet of its own.
func (e *Entry) Reverse() bool { return e.state.Load()&stReverse != 0 }

// Key is the entry's key.
func (e *Entry) Key() Key { return Key{VRF: e.vrf, Tuple: e.tuple} }

// Packets is the number of packets decided by this entry.
func (e *Entry) Packets() uint64 { return e.packets.Load() }

// Bytes is the sum of the bytes given with those packets.
func (e *Entry) Bytes() uint64 { return e.bytes.Load() }

// LastSeen is the now of the entry's latest packet (0 for a reverse entry
// no reply has used yet).
func (e *Entry) LastSeen() int64 { return e.last.Load() }

// Closing reports a TCP flow that has seen an RST, or a FIN each way, and
// ages with Config.ClosingTimeout.
func (e *Entry) Closing() bool {
	st := e.state.Load() & stTCP
	if e.peer == nil {
		return st != 0
	}
	ps := e.peer.state.Load() & stTCP
	return (st|ps)&stRST != 0 || st&ps&stFIN != 0
}

func (e *Entry) account(bytes int, now int64, tcpFlags uint8) {
	e.packets.Add(1)
	if bytes > 0 {
		e.bytes.Add(uint64(bytes))
	}
	// Load first: packets of one batch share now, and a store per packet
	// would keep the line dirty for nothing. Two goroutines racing may leave
	// the older of two close stamps; ageing does not care.
	if e.last.Load() < now {
		e.last.Store(now)
	}
	if tcpFlags&(packet.TCPFlagFIN|packet.TCPFlagSYN|packet.TCPFlagRST) != 0 && e.tuple.Proto == packet.ProtoTCP {
		e.tcpFlags(tcpFlags)
	}
}

func (e *Entry) tcpFlags(f uint8) {
	switch {
	case f&packet.TCPFlagRST != 0:
		e.state.Or(stRST)
	case f&(packet.TCPFlagSYN|packet.TCPFlagACK) == packet.TCPFlagSYN:
		// A new connection on a tuple that was closing (the client reused
		// its port): it must not age on the closing timeout.
		if e.state.Load()&stTCP != 0 {
			e.state.And(^uint32(stTCP))
		}
		if p := e.peer; p != nil && p.state.Load()&stTCP != 0 {
			p.state.And(^uint32(stTCP))
		}
	case f&packet.TCPFlagFIN != 0:
		if e.state.Load()&stFIN == 0 {
			e.state.Or(stFIN)
		}
	}
}
