package pid1

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/config"
)

// underlayAddr chooses the vRouter's underlay address and MTU: the source
// address and interface the kernel routes the first BGP controller
// through (a route lookup; nothing is sent), else the first global IPv4
// address of an interface that is up. The tunnels are bound to it and the
// agent advertises it as its routes' next hop.
func underlayAddr(cfg *config.Config) (netip.Addr, int, error) {
	if cfg != nil && cfg.BGP != nil {
		for _, c := range cfg.BGP.Controllers {
			routes, err := netlink.RouteGet(c.Address.AsSlice())
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
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, 0, err
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(n.IP)
			if ip = ip.Unmap(); ip.Is4() && ip.IsGlobalUnicast() {
				return ip, ifc.MTU, nil
			}
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("no underlay address: no route to a controller and no IPv4 address on any interface")
}
