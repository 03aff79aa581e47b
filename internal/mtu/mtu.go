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
