package tunnel

import "sync/atomic"

// Stats are a Conn's counters since it was opened. Datagrams are wire
// datagrams: a GRO read or a GSO send of n segments counts n. Bytes are
// tunnel payload bytes (what Msg.F holds), without outer IP/UDP headers.
type Stats struct {
	DatagramsIn, BytesIn   uint64
	DatagramsOut, BytesOut uint64

	// GROReads counts messages Read returned with SegSize > 0 (several
	// datagrams the kernel coalesced).
	GROReads uint64
	// GSOSends counts sends handed to the kernel with UDP_SEGMENT.
	GSOSends uint64
	// GSOSplit counts messages with SegSize > 0 that Write cut into
	// datagrams itself because GSO is off or unavailable.
	GSOSplit uint64
	// GSOFallback counts kernel refusals of GSO (EIO: the route's device
	// cannot checksum, or IPsec) after which Write stopped using it.
	GSOFallback uint64

	Drops Drops
}

// Drops counts what a Conn dropped, by reason. A send the kernel refused
// counts once, even a GSO send of several segments.
type Drops struct {
	// Receive.
	Truncated   uint64 // larger than the frame buffer (MSG_TRUNC, MSG_CTRUNC)
	ShortHeader uint64 // GRE over IPv4: outer header cut short
	BadHeader   uint64 // GRE over IPv4: outer header malformed (version, IHL, total length, protocol)
	Fragment    uint64 // GRE over IPv4: an outer fragment (the kernel reassembles; defensive)
	BadSource   uint64 // source address of an unexpected family or length
	RecvErrors  uint64 // errors the socket reported on receive (a pending ICMP error), skipped
	// Overflow is the kernel's drop count for the receive socket (full
	// buffer, bad checksum), from SO_RXQ_OVFL: the highest value seen.
	Overflow uint64

	// Send.
	Invalid     uint64 // Msg without frame, frame bounds wrong, or an address this socket cannot reach
	TooBig      uint64 // EMSGSIZE: larger than an IP datagram, or than the MTU where DF is forced
	GSOTooBig   uint64 // a GSO send whose segments exceed the path MTU (EMSGSIZE, EINVAL)
	Unreachable uint64 // EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN, EADDRNOTAVAIL
	Refused     uint64 // ECONNREFUSED: a pending ICMP port unreachable
	NoBuffer    uint64 // ENOBUFS, ENOMEM
	Denied      uint64 // EPERM, EACCES: a local firewall
	Other       uint64 // any other per-message error
}

// dropReason indexes counters.drops.
type dropReason uint8

const (
	dropNone dropReason = iota
	dropTruncated
	dropShortHeader
	dropBadHeader
	dropFragment
	dropBadSource
	dropRecvError
	dropInvalid
	dropTooBig
	dropGSOTooBig
	dropUnreachable
	dropRefused
	dropNoBuffer
	dropDenied
	dropOther
	numDropReasons
)

// counters are updated with atomics, once per batch where possible, so
// the fast path takes no lock and the counts cost a few adds per syscall.
type counters struct {
	dgramsIn, bytesIn   atomic.Uint64
	dgramsOut, bytesOut atomic.Uint64
	groReads            atomic.Uint64
	gsoSends            atomic.Uint64
	gsoSplit            atomic.Uint64
	gsoFallback         atomic.Uint64
	overflow            atomic.Uint64
	drops               [numDropReasons]atomic.Uint64
}

func (c *counters) drop(r dropReason) { c.drops[r].Add(1) }

// seenOverflow records the kernel's cumulative drop count if it grew.
func (c *counters) seenOverflow(v uint64) {
	for {
		old := c.overflow.Load()
		if v <= old || c.overflow.CompareAndSwap(old, v) {
			return
		}
	}
}

func (c *counters) snapshot() Stats {
	d := func(r dropReason) uint64 { return c.drops[r].Load() }
	return Stats{
		DatagramsIn:  c.dgramsIn.Load(),
		BytesIn:      c.bytesIn.Load(),
		DatagramsOut: c.dgramsOut.Load(),
		BytesOut:     c.bytesOut.Load(),
		GROReads:     c.groReads.Load(),
		GSOSends:     c.gsoSends.Load(),
		GSOSplit:     c.gsoSplit.Load(),
		GSOFallback:  c.gsoFallback.Load(),
		Drops: Drops{
			Truncated:   d(dropTruncated),
			ShortHeader: d(dropShortHeader),
			BadHeader:   d(dropBadHeader),
			Fragment:    d(dropFragment),
			BadSource:   d(dropBadSource),
			RecvErrors:  d(dropRecvError),
			Overflow:    c.overflow.Load(),
			Invalid:     d(dropInvalid),
			TooBig:      d(dropTooBig),
			GSOTooBig:   d(dropGSOTooBig),
			Unreachable: d(dropUnreachable),
			Refused:     d(dropRefused),
			NoBuffer:    d(dropNoBuffer),
			Denied:      d(dropDenied),
			Other:       d(dropOther),
		},
	}
}
