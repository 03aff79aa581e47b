package openstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TapName is the host netdev Nova's libvirt driver creates for a port
// whose binding is vif_type tap: "tap" and the port ID's first 11
// characters (nova.network.model.VIF's devname, 14 bytes).
func TapName(portID string) string {
	if len(portID) > 11 {
		portID = portID[:11]
	}
	return "tap" + portID
}

// netlinkLinks reads the netdevs of one namespace: the compute host's,
// where libvirt creates the taps and the vRouter runs.
type netlinkLinks struct {
	ns  netns.NsHandle // the namespace; -1 = the caller's
	nl  *netlink.Handle
	log *slog.Logger
}

// HostLinks reads the netdevs of the namespace ns (a handle the caller
// keeps open), or of the process's own when ns is -1 (netns.None()).
func HostLinks(ns netns.NsHandle, log *slog.Logger) (Links, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &netlinkLinks{ns: ns, nl: h, log: log}, nil
}

func (l *netlinkLinks) Present(name string) (bool, error) {
	_, err := l.nl.LinkByName(name)
	if err == nil {
		return true, nil
	}
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, nil
	}
	return false, fmt.Errorf("netlink: link %s: %w", name, err)
}

// Changes signals each tap that appears or goes (RTM_NEWLINK and
// RTM_DELLINK of a "tap…" netdev), coalesced: one pending signal at most.
// It ends with ctx.
func (l *netlinkLinks) Changes(ctx context.Context) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) { l.log.Debug("openstack: tap events", "err", err) }}
	if l.ns.IsOpen() {
		opts.Namespace = &l.ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("netlink: link events: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if strings.HasPrefix(u.Attrs().Name, "tap") {
					select {
					case out <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return out, nil
}
