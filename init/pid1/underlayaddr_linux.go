package pid1

import (
	"net/netip"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/underlay"
)

// underlayAddr chooses the vRouter's underlay address and MTU from the
// config's BGP controllers (see underlay.BindAddr).
func underlayAddr(cfg *config.Config) (netip.Addr, int, error) {
	var controllers []netip.Addr
	if cfg != nil && cfg.BGP != nil {
		for _, c := range cfg.BGP.Controllers {
			controllers = append(controllers, c.Address)
		}
	}
	return underlay.BindAddr("", controllers)
}
