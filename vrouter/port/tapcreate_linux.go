package port

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nsexec"
	"github.com/weftnet/weft/vrouter/packet"
)

// TAPConfig is a TAP port the vRouter creates for an endpoint.
type TAPConfig struct {
	// Name is the host-side name (at most 15 bytes), created in the
	// caller's network namespace; Port.Name returns it.
	Name string
	// Netns is where the endpoint lives: "" keeps the device in the
	// caller's namespace; a name means /run/netns/<name>; a path
	// (/proc/<pid>/ns/net, /var/run/netns/x as CNI gives it) is used as is.
	Netns string
	// NetnsIfname is the device's name inside Netns: "" means "eth0" when
	// Netns is set, else Name (without Netns it must be "" or Name).
	NetnsIfname string
	// MAC is the endpoint's MAC, set on the device; zero picks a random
	// locally administered unicast address.
	MAC packet.MAC
	// MTU is set on the device; 0 leaves the kernel's default (1500).
	MTU int
	// Addresses are assigned inside (IPv6 without DAD).
	Addresses []netip.Prefix
	// Gateways, at most one per family: a default route via each, on-link,
	// inside. DefaultGateways gives the usual ones.
	Gateways []netip.Addr
	// GSOMaxSegs, when not 0, caps the segments of the GSO super-frames
	// the endpoint's stack sends into the device (gso_max_segs), so that
	// each fits one UDP GSO send of the tunnel it leaves by (see
	// dataplane.Engine.TrainSegments); 0 leaves the kernel's default.
	GSOMaxSegs int
}

// Offloads asked of every TAP (TUNSETOFFLOAD): partial checksums, TSO for
// both families (TSO_ECN too, so that a super-frame with CWR set is not
// cut up by the kernel; the ECN bit is translated, see decodeVnet), and
// UDP segmentation where the kernel has it (Linux 6.2+, both or neither).
const (
	tapOffloads    = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tapOffloadsUSO = tapOffloads | unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// CreateTAP creates the device, moves it into cfg.Netns and configures it
// there (name, MAC, MTU, addresses, link up, default routes). On any
// failure the device is removed (closing the only file descriptor of a
// non-persistent TAP unregisters it, in whatever namespace it is by then)
// and the error names the step.
func CreateTAP(cfg TAPConfig) (*TAP, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("tap %s: %w", cfg.Name, err)
	}
	mac := cfg.MAC
	if mac.IsZero() {
		var err error
		if mac, err = randomMAC(); err != nil {
			return nil, fmt.Errorf("tap %s: mac: %w", cfg.Name, err)
		}
	}
	// Open the target first: a namespace that is not there must not cost
	// a device.
	target := netns.None()
	var nsPath string
	if cfg.Netns != "" {
		var err error
		if nsPath, err = netnsPath(cfg.Netns); err != nil {
			return nil, fmt.Errorf("tap %s: netns: %w", cfg.Name, err)
		}
		if target, err = netns.GetFromPath(nsPath); err != nil {
			return nil, fmt.Errorf("tap %s: netns %s: %w", cfg.Name, nsPath, err)
		}
		defer target.Close()
	}

	fd, offloads, err := openTAP(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("tap %s: %w", cfg.Name, err)
	}
	file := os.NewFile(uintptr(fd), "tap:"+cfg.Name)
	fail := func(err error) (*TAP, error) {
		file.Close()
		return nil, fmt.Errorf("tap %s: %w", cfg.Name, err)
	}
	if err := configureTAP(&cfg, mac, target, nsPath); err != nil {
		return fail(err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return fail(fmt.Errorf("raw conn: %w", err))
	}
	t := &TAP{name: cfg.Name, mac: mac, offloads: offloads, file: file, rc: rc}
	t.readFn = t.readBatch
	t.txPool.New = func() any {
		s := &tapTx{t: t}
		s.fn = s.run
		return s
	}
	return t, nil
}

func (c *TAPConfig) check() error {
	if err := checkIfname(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if c.NetnsIfname != "" {
		if err := checkIfname(c.NetnsIfname); err != nil {
			return fmt.Errorf("netnsIfname: %w", err)
		}
		if c.Netns == "" && c.NetnsIfname != c.Name {
			return fmt.Errorf("netnsIfname: %q without netns, want %q or empty", c.NetnsIfname, c.Name)
		}
	}
	if c.MAC.IsMulticast() {
		return fmt.Errorf("mac: %v is a group address", c.MAC)
	}
	if c.MTU < 0 || c.MTU > 65535 || (c.MTU > 0 && c.MTU < 68) {
		return fmt.Errorf("mtu: %d, want 0 or 68..65535", c.MTU)
	}
	if c.GSOMaxSegs < 0 || c.GSOMaxSegs > 65535 {
		return fmt.Errorf("gsoMaxSegs: %d, want 0..65535", c.GSOMaxSegs)
	}
	for i, p := range c.Addresses {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("addresses[%d]: %v is not a valid prefix", i, p)
		}
	}
	var have4, have6 bool
	for i, g := range c.Gateways {
		switch {
		case !g.IsValid() || g.Is4In6() || g.IsUnspecified() || g.IsMulticast():
			return fmt.Errorf("gateways[%d]: %v is not a unicast address", i, g)
		case g.Is4() && have4, g.Is6() && have6:
			return fmt.Errorf("gateways[%d]: a second gateway of the family of %v", i, g)
		}
		have4, have6 = have4 || g.Is4(), have6 || g.Is6()
	}
	return nil
}

func checkIfname(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) >= unix.IFNAMSIZ:
		return fmt.Errorf("%q is %d bytes, want at most %d", s, len(s), unix.IFNAMSIZ-1)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not an interface name", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q: character %q not allowed", s, r)
		}
	}
	return nil
}

// randomMAC is a locally administered unicast address.
func randomMAC() (packet.MAC, error) {
	var m packet.MAC
	if _, err := rand.Read(m[:]); err != nil {
		return m, err
	}
	m[0] = m[0]&^0x01 | 0x02
	return m, nil
}

// openTAP creates the device name in the calling thread's namespace and
// returns its non-blocking descriptor and the offloads accepted.
func openTAP(name string) (fd, offloads int, err error) {
	fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, 0, fmt.Errorf("name: %w", err)
	}
	// IFF_TUN_EXCL: fail rather than attach to an existing device of
	// that name (a persistent TAP someone else configured).
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return -1, 0, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		return -1, 0, fmt.Errorf("TUNSETVNETHDRSZ %d: %w", vnetHdrLen, err)
	}
	// The header's byte order is the host's unless we ask for little-
	// endian, the virtio 1.x order our codec uses.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return -1, 0, fmt.Errorf("TUNSETVNETLE: %w", err)
	}
	offloads = tapOffloadsUSO
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		offloads = tapOffloads
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
			return -1, 0, fmt.Errorf("TUNSETOFFLOAD %#x: %w", offloads, err)
		}
	}
	return fd, offloads, nil
}

// configureTAP moves the device cfg.Name into target (if open) and sets it
// up there.
func configureTAP(cfg *TAPConfig, mac packet.MAC, target netns.NsHandle, nsPath string) error {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer host.Close()
	link, err := host.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	nl, ifname := host, cfg.Name
	if target.IsOpen() {
		if err := host.LinkSetNsFd(link, int(target)); err != nil {
			return fmt.Errorf("move to netns %s: %w", nsPath, err)
		}
		var inside *netlink.Handle
		err := nsexec.DoHandle(target, func() (err error) {
			inside, err = netlink.NewHandle(unix.NETLINK_ROUTE)
			return err
		})
		if err != nil {
			return fmt.Errorf("netlink in netns %s: %w", nsPath, err)
		}
		defer inside.Close()
		if link, err = inside.LinkByName(cfg.Name); err != nil {
			return fmt.Errorf("find link in netns %s: %w", nsPath, err)
		}
		nl, ifname = inside, cfg.NetnsIfname
		if ifname == "" {
			ifname = "eth0"
		}
		if ifname != cfg.Name {
			if err := nl.LinkSetName(link, ifname); err != nil {
				return fmt.Errorf("netns %s: rename to %s: %w", nsPath, ifname, err)
			}
		}
	}
	where := ifname
	if nsPath != "" {
		where = "netns " + nsPath + " " + ifname
	}
	if err := nl.LinkSetHardwareAddr(link, net.HardwareAddr(mac[:])); err != nil {
		return fmt.Errorf("%s: mac %v: %w", where, mac, err)
	}
	if cfg.MTU > 0 {
		if err := nl.LinkSetMTU(link, cfg.MTU); err != nil {
			return fmt.Errorf("%s: mtu %d: %w", where, cfg.MTU, err)
		}
	}
	if cfg.GSOMaxSegs > 0 {
		if err := nl.LinkSetGSOMaxSegs(link, cfg.GSOMaxSegs); err != nil {
			return fmt.Errorf("%s: gso_max_segs %d: %w", where, cfg.GSOMaxSegs, err)
		}
	}
	for i, p := range cfg.Addresses {
		a := &netlink.Addr{IPNet: prefixIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrAdd(link, a); err != nil {
			return fmt.Errorf("%s: addresses[%d] %v: %w", where, i, p, err)
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: link up: %w", where, err)
	}
	for i, gw := range cfg.Gateways {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       prefixIPNet(dst),
			Gw:        net.IP(gw.AsSlice()),
			Flags:     int(netlink.FLAG_ONLINK),
		}
		if err := nl.RouteAdd(r); err != nil {
			return fmt.Errorf("%s: gateways[%d] default route via %v: %w", where, i, gw, err)
		}
	}
	return nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
