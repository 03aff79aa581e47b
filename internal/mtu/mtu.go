// Package mtu holds the underlay MTU limits, the one definition that
// config (weft.yaml, network_data.json), the DHCP servers' option 26 and
// the vRouter, which may import neither config nor each other, share.
package mtu

// 576 is the datagram every IPv4 host must take (RFC 791), and the
// smallest underlay MTU the vRouter's data plane runs on; 65535 is the
// largest an IPv4 packet, a DHCP option 26 and a Linux link can express.
// What a NIC really carries is its driver's to refuse.
const (
	Min = 576
	Max = 65535
)

// LinkMin is the smallest MTU of a workload's link: RFC 791's 68, the
// least DHCP option 26 may carry (RFC 2132). An endpoint's MTU is the
// underlay's less the tunnel overhead, so it may be below Min.
const LinkMin = 68
