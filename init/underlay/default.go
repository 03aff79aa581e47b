package underlay

import (
	"errors"
	"net"

	"github.com/weftnet/weft/config"
)

// defaultUnderlay is DefaultUnderlay on a given set of host links: DHCP on
// the NIC the firmware booted from when BOOTIF names it (it may not be
// there yet: Apply waits for it), else DHCP on every physical NIC.
func defaultUnderlay(bootif net.HardwareAddr, host []hostLink) (config.Underlay, error) {
	if len(bootif) > 0 {
		return config.Underlay{
			Links:  []config.Link{{ID: "bootif", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: bootif}, DHCP4: true}},
			Source: "default: DHCP on BOOTIF " + bootif.String(),
		}, nil
	}
	u := config.Underlay{Source: "default: DHCP on every NIC"}
	for _, h := range host {
		if !h.Phys || h.Loopback || upperKinds[h.Kind] || h.Master != "" {
			continue
		}
		l := config.Link{ID: h.Name, Kind: config.LinkPhy, DHCP4: true}
		if isZeroMAC(h.MAC) {
			l.Match.Name = h.Name
		} else {
			l.Match.MAC = h.MAC
		}
		u.Links = append(u.Links, l)
	}
	if len(u.Links) == 0 {
		return u, errors.New("no NIC found (no physical network device; is its driver loaded?)")
	}
	return u, nil
}

func isZeroMAC(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
