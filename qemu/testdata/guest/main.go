// Command guest is the /init of the qemu package's integration tests: a
// tiny PID 1 that shows what QEMU gave the VM on the console and, on
// request, exchanges Ethernet frames with the other VMs of its segments.
//
// Kernel parameters it reads:
//
//	guest.l2=1        keep sending frames on every NIC, report each MAC heard
//	guest.poweroff=1  power off after "ready" (not with guest.l2)
//
// Console lines, all prefixed "guest: ":
//
//	nic eth0 mac=52:54:00:…   block vda label=config-2   ready
//	peer eth0 52:54:00:…      self eth0 (its own frame came back)
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// etherType is IEEE's local experimental EtherType 1.
const etherType = 0x88b5

func main() {
	say("start")
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			say("mount %s: %v", m.dst, err)
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	param := func(k string) bool { return slices.Contains(strings.Fields(string(cmdline)), k+"=1") }

	loadModules()
	nics := waitNICs(5 * time.Second)
	for _, n := range nics {
		mac, _ := os.ReadFile("/sys/class/net/" + n + "/address")
		say("nic %s mac=%s", n, strings.TrimSpace(string(mac)))
	}
	blocks, _ := os.ReadDir("/sys/class/block")
	for _, b := range blocks {
		say("block %s label=%s", b.Name(), isoLabel("/dev/"+b.Name()))
	}
	if param("guest.l2") {
		go exchange(nics)
	}
	say("ready")
	if param("guest.poweroff") {
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			say("poweroff: %v", err)
		}
	}
	for {
		time.Sleep(time.Hour)
	}
}

func say(format string, a ...any) {
	fmt.Fprintf(os.Stdout, "guest: "+format+"\n", a...)
}

// loadModules loads every module in the initramfs, retrying those whose
// dependencies are not loaded yet until a round makes no progress.
func loadModules() {
	var mods []string
	filepath.Walk("/lib/modules", func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			mods = append(mods, p)
		}
		return nil
	})
	for len(mods) > 0 {
		var left []string
		for _, p := range mods {
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			err = unix.FinitModule(int(f.Fd()), "", 0)
			f.Close()
			if err != nil && err != unix.EEXIST {
				left = append(left, p)
			}
		}
		if len(left) == len(mods) {
			say("modules not loaded: %v", left)
			return
		}
		mods = left
	}
}

func waitNICs(d time.Duration) []string {
	var nics []string
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		es, _ := os.ReadDir("/sys/class/net")
		nics = nics[:0]
		for _, e := range es {
			if strings.HasPrefix(e.Name(), "eth") {
				nics = append(nics, e.Name())
			}
		}
		if len(nics) > 0 {
			// Late NICs: give the others a moment to probe.
			time.Sleep(300 * time.Millisecond)
			es, _ = os.ReadDir("/sys/class/net")
			nics = nics[:0]
			for _, e := range es {
				if strings.HasPrefix(e.Name(), "eth") {
					nics = append(nics, e.Name())
				}
			}
			break
		}
	}
	sort.Strings(nics)
	return nics
}

// isoLabel reads the ISO 9660 volume identifier (primary volume descriptor
// at 32 KiB, identifier at byte 40, 32 bytes).
func isoLabel(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return "?"
	}
	defer f.Close()
	b := make([]byte, 72)
	if _, err := f.ReadAt(b, 32768); err != nil || string(b[1:6]) != "CD001" {
		return "none"
	}
	return strings.TrimSpace(string(b[40:72]))
}

// exchange brings every NIC up, broadcasts a frame on each every 200 ms
// until the VM stops, and reports the source of every frame heard, once per
// NIC and source.
func exchange(nics []string) {
	type sock struct {
		name string
		fd   int
		mac  net.HardwareAddr
		idx  int
	}
	var socks []sock
	for _, n := range nics {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			say("l2 %s: %v", n, err)
			continue
		}
		if err := linkUp(n); err != nil {
			say("l2 %s up: %v", n, err)
			continue
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK, int(htons(etherType)))
		if err != nil {
			say("l2 %s socket: %v", n, err)
			continue
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifi.Index}); err != nil {
			say("l2 %s bind: %v", n, err)
			continue
		}
		socks = append(socks, sock{n, fd, ifi.HardwareAddr, ifi.Index})
	}
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	for ; ; time.Sleep(200 * time.Millisecond) {
		for _, s := range socks {
			frame := append(append(bytes.Repeat([]byte{0xff}, 6), s.mac...), byte(etherType>>8), byte(etherType&0xff))
			frame = append(frame, []byte("weft qemu test "+s.name+strings.Repeat(".", 40))...)
			unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.idx, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
			for {
				n, _, err := unix.Recvfrom(s.fd, buf, 0)
				if err != nil || n < 14 {
					break
				}
				src := net.HardwareAddr(buf[6:12]).String()
				key := s.name + " " + src
				if seen[key] {
					continue
				}
				seen[key] = true
				if src == s.mac.String() {
					say("self %s", s.name)
				} else {
					say("peer %s %s", s.name, src)
				}
			}
		}
	}
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
