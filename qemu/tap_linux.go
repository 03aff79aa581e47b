package qemu

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nsexec"
)

// openTAP creates tap device name inside the network namespace ns (a name
// under /run/netns or a path), enslaves it to bridge there and sets it up,
// and returns its fd for QEMU (-netdev tap,fd=N). The device lives as long
// as an fd to it is open: it goes with QEMU.
func openTAP(ns, name, bridge string) (*os.File, error) {
	var f *os.File
	err := nsexec.Do(ns, func() (err error) { f, err = createTAP(name, bridge); return })
	if err != nil {
		return nil, fmt.Errorf("tap %s in %s: %w", name, ns, err)
	}
	return f, nil
}

// createTAP runs on a thread inside the target namespace.
func createTAP(name, bridge string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("/dev/net/tun: %w (load the tun module)", err)
	}
	var ifr [unix.IFNAMSIZ + 64]byte
	copy(ifr[:unix.IFNAMSIZ-1], name)
	*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", errno)
	}
	l, err := netlink.LinkByName(name)
	if err == nil && bridge != "" {
		var br netlink.Link
		if br, err = netlink.LinkByName(bridge); err == nil {
			err = netlink.LinkSetMaster(l, br)
		}
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
