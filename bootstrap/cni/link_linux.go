package cni

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// linkInfo is what the plugin reads of the interface in the sandbox.
type linkInfo struct {
	MAC       net.HardwareAddr
	MTU       int
	Addresses []netip.Prefix
}

// readLink reads interface ifName in the namespace at netnsPath.
func readLink(netnsPath, ifName string) (linkInfo, error) {
	var li linkInfo
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifName, err)
		}
		li.MAC, li.MTU = l.Attrs().HardwareAddr, l.Attrs().MTU
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("interface %s: addresses: %w", ifName, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			bits, _ := a.Mask.Size()
			li.Addresses = append(li.Addresses, netip.PrefixFrom(ip.Unmap(), bits))
		}
		return nil
	})
	if err != nil {
		return li, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	return li, nil
}
