package dataplane

import (
	"errors"

	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// txq collects what one receive loop forwards during one batch, per
// destination, and writes each destination's share in one call. It
// belongs to its loop; nothing in it is shared.
type txq struct {
	e     *Engine
	ports []portQueue
	tun   [encapSlots][]tunnel.Msg
	small pool // replies, ICMP errors, segments for encapsulations without GSO
	big   pool // contiguous segment trains for UDP GSO
	segs  []*frame.Frame
}

type portQueue struct {
	ps     *portState
	frames []*frame.Frame
}

// pool is a fixed set of scratch frames, handed out in order and all
// returned by reset (after a flush). Buffers are made on first use, so a
// quiet port costs no memory for them.
type pool struct {
	frames []*frame.Frame
	used   int
	size   int // buffer size
	limit  int
}

func (p *pool) get() *frame.Frame {
	if p.used == p.limit {
		return nil
	}
	if p.used == len(p.frames) {
		p.frames = append(p.frames, &frame.Frame{Buf: make([]byte, p.size)})
	}
	f := p.frames[p.used]
	p.used++
	f.Reset()
	f.Port = 0
	return f
}

// bigBufSize fits one UDP GSO train (see encapGSO).
const bigBufSize = frame.Headroom + maxUDPPayload + 64

// smallBufSize fits one segment or reply up to a 9 KiB jumbo MTU.
const smallBufSize = frame.Headroom + 9216 + 128

func newTxq(e *Engine) *txq {
	return &txq{
		e:     e,
		small: pool{size: smallBufSize, limit: 256},
		big:   pool{size: bigBufSize, limit: 16},
	}
}

// scratch returns a small frame, flushing first when all are in use.
func (q *txq) scratch() *frame.Frame {
	if f := q.small.get(); f != nil {
		return f
	}
	q.flush()
	return q.small.get()
}

// bigScratch returns a big frame, flushing first when all are in use.
func (q *txq) bigScratch() *frame.Frame {
	if f := q.big.get(); f != nil {
		return f
	}
	q.flush()
	return q.big.get()
}

func (q *txq) toPort(ps *portState, f *frame.Frame) {
	for i := range q.ports {
		if q.ports[i].ps == ps {
			q.ports[i].frames = append(q.ports[i].frames, f)
			return
		}
	}
	q.ports = append(q.ports, portQueue{ps: ps, frames: append(q.freeFrames(), f)})
}

// freeFrames reuses the backing array of a flushed queue.
func (q *txq) freeFrames() []*frame.Frame {
	n := len(q.ports)
	if n < cap(q.ports) {
		if fs := q.ports[:n+1][n].frames; fs != nil {
			return fs[:0]
		}
	}
	return nil
}

func (q *txq) toTunnel(slot int, m tunnel.Msg) {
	q.tun[slot] = append(q.tun[slot], m)
}

// flush writes everything queued and makes the scratch frames reusable.
func (q *txq) flush() {
	for i := range q.ports {
		pq := &q.ports[i]
		n, err := pq.ps.io.Write(pq.frames)
		var bytes uint64
		for _, f := range pq.frames[:max(0, n)] {
			bytes += uint64(f.Len)
		}
		pq.ps.c.txPackets.Add(uint64(n))
		pq.ps.c.txBytes.Add(bytes)
		if n < len(pq.frames) {
			lost := uint64(len(pq.frames) - max(0, n))
			pq.ps.c.drops.Add(lost)
			q.e.drops[DropTxError].Add(lost)
			if err != nil && !errors.Is(err, port.ErrClosed) {
				q.e.log.Debug("port write", "port", pq.ps.cfg.Name, "err", err)
			}
		}
		clear(pq.frames)
		pq.frames = pq.frames[:0]
	}
	// Keep the queues' arrays (freeFrames reuses them) but drop the ports.
	for i := range q.ports {
		q.ports[i].ps = nil
	}
	q.ports = q.ports[:0]
	for slot := range q.tun {
		msgs := q.tun[slot]
		if len(msgs) == 0 {
			continue
		}
		c := q.e.tun[slot]
		n := 0
		var err error
		if c != nil {
			n, err = c.Write(msgs)
		}
		q.e.tunTx[slot].Add(uint64(max(0, n)))
		if n < len(msgs) {
			q.e.drops[DropTxError].Add(uint64(len(msgs) - max(0, n)))
			if err != nil && !errors.Is(err, tunnel.ErrClosed) {
				q.e.log.Debug("tunnel write", "encap", slot, "err", err)
			}
		}
		clear(msgs)
		q.tun[slot] = msgs[:0]
	}
	q.small.used = 0
	q.big.used = 0
}
