// Package qemu runs Weft images in QEMU: one node or a few on a shared
// virtual L2 segment, with an optional config drive, the serial console
// captured (ANSI escapes and \r stripped) and a way to wait for console
// markers. The end-to-end tests and `weft qemu run` share it.
//
// What this machine taught us (../shared/notes/boot-qemu.md): /dev/kvm does
// not work here and `-accel kvm -accel tcg` does not fall back, so every VM
// runs under TCG with `-cpu max` (RDRAND, so the guest's RNG initialises);
// the uncompressed PVH vmlinux boots 2–3× faster than vmlinuz; QEMU's own
// MAC default collides between VMs, so every NIC gets a MAC derived from
// the machine name and NIC index.
package qemu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultMemoryMB is the guest memory when Machine.MemoryMB is 0. The
// initramfs unpacks into RAM: since the Kubernetes join (client-go) the
// weft binary is 67 MB, and 192 MB no longer held the kernel, the
// compressed initramfs and its unpacked files (the guest stopped while
// unpacking). 384 leaves the agent and vRouter room.
const DefaultMemoryMB = 384

// DefaultName names a Machine whose Name is empty. MACs derive from the
// name: give every VM on a shared segment its own Name.
const DefaultName = "weft"

// Machine describes one VM.
type Machine struct {
	// Name identifies the VM in errors and logs (-name) and seeds its MACs.
	Name string
	// Kernel is booted directly (-kernel): the uncompressed PVH vmlinux is
	// fastest under TCG; a bzImage works too. Initrd is optional. Append is
	// the kernel command line; "console=ttyS0" and "panic=-1" are added
	// unless Append sets console= or panic= itself, so the console reaches
	// the capture and a panic ends QEMU (-no-reboot) instead of hanging.
	Kernel, Initrd, Append string
	// MemoryMB is the guest memory (default DefaultMemoryMB).
	MemoryMB int
	// NICs in PCI order: the guest names them eth0, eth1… in that order.
	NICs []NIC
	// ConfigDrive is a directory (openstack/latest/…) that Start builds into
	// a config drive image and attaches as a read-only virtio disk
	// (/dev/vda in the guest).
	ConfigDrive string
	// ConfigDriveFS is the drive's filesystem: FSISO9660 (""; an ISO 9660
	// image labelled config-2, as nova writes it) or FSVFAT (a FAT disk
	// labelled CONFIG-2, nova's config_drive_format=vfat).
	ConfigDriveFS string
	// PXE boots from the first NIC (-boot n) through its iPXE ROM; Kernel,
	// Initrd and Append must be empty, and NICs[0] must be user-mode with
	// TFTP and BootFile set (QEMU's built-in TFTP serves the iPXE script).
	PXE bool
	// ConsoleLog is a file the console is copied to (created/truncated),
	// ANSI escapes and \r stripped. The console is also kept in memory.
	ConsoleLog string
	// ConsoleOut also receives the console as it arrives, stripped like
	// ConsoleLog (`weft qemu run` passes os.Stdout). Writes must not block
	// for long: QEMU's serial output waits for them.
	ConsoleOut io.Writer
	// OperatorConsole, if set, is a unix socket path where QEMU serves the
	// guest's second serial port (ttyS1): weft init's operator prompt
	// (`weft qemu console PATH` attaches to it).
	OperatorConsole string
	// Extra arguments appended to QEMU's command line as they are.
	Extra []string
}

// NIC is one network interface: exactly one of User, Socket or TAP.
type NIC struct {
	// MAC of the interface; empty means MAC(Name, index).
	MAC    net.HardwareAddr
	User   *UserNet
	Socket *SocketNet
	TAP    *TapNet
	// Model is the QEMU device: "virtio-net-pci" (default) or "e1000".
	Model string
}

// UserNet is QEMU's user-mode network (slirp): the guest gets 10.0.2.15 by
// DHCP and reaches the host's loopback at 10.0.2.2. Each user-mode NIC is
// its own private network.
type UserNet struct {
	// Net is the guest network (net=), e.g. "10.0.2.0/24"; empty = QEMU's.
	Net string
	// TFTP is a directory served by the built-in TFTP server, BootFile the
	// file DHCP names as the boot file (for PXE: an iPXE script).
	TFTP, BootFile string
	// HostFwd rules as QEMU spells them: "tcp:127.0.0.1:2222-:22".
	HostFwd []string
	// GuestFwd rules as QEMU spells them:
	// "tcp:10.0.2.100:80-tcp:127.0.0.1:8775". QEMU (7.2, measured) rejects
	// a guest address outside Net ("Conflicting/invalid host:port"), so
	// 169.254.169.254 needs Net "169.254.0.0/16"; a tcp: target is ONE
	// connection QEMU opens at start (it exits if nothing listens yet);
	// "cmd:…" targets run the command per connection. Often simpler: serve
	// on the host's 127.0.0.1 and let the guest use 10.0.2.2.
	GuestFwd []string
}

// SocketNet joins the NIC to a virtual L2 segment shared with other VMs on
// this host, always over 127.0.0.1. Exactly one field is set.
//
//   - MCast "239.255.x.y:port": UDP multicast (-netdev dgram) with the
//     loopback as the multicast interface. Any number of VMs, started in any
//     order; every VM also receives its own frames back (multicast loop).
//     Segment hands these out.
//   - Listen / Connect "127.0.0.1:port": a TCP stream (-netdev socket)
//     joining exactly two VMs. The listening VM must be started first: Start
//     returns only once its port is bound, and a connecting QEMU whose peer
//     is not listening exits at once ("Connection refused"). QEMU serves one
//     connection at a time on a listening netdev.
type SocketNet struct {
	Listen, Connect string
	MCast           string
}

// TapNet joins the NIC to a Linux bridge inside a network namespace (the
// demo's fleet segment, where the controller serves DHCP, boot files and
// BGP): Start creates tap device Ifname there, enslaves it to Bridge and
// hands it to QEMU as a file descriptor. Needs root; the device goes with
// QEMU.
type TapNet struct {
	Netns  string // a name under /run/netns, or a path
	Bridge string
	Ifname string // at most 15 bytes
}

// Machine's fields are checked here; the errors name the field at fault.
func (m *Machine) validate() error {
	if m.MemoryMB < 0 {
		return fmt.Errorf("memory_mb: %d is negative", m.MemoryMB)
	}
	if m.PXE {
		switch {
		case m.Kernel != "" || m.Initrd != "" || m.Append != "":
			return errors.New("pxe: kernel, initrd and append must be empty (the iPXE script names them)")
		case len(m.NICs) == 0 || (m.NICs[0].User == nil && m.NICs[0].TAP == nil):
			return errors.New("pxe: nics[0] must be a user-mode NIC (QEMU's TFTP) or a TAP on a segment with a DHCP server")
		case m.NICs[0].User != nil && (m.NICs[0].User.TFTP == "" || m.NICs[0].User.BootFile == ""):
			return errors.New("pxe: nics[0].user: tftp and boot_file are needed")
		}
	} else if m.Kernel == "" {
		return errors.New("kernel: empty (set Kernel, or PXE)")
	}
	if m.ConfigDriveFS != "" && m.ConfigDriveFS != FSISO9660 && m.ConfigDriveFS != FSVFAT {
		return fmt.Errorf("config_drive_fs: %q (want %s or %s)", m.ConfigDriveFS, FSISO9660, FSVFAT)
	}
	for i, n := range m.NICs {
		if err := n.validate(); err != nil {
			return fmt.Errorf("nics[%d]: %w", i, err)
		}
	}
	return nil
}

func (n *NIC) validate() error {
	switch {
	case btoi(n.User != nil)+btoi(n.Socket != nil)+btoi(n.TAP != nil) != 1:
		return errors.New("exactly one of user, socket or tap must be set")
	case n.TAP != nil && (n.TAP.Netns == "" || n.TAP.Ifname == "" || len(n.TAP.Ifname) > 15):
		return errors.New("tap: netns and an ifname of at most 15 bytes are needed")
	case n.MAC != nil && len(n.MAC) != 6:
		return fmt.Errorf("mac: %q is not a 6-byte Ethernet address", n.MAC)
	case n.MAC != nil && n.MAC[0]&1 != 0:
		return fmt.Errorf("mac: %s is a multicast address", n.MAC)
	}
	switch n.Model {
	case "", "virtio-net-pci", "e1000":
	default:
		return fmt.Errorf("model: %q (want virtio-net-pci or e1000)", n.Model)
	}
	if s := n.Socket; s != nil {
		set := 0
		for _, v := range []string{s.Listen, s.Connect, s.MCast} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			return errors.New("socket: exactly one of listen, connect or mcast must be set")
		}
		if err := checkSocketAddr(s); err != nil {
			return fmt.Errorf("socket: %w", err)
		}
	}
	return nil
}

// checkSocketAddr keeps segments on the loopback: a VM's frames must never
// reach a real network.
func checkSocketAddr(s *SocketNet) error {
	if s.MCast != "" {
		ap, err := netip.ParseAddrPort(s.MCast)
		if err != nil {
			return fmt.Errorf("mcast: %w", err)
		}
		if !ap.Addr().Is4() || !ap.Addr().IsMulticast() || ap.Port() == 0 {
			return fmt.Errorf("mcast: %s is not an IPv4 multicast group with a port", s.MCast)
		}
		return nil
	}
	name, v := "listen", s.Listen
	if v == "" {
		name, v = "connect", s.Connect
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return fmt.Errorf("%s: %s is not a loopback address with a port", name, v)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (n *NIC) model() string {
	if n.Model == "" {
		return "virtio-net-pci"
	}
	return n.Model
}

// buildArgs is QEMU's command line for m (validated, MACs resolved), without
// the binary. drive is the config drive image, "" for none. It reads nothing
// from the filesystem so that it can be tested as a table.
func buildArgs(m *Machine, macs []net.HardwareAddr, drive string) []string {
	mem := m.MemoryMB
	if mem == 0 {
		mem = DefaultMemoryMB
	}
	a := []string{
		"-name", opt(m.Name),
		"-accel", "tcg", "-cpu", "max",
		"-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot",
		// The kernel's RNG initialises at once even if RDRAND were missing.
		"-device", "virtio-rng-pci",
	}
	if m.PXE {
		// Debian's SeaBIOS and iPXE write to the (absent) screen only: the
		// console stays empty until the kernel starts.
		a = append(a, "-boot", "n")
	} else {
		a = append(a, "-kernel", m.Kernel)
		if m.Initrd != "" {
			a = append(a, "-initrd", m.Initrd)
		}
		a = append(a, "-append", kernelCmdline(m.Append))
	}
	fd := 3
	for i, n := range m.NICs {
		id := "n" + strconv.Itoa(i)
		a = append(a, "-netdev", netdevArg(id, &n, fd))
		if n.TAP != nil {
			fd++
		}
		dev := n.model() + ",netdev=" + id + ",mac=" + macs[i].String()
		if !m.PXE || i != 0 {
			// Only the PXE NIC needs its iPXE ROM; without it SeaBIOS skips
			// initialising iPXE (time and ANSI noise on the console).
			dev += ",romfile="
		}
		a = append(a, "-device", dev)
	}
	switch {
	case drive == "":
	case m.ConfigDriveFS == FSVFAT:
		a = append(a, "-drive", "file="+opt(drive)+",format=raw,if=virtio,readonly=on")
	default:
		a = append(a, "-drive", "file="+opt(drive)+",format=raw,media=cdrom,if=virtio,readonly=on")
	}
	if m.OperatorConsole != "" {
		a = append(a, "-chardev", "socket,id=opcon,path="+opt(m.OperatorConsole)+",server=on,wait=off", "-serial", "chardev:opcon")
	}
	return append(a, m.Extra...)
}

// kernelCmdline adds the console and panic defaults unless set.
func kernelCmdline(s string) string {
	var pre []string
	if !hasParam(s, "console") {
		pre = append(pre, "console=ttyS0")
	}
	if !hasParam(s, "panic") {
		pre = append(pre, "panic=-1")
	}
	if s != "" {
		pre = append(pre, s)
	}
	return strings.Join(pre, " ")
}

func hasParam(cmdline, key string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == key || strings.HasPrefix(f, key+"=") {
			return true
		}
	}
	return false
}

// netdevArg is the -netdev of n; a TAP NIC's fd is the fd-th extra file
// of QEMU's process (3 + its index among the machine's TAP NICs).
func netdevArg(id string, n *NIC, fd int) string {
	if n.TAP != nil {
		return "tap,id=" + id + ",fd=" + strconv.Itoa(fd) + ",vhost=off"
	}
	if u := n.User; u != nil {
		// Always restrict=on: without it slirp NATs the guest's connections
		// to any address through the host (a node probing 169.254.169.254
		// reached whatever answered there, measured: HTTP 403). DHCP, TFTP,
		// HostFwd and GuestFwd still work; the lease carries no router.
		s := "user,id=" + id + ",restrict=on"
		if u.Net != "" {
			s += ",net=" + opt(u.Net)
		}
		if u.TFTP != "" {
			s += ",tftp=" + opt(u.TFTP)
		}
		if u.BootFile != "" {
			s += ",bootfile=" + opt(u.BootFile)
		}
		for _, f := range u.HostFwd {
			s += ",hostfwd=" + opt(f)
		}
		for _, f := range u.GuestFwd {
			s += ",guestfwd=" + opt(f)
		}
		return s
	}
	s := n.Socket
	switch {
	case s.Listen != "":
		return "socket,id=" + id + ",listen=" + s.Listen
	case s.Connect != "":
		return "socket,id=" + id + ",connect=" + s.Connect
	}
	// validate checked MCast parses as group:port.
	ap := netip.MustParseAddrPort(s.MCast)
	port := strconv.Itoa(int(ap.Port()))
	return "dgram,id=" + id +
		",remote.type=inet,remote.host=" + ap.Addr().String() + ",remote.port=" + port +
		",local.type=inet,local.host=127.0.0.1,local.port=" + port
}

// opt escapes a value inside a QEMU option string, where "," separates
// options and ",," stands for a literal comma.
func opt(v string) string { return strings.ReplaceAll(v, ",", ",,") }
