package config

import (
	"fmt"

	"github.com/weftnet/weft/internal/mtu"
)

// The underlay MTU limits, one set for every place an underlay MTU comes
// from: weft.yaml, network_data.json and DHCP option 26 (see package mtu,
// which the DHCP servers share with config).
const (
	MinMTU = mtu.Min
	MaxMTU = mtu.Max
)

// CheckMTU says whether mtu is within the underlay limits. 0 is not: where
// 0 means "unset", the caller tests for it first.
func CheckMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("%d is out of range %d..%d", mtu, MinMTU, MaxMTU)
	}
	return nil
}
