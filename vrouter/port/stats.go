package port

import (
	"sync/atomic"
)

// DropReason says why a frame was dropped on its way in or out of a port.
type DropReason uint8

const (
	// DropKernel: the kernel dropped frames on their way to us, mostly
	// because its queue was full while we did not read (a TAP's
	// tx_dropped, an AF_PACKET socket's tp_drops).
	DropKernel DropReason = iota
	// DropRxTruncated: a frame longer than the buffer (AF_PACKET
	// MSG_TRUNC, a TAP read that returned more than fitted).
	DropRxTruncated
	// DropRxBadOffload: the kernel's virtio-net header cannot be
	// represented as an Offload (unknown gso type, offsets past the frame).
	DropRxBadOffload
	// DropTxBadFrame: the frame's Off/Len lie outside its buffer, or its
	// length is outside 14..frame.MaxLen.
	DropTxBadFrame
	// DropTxBadOffload: the Offload is inconsistent (checked before the
	// system call, see checkOffload).
	DropTxBadOffload
	// DropTxRefused: the kernel refused the frame (EINVAL: an offload it
	// rejects, such as a csum_offset that is not the protocol's).
	DropTxRefused
	// DropTxTooBig: longer than the device takes without GSO (EMSGSIZE).
	DropTxTooBig
	// DropTxNoBuffer: the device's queue or memory was full (ENOBUFS,
	// ENOMEM).
	DropTxNoBuffer
	// DropTxLinkDown: the netdev is down (ENETDOWN, EIO).
	DropTxLinkDown

	// NumDropReasons is the number of reasons, the length of Stats.Drops.
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropKernel:       "kernel",
	DropRxTruncated:  "rx_truncated",
	DropRxBadOffload: "rx_bad_offload",
	DropTxBadFrame:   "tx_bad_frame",
	DropTxBadOffload: "tx_bad_offload",
	DropTxRefused:    "tx_refused",
	DropTxTooBig:     "tx_too_big",
	DropTxNoBuffer:   "tx_no_buffer",
	DropTxLinkDown:   "tx_link_down",
}

// String is the reason's stable metric label.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats are a port's counters since it was opened. Bytes count Ethernet
// frame data (a GSO super-frame counts once, with all its bytes),
// not the virtio-net header.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// RxGSO and TxGSO count the super-frames among the packets.
	RxGSO, TxGSO uint64
	// Drops holds frames dropped, by reason (index with a DropReason).
	Drops [NumDropReasons]uint64
}

// Dropped is the total of all drop reasons.
func (s *Stats) Dropped() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// counters are updated once per Read or Write call, from sums the call
// kept in locals, so the fast path costs a few atomic adds per batch and
// takes no lock. The rx and tx halves sit on separate cache lines: one
// goroutine reads while others write.
type counters struct {
	rxPackets, rxBytes, rxGSO atomic.Uint64
	_                         [64]byte
	txPackets, txBytes, txGSO atomic.Uint64
	_                         [64]byte
	drops                     [NumDropReasons]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(), RxGSO: c.rxGSO.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(), TxGSO: c.txGSO.Load(),
	}
	for i := range s.Drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}

// batchCount is what one Read or Write call sums before adding it to the
// port's counters.
type batchCount struct {
	packets, bytes, gso uint64
	drops               [NumDropReasons]uint32
	anyDrop             bool
}

func (b *batchCount) frame(n int, gso bool) {
	b.packets++
	b.bytes += uint64(n)
	if gso {
		b.gso++
	}
}

func (b *batchCount) drop(r DropReason) {
	b.drops[r]++
	b.anyDrop = true
}

func (c *counters) addRx(b *batchCount) {
	if b.packets > 0 {
		c.rxPackets.Add(b.packets)
		c.rxBytes.Add(b.bytes)
		if b.gso > 0 {
			c.rxGSO.Add(b.gso)
		}
	}
	c.addDrops(b)
}

func (c *counters) addTx(b *batchCount) {
	if b.packets > 0 {
		c.txPackets.Add(b.packets)
		c.txBytes.Add(b.bytes)
		if b.gso > 0 {
			c.txGSO.Add(b.gso)
		}
	}
	c.addDrops(b)
}

func (c *counters) addDrops(b *batchCount) {
	if !b.anyDrop {
		return
	}
	for i, d := range b.drops {
		if d > 0 {
			c.drops[i].Add(uint64(d))
		}
	}
}
