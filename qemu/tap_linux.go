package qemu

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openTAP creates tap device name inside the network namespace ns (a name
// under /run/netns or a path), enslaves it to bridge there and sets it up,
// and returns its fd for QEMU (-netdev tap,fd=N). The device lives as long
// as an fd to it is open: it goes with QEMU.
func openTAP(ns, name, bridge string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := openNetns(ns)
		if err != nil {
			c <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			c <- result{err: fmt.Errorf("entering netns %s: %w", ns, err)}
			return
		}
		f, err := createTAP(name, bridge)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		c <- result{f, err}
	}()
	r := <-c
	if r.err != nil {
		return nil, fmt.Errorf("tap %s in %s: %w", name, ns, r.err)
	}
	return r.f, nil
}

func openNetns(ns string) (netns.NsHandle, error) {
	if strings.ContainsRune(ns, '/') {
		return netns.GetFromPath(ns)
	}
	return netns.GetFromName(ns)
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
