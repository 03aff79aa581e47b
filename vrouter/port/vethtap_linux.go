package port

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/mtu"
	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/vrouter/packet"
)

// VethTAP is an endpoint behind a veth pair, for the in-kernel fast path
// (package vrouter/fastpath): the veth's endpoint side is in cfg.Netns with
// the name, MAC, MTU, addresses and routes a TAP endpoint gets; its host
// side (HostIndex) stays in the caller's namespace, where a BPF program
// forwards what it can and sends the rest to a TAP (TAPIndex) that also
// stays here. The TAP is the Port: the vRouter reads and writes it as it
// reads and writes an endpoint's TAP without the fast path, and what it
// writes is sent on into the endpoint by a BPF program on the TAP.
type VethTAP struct {
	*TAP
	host      string // the host-side veth
	HostIndex int
	TAPIndex  int
	nsPath    string
	ifname    string // the endpoint side's name in nsPath
}

// vethNames are the host-side veth's name and the temporary name of its
// peer before it moves into the endpoint's namespace, from the TAP's.
func vethNames(tap string) (host, peer string) {
	if len(tap) > 13 {
		tap = tap[:13]
	}
	return "fp" + tap, "fq" + tap
}

// CreateVethTAP creates the endpoint cfg describes as a veth pair plus its
// punt TAP (see VethTAP). cfg.Netns must be set: the veth's peer has to be
// in another namespace for the fast path's bpf_redirect_peer.
func CreateVethTAP(cfg TAPConfig) (*VethTAP, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("veth %s: %w", cfg.Name, err)
	}
	if cfg.Netns == "" {
		return nil, fmt.Errorf("veth %s: netns: needed for a veth endpoint", cfg.Name)
	}
	mac := cfg.MAC
	if mac.IsZero() {
		var err error
		if mac, err = randomMAC(); err != nil {
			return nil, fmt.Errorf("veth %s: mac: %w", cfg.Name, err)
		}
	}
	nsPath, err := netnsPath(cfg.Netns)
	if err != nil {
		return nil, fmt.Errorf("veth %s: netns: %w", cfg.Name, err)
	}
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("veth %s: netns %s: %w", cfg.Name, nsPath, err)
	}
	defer target.Close()

	// The punt TAP: no addresses, no routes, in our namespace.
	tap, err := CreateTAP(TAPConfig{Name: cfg.Name, MTU: cfg.MTU})
	if err != nil {
		return nil, err
	}
	tap.mac = mac // the endpoint's: the engine's frames are addressed to it
	host, peer := vethNames(cfg.Name)
	v := &VethTAP{TAP: tap, host: host, nsPath: nsPath, ifname: cfg.NetnsIfname}
	if v.ifname == "" {
		v.ifname = "eth0"
	}
	fail := func(err error) (*VethTAP, error) {
		v.Close()
		return nil, fmt.Errorf("veth %s: %w", cfg.Name, err)
	}
	// A vRouter killed without closing its ports leaves its veth pairs
	// (a TAP goes with its descriptor): the pair of this name is ours.
	// Its endpoint side, if still where cfg puts it, is adopted as it is,
	// so that the endpoint's connections, which the fast path may still
	// be forwarding, see no change; any other is replaced.
	if l, err := netlink.LinkByName(host); err == nil {
		if m, ok, err := adoptVeth(l, &cfg, v.ifname, target, nsPath); ok {
			if err == nil {
				err = disableIPv6(cfg.Name)
			}
			if err != nil {
				return fail(err)
			}
			tap.mac = m
			v.HostIndex, v.TAPIndex = l.Attrs().Index, tapIndex(cfg.Name)
			return v, nil
		}
		if err := netlink.LinkDel(l); err != nil {
			return fail(fmt.Errorf("delete stale veth %s: %w", host, err))
		}
	}
	la := netlink.NewLinkAttrs()
	la.Name = host
	if cfg.MTU > 0 {
		la.MTU = cfg.MTU
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		return fail(fmt.Errorf("add veth %s/%s: %w", host, peer, err))
	}
	// The kernel stack of our namespace must send nothing into the
	// endpoint or to the vRouter through these two devices.
	for _, dev := range []string{host, cfg.Name} {
		if err := disableIPv6(dev); err != nil {
			return fail(err)
		}
	}
	hl, err := netlink.LinkByName(host)
	if err != nil {
		return fail(fmt.Errorf("find %s: %w", host, err))
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return fail(fmt.Errorf("%s: link up: %w", host, err))
	}
	v.HostIndex = hl.Attrs().Index
	tl, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return fail(fmt.Errorf("find %s: %w", cfg.Name, err))
	}
	v.TAPIndex = tl.Attrs().Index
	inside := cfg
	inside.Name = peer
	if err := configureTAP(&inside, mac, target, nsPath); err != nil {
		return fail(err)
	}
	return v, nil
}

func disableIPv6(dev string) error {
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6", []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: disable_ipv6: %w", dev, err)
	}
	return nil
}

// tapIndex is the ifindex of the TAP called name, 0 if none.
func tapIndex(name string) int {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

// adoptVeth takes over host, the host side of a veth pair a killed
// vRouter left, when its peer is ifname in the endpoint's namespace
// (ok): it is brought to cfg's MAC (the one in use when cfg has none),
// MTU, addresses and default routes without being taken down. It
// returns the endpoint's MAC.
func adoptVeth(host netlink.Link, cfg *TAPConfig, ifname string, target netns.NsHandle, nsPath string) (mac packet.MAC, ok bool, err error) {
	veth, isVeth := host.(*netlink.Veth)
	if !isVeth {
		return mac, false, nil
	}
	peer, err := netlink.VethPeerIndex(veth)
	if err != nil {
		return mac, false, nil
	}
	var inside *netlink.Handle
	if err := nsexec.DoHandle(target, func() (err error) {
		inside, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	}); err != nil {
		return mac, false, nil
	}
	defer inside.Close()
	l, err := inside.LinkByIndex(peer)
	if err != nil || l.Attrs().Name != ifname {
		return mac, false, nil
	}
	where := "netns " + nsPath + " " + ifname
	copy(mac[:], l.Attrs().HardwareAddr)
	if !cfg.MAC.IsZero() && cfg.MAC != mac {
		if err := inside.LinkSetHardwareAddr(l, net.HardwareAddr(cfg.MAC[:])); err != nil {
			return mac, true, fmt.Errorf("%s: mac %v: %w", where, cfg.MAC, err)
		}
		mac = cfg.MAC
	}
	if cfg.MTU > 0 && l.Attrs().MTU != cfg.MTU {
		if err := inside.LinkSetMTU(l, cfg.MTU); err != nil {
			return mac, true, fmt.Errorf("%s: mtu %d: %w", where, cfg.MTU, err)
		}
		if err := netlink.LinkSetMTU(host, cfg.MTU); err != nil {
			return mac, true, fmt.Errorf("%s: mtu %d: %w", host.Attrs().Name, cfg.MTU, err)
		}
	}
	for i, p := range cfg.Addresses {
		a := &netlink.Addr{IPNet: prefixIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := inside.AddrReplace(l, a); err != nil {
			return mac, true, fmt.Errorf("%s: addresses[%d] %v: %w", where, i, p, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return mac, true, fmt.Errorf("%s: link up: %w", host.Attrs().Name, err)
	}
	if err := inside.LinkSetUp(l); err != nil {
		return mac, true, fmt.Errorf("%s: link up: %w", where, err)
	}
	for i, gw := range cfg.Gateways {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: prefixIPNet(dst), Gw: net.IP(gw.AsSlice()), Flags: int(netlink.FLAG_ONLINK)}
		if err := inside.RouteReplace(r); err != nil {
			return mac, true, fmt.Errorf("%s: gateways[%d] default route via %v: %w", where, i, gw, err)
		}
	}
	return mac, true, nil
}

var _ MTUSetter = (*VethTAP)(nil)

// SetMTU implements MTUSetter on the endpoint's side of the veth, then
// the host side and the TAP.
func (v *VethTAP) SetMTU(n, gsoMaxSegs int) error {
	if n < mtu.LinkMin || n > mtu.Max || gsoMaxSegs < 0 || gsoMaxSegs > 65535 {
		return fmt.Errorf("veth %s: mtu %d / gso_max_segs %d out of range", v.name, n, gsoMaxSegs)
	}
	ns, err := netns.GetFromPath(v.nsPath)
	if err != nil {
		return fmt.Errorf("veth %s: netns %s: %w", v.name, v.nsPath, err)
	}
	defer ns.Close()
	err = nsexec.DoHandle(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(v.ifname)
		if err != nil {
			return err
		}
		if gsoMaxSegs > 0 {
			if err := h.LinkSetGSOMaxSegs(l, gsoMaxSegs); err != nil {
				return fmt.Errorf("gso_max_segs %d: %w", gsoMaxSegs, err)
			}
		}
		return h.LinkSetMTU(l, n)
	})
	if err != nil {
		return fmt.Errorf("veth %s: netns %s %s: %w", v.name, v.nsPath, v.ifname, err)
	}
	if l, err := netlink.LinkByName(v.host); err == nil {
		if err := netlink.LinkSetMTU(l, n); err != nil {
			return fmt.Errorf("veth %s: mtu %d: %w", v.host, n, err)
		}
	}
	return v.TAP.SetMTU(n, 0)
}

// Close removes the veth pair (both ends) and the TAP.
func (v *VethTAP) Close() error {
	var errs []error
	if l, err := netlink.LinkByName(v.host); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("veth %s: delete: %w", v.host, err))
		}
	}
	errs = append(errs, v.TAP.Close())
	return errors.Join(errs...)
}
