package underlay

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
)

// FollowMTU keeps a running vRouter's underlay MTU equal to the MTU of
// the link that carries addr, its underlay address: it follows the link
// (netlink link updates, and every resync) and calls the vRouter's
// SetUnderlay at socket when the link's MTU differs from the vRouter's (a
// DHCP renewal may change it, option 26). It returns when ctx ends. The
// vRouter not answering is not an error: it is asked again at the next
// event or resync. PID 1 runs it beside the vRouter it supervises; `weft
// vrouter --underlay-dev` runs it on an ordinary host.
func FollowMTU(ctx context.Context, log *slog.Logger, addr netip.Addr, socket string, resync time.Duration) {
	w := &mtuWatch{log: log, addr: addr, socket: socket}
	defer w.close()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for ctx.Err() == nil {
		updates := make(chan netlink.LinkUpdate, 16)
		done := make(chan struct{})
		err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) { log.Debug("underlay mtu: link updates", "err", err) },
		})
		if err != nil {
			log.Warn("underlay mtu: no link updates; checking every "+resync.String(), "err", err)
			updates = nil
		}
		w.sync(ctx, true)
		for open := true; open && ctx.Err() == nil; {
			select {
			case <-ctx.Done():
			case u, ok := <-updates:
				if !ok {
					open = false // resubscribe
					break
				}
				if int(u.Attrs().MTU) != w.known {
					w.sync(ctx, false)
				}
			case <-tick.C:
				w.sync(ctx, true)
				if updates == nil {
					open = false // try to subscribe again
				}
			}
		}
		close(done)
	}
}

// mtuWatch is FollowMTU's state.
type mtuWatch struct {
	log     *slog.Logger
	addr    netip.Addr
	socket  string
	vr      *client.Client
	known   int // the vRouter's underlay MTU as last seen; 0 when not known
	refused int // a link MTU the vRouter refused: not asked again
}

// sync pushes the link's MTU to the vRouter if it differs; ask reads the
// vRouter's MTU first instead of trusting what was last seen.
func (w *mtuWatch) sync(ctx context.Context, ask bool) {
	name, mtu, err := linkOfAddr(w.addr)
	if err != nil {
		w.log.Debug("underlay mtu: link", "underlay", w.addr, "err", err)
		return
	}
	if (!ask && mtu == w.known) || mtu == w.refused {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if w.vr == nil {
		if w.vr, err = client.Dial(ctx, w.socket); err != nil {
			w.log.Debug("underlay mtu: vrouter not answering", "err", err)
			return
		}
	}
	if ask || w.known == 0 {
		info, err := w.vr.Info(ctx, &vrouterv1.InfoRequest{})
		if err != nil {
			w.log.Debug("underlay mtu: vrouter info", "err", err)
			w.close()
			return
		}
		w.known = int(info.GetUnderlay().GetMtu())
	}
	if mtu == w.known {
		return
	}
	endpoint, err := w.vr.SetUnderlayMTU(ctx, mtu)
	if err != nil {
		if status.Code(err) == codes.InvalidArgument {
			w.refused = mtu
			w.log.Warn("underlay mtu: the vrouter refused the link's mtu; endpoints keep theirs", "link", name, "mtu", mtu, "err", err)
			return
		}
		w.log.Warn("underlay mtu: telling the vrouter", "link", name, "mtu", mtu, "err", err)
		w.close()
		return
	}
	w.log.Info("underlay mtu changed; the vrouter follows", "link", name, "mtu", mtu, "was", w.known, "endpoint_mtu", endpoint)
	w.known = mtu
}

func (w *mtuWatch) close() {
	if w.vr != nil {
		w.vr.Close()
		w.vr, w.known = nil, 0
	}
}

// linkOfAddr returns the name and MTU of the link that has addr.
func linkOfAddr(addr netip.Addr) (string, int, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", 0, fmt.Errorf("addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", 0, fmt.Errorf("link %d: %w", a.LinkIndex, err)
			}
			return l.Attrs().Name, l.Attrs().MTU, nil
		}
	}
	return "", 0, fmt.Errorf("no link has %s", addr)
}
