package pid1

import (
	"net/netip"
	"time"

	"github.com/weftnet/weft/init/underlay"
	"github.com/weftnet/weft/vrouter/client"
)

// underlayMTUResync is how often the watcher compares the vRouter's
// underlay MTU with the link's even without a link event: a vRouter the
// supervisor restarted came up with the MTU of its command line.
const underlayMTUResync = 10 * time.Second

// followUnderlayMTU starts the watcher that keeps the vRouter's underlay
// MTU equal to the MTU of the link carrying addr, the vRouter's underlay
// address (a DHCP renewal may change it, option 26).
func (n *node) followUnderlayMTU(addr netip.Addr) {
	n.keeper.loop("underlay-mtu", func() {
		underlay.FollowMTU(n.ctx, n.log, addr, client.DefaultSocket, underlayMTUResync)
	})
}
