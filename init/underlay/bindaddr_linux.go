package underlay

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// BindAddr chooses the underlay address the vRouter binds its tunnels to
// (the agent advertises it as its routes' next hop) and the MTU of the
// link it is on.
//
// With dev (`weft vrouter --underlay-dev`): that interface's first IPv4
// address, else its first global IPv6 address. Without (PID 1): the source
// address and link the kernel routes the first reachable controller
// through (a route lookup; nothing is sent), else the first global IPv4
// address of an interface that is up.
func BindAddr(dev string, controllers []netip.Addr) (netip.Addr, int, error) {
	if dev != "" {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return netip.Addr{}, 0, err
		}
		addrs, err := interfaceAddrs(*ifc)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("%s: %w", dev, err)
		}
		if a, ok := firstAddr(addrs, netip.Addr.Is4); ok {
			return a, ifc.MTU, nil
		}
		if a, ok := firstAddr(addrs, func(a netip.Addr) bool { return a.Is6() && a.IsGlobalUnicast() }); ok {
			return a, ifc.MTU, nil
		}
		return netip.Addr{}, 0, fmt.Errorf("%s has no usable address yet", dev)
	}
	for _, c := range controllers {
		routes, err := netlink.RouteGet(c.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].Src == nil {
			continue
		}
		src, ok := netip.AddrFromSlice(routes[0].Src)
		if !ok {
			continue
		}
		mtu := 0
		if l, err := netlink.LinkByIndex(routes[0].LinkIndex); err == nil {
			mtu = l.Attrs().MTU
		}
		return src.Unmap(), mtu, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, 0, err
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := interfaceAddrs(ifc)
		if a, ok := firstAddr(addrs, func(a netip.Addr) bool { return a.Is4() && a.IsGlobalUnicast() }); ok {
			return a, ifc.MTU, nil
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("no underlay address: no route to a controller and no IPv4 address on any interface")
}

// interfaceAddrs lists the addresses of ifc, IPv4 ones unmapped.
func interfaceAddrs(ifc net.Interface) ([]netip.Addr, error) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func firstAddr(addrs []netip.Addr, want func(netip.Addr) bool) (netip.Addr, bool) {
	for _, a := range addrs {
		if want(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}
