package config

import "fmt"

// The underlay MTU limits, one set for every place an underlay MTU comes
// from: weft.yaml, network_data.json and DHCP option 26. 576 is the
// datagram every IPv4 host must take (RFC 791), and the smallest underlay
// MTU the vRouter's data plane runs on; 65535 is the largest an IPv4
// packet, a DHCP option 26 and a Linux link can express. What a NIC
// really carries is its driver's to refuse.
const (
	MinMTU = 576
	MaxMTU = 65535
)

// CheckMTU says whether mtu is within the underlay limits. 0 is not: where
// 0 means "unset", the caller tests for it first.
func CheckMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("%d is out of range %d..%d", mtu, MinMTU, MaxMTU)
	}
	return nil
}
