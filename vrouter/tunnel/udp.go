package tunnel

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// Well-known destination ports of the UDP encapsulations.
const (
	PortMPLSoUDP = 6635 // RFC 7510
	PortVXLAN    = 4789 // RFC 7348
)

// Defaults and limits of UDPConfig.
const (
	DefaultSendSockets = 16
	DefaultBatch       = 64
	// DefaultSourcePortBase is where the send sockets' source ports start:
	// inside the dynamic range 49152-65535 that RFC 7510 section 3 and
	// RFC 7348 section 5 recommend for the entropy-carrying source port,
	// and above Linux's default ephemeral range (32768-60999), so that
	// client sockets rarely hold them and a restarted vRouter gets the same
	// ports back.
	DefaultSourcePortBase = 61000

	maxSendSockets = 1024
	maxBatch       = 1024 // UIO_MAXIOV: the kernel's limit on vlen for sendmmsg/recvmmsg
)

// UDPConfig configures ListenUDP.
type UDPConfig struct {
	// Listen is the receive socket's address, e.g. 0.0.0.0:6635 or a
	// specific underlay address; remote vRouters send to this port. Its
	// family decides the underlay: an IPv4 address (0.0.0.0 included) is
	// IPv4 only, a specific IPv6 address IPv6 only, and [::] is
	// dual-stack (IPv4 peers appear as plain IPv4 addresses in Msg.Addr).
	Listen netip.AddrPort

	// RemotePort is the destination port of datagrams we send (6635,
	// 4789); 0 means Listen's port.
	RemotePort uint16

	// SendSockets is how many sockets, each bound to its own source port,
	// carry the flow hash to the fabric (default 16). Msg.Hash picks one.
	SendSockets int

	// SourcePortBase is the first source port tried for the send sockets
	// (default DefaultSourcePortBase). Socket i gets the i-th free port
	// from there up to 65535; ports in use are skipped, and should the
	// range run out the kernel picks ephemeral ones. UDPConn.SourcePorts
	// tells which were bound.
	SourcePortBase uint16

	// Batch is the number of messages per recvmmsg/sendmmsg (default 64,
	// at most 1024).
	Batch int

	// NoGRO and NoGSO turn the UDP offloads off (benchmark baselines, old
	// kernels). Without GSO, Write still accepts Msg.SegSize > 0 and cuts
	// the message into datagrams itself.
	NoGRO, NoGSO bool
}

// withDefaults checks cfg and fills in its defaults.
func (cfg UDPConfig) withDefaults() (UDPConfig, error) {
	if !cfg.Listen.Addr().IsValid() {
		return cfg, fmt.Errorf("listen address %v is not valid", cfg.Listen)
	}
	switch {
	case cfg.SendSockets < 0 || cfg.SendSockets > maxSendSockets:
		return cfg, fmt.Errorf("send sockets %d out of range 1-%d", cfg.SendSockets, maxSendSockets)
	case cfg.SendSockets == 0:
		cfg.SendSockets = DefaultSendSockets
	}
	switch {
	case cfg.Batch < 0 || cfg.Batch > maxBatch:
		return cfg, fmt.Errorf("batch %d out of range 1-%d", cfg.Batch, maxBatch)
	case cfg.Batch == 0:
		cfg.Batch = DefaultBatch
	}
	if cfg.SourcePortBase == 0 {
		cfg.SourcePortBase = DefaultSourcePortBase
	}
	if cfg.RemotePort == 0 {
		cfg.RemotePort = cfg.Listen.Port()
	}
	return cfg, nil
}

// encapName names the encapsulation of a UDP port in errors.
func encapName(port uint16) string {
	switch port {
	case PortMPLSoUDP:
		return "mplsoudp"
	case PortVXLAN:
		return "vxlan"
	}
	return "udp tunnel"
}

// pickSocket maps a flow hash to one of n send sockets. It takes the high
// bits of hash*n (Lemire's range reduction): no division, evenly spread
// for a well-mixed hash, and the same answer for the same hash and n, so a
// flow keeps its source port for the life of the process and, with the
// same ports bound, across restarts.
func pickSocket(hash uint64, n int) int {
	hi, _ := bits.Mul64(hash, uint64(n))
	return int(hi)
}
