package qemu

import (
	"net"
	"slices"
	"strings"
	"testing"
)

func TestBuildArgs(t *testing.T) {
	mac0 := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	mac1 := net.HardwareAddr{0x52, 0x54, 0, 4, 5, 6}
	base := []string{
		"-accel", "tcg", "-cpu", "max", "-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot", "-device", "virtio-rng-pci",
	}
	tests := []struct {
		name string
		m    Machine
		iso  string
		want []string // must appear, in this order, as consecutive arguments
		not  []string // must not appear as an argument
	}{
		{
			name: "kernel defaults",
			m:    Machine{Name: "n1", Kernel: "/img/vmlinux", Initrd: "/img/initramfs.cpio.gz"},
			want: []string{"-name", "n1", "-m", "384", "-kernel", "/img/vmlinux", "-initrd", "/img/initramfs.cpio.gz", "-append", "console=ttyS0 panic=-1"},
			not:  []string{"-boot", "-drive", "-netdev"},
		},
		{
			name: "append keeps its own console and panic",
			m:    Machine{Name: "n1", Kernel: "k", Append: "console=ttyS1 panic=5 weft.debug", MemoryMB: 128},
			want: []string{"-m", "128", "-append", "console=ttyS1 panic=5 weft.debug"},
			not:  []string{"-initrd"},
		},
		{
			name: "append gets defaults in front",
			m:    Machine{Name: "n1", Kernel: "k", Append: "weft.config=http://10.0.2.2:8000/"},
			want: []string{"-append", "console=ttyS0 panic=-1 weft.config=http://10.0.2.2:8000/"},
		},
		{
			name: "user nic with forwards, no rom",
			m: Machine{Name: "n1", Kernel: "k", NICs: []NIC{{User: &UserNet{
				Net: "10.0.2.0/24", HostFwd: []string{"tcp:127.0.0.1:2222-:22"},
				GuestFwd: []string{"tcp:10.0.2.100:80-cmd:nc 127.0.0.1 8775"},
			}}}},
			want: []string{
				"-netdev", "user,id=n0,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:2222-:22,guestfwd=tcp:10.0.2.100:80-cmd:nc 127.0.0.1 8775",
				"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:01:02:03,romfile=",
			},
		},
		{
			name: "pxe keeps rom on nic 0 only",
			m: Machine{Name: "p", PXE: true, NICs: []NIC{
				{User: &UserNet{TFTP: "/srv/tftp,x", BootFile: "boot.ipxe"}},
				{Model: "e1000", Socket: &SocketNet{MCast: "239.255.1.2:4000"}},
			}},
			want: []string{
				"-boot", "n",
				"-netdev", "user,id=n0,restrict=on,tftp=/srv/tftp,,x,bootfile=boot.ipxe",
				"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:01:02:03",
				"-netdev", "dgram,id=n1,remote.type=inet,remote.host=239.255.1.2,remote.port=4000,local.type=inet,local.host=127.0.0.1,local.port=4000",
				"-device", "e1000,netdev=n1,mac=52:54:00:04:05:06,romfile=",
			},
			not: []string{"-kernel", "-append"},
		},
		{
			name: "restricted user nic",
			m:    Machine{Name: "r", Kernel: "k", NICs: []NIC{{User: &UserNet{HostFwd: []string{"tcp::0-:22"}}}}},
			want: []string{"-netdev", "user,id=n0,restrict=on,hostfwd=tcp::0-:22"},
		},
		{
			name: "socket pair",
			m: Machine{Name: "s", Kernel: "k", NICs: []NIC{
				{Socket: &SocketNet{Listen: "127.0.0.1:4001"}},
				{Socket: &SocketNet{Connect: "127.0.0.1:4002"}},
			}},
			want: []string{
				"-netdev", "socket,id=n0,listen=127.0.0.1:4001",
				"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:01:02:03,romfile=",
				"-netdev", "socket,id=n1,connect=127.0.0.1:4002",
			},
		},
		{
			name: "config drive and extra last",
			m:    Machine{Name: "c", Kernel: "k", Extra: []string{"-smp", "2"}},
			iso:  "/tmp/a,b/config-2.iso",
			want: []string{"-drive", "file=/tmp/a,,b/config-2.iso,format=raw,media=cdrom,if=virtio,readonly=on", "-smp", "2"},
		},
		{
			name: "vfat config drive: a disk, not a cdrom",
			m:    Machine{Name: "c", Kernel: "k", ConfigDriveFS: FSVFAT},
			iso:  "/tmp/config-2.img",
			want: []string{"-drive", "file=/tmp/config-2.img,format=raw,if=virtio,readonly=on"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.m.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			args := buildArgs(&tt.m, []net.HardwareAddr{mac0, mac1}, tt.iso)
			for _, want := range [][]string{base, tt.want} {
				if !containsSeq(args, want) {
					t.Errorf("args lack %q\nargs: %q", want, args)
				}
			}
			for _, n := range tt.not {
				if slices.Contains(args, n) {
					t.Errorf("args contain %q: %q", n, args)
				}
			}
			if len(tt.m.Extra) > 0 && !slices.Equal(args[len(args)-len(tt.m.Extra):], tt.m.Extra) {
				t.Errorf("Extra not last: %q", args)
			}
		})
	}
}

// containsSeq reports whether want appears in args in order (not
// necessarily adjacent between groups, but each flag directly before its
// value: consecutive pairs are checked as pairs).
func containsSeq(args, want []string) bool {
	i := 0
	for _, a := range args {
		if i < len(want) && a == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestValidate(t *testing.T) {
	user := &UserNet{}
	tests := []struct {
		name string
		m    Machine
		want string // substring of the error
	}{
		{"no kernel", Machine{}, "kernel: empty"},
		{"pxe with kernel", Machine{PXE: true, Kernel: "k"}, "pxe: kernel"},
		{"pxe without nic", Machine{PXE: true}, "pxe: nics[0] must be a user-mode NIC"},
		{"pxe without tftp", Machine{PXE: true, NICs: []NIC{{User: user}}}, "pxe: nics[0].user: tftp"},
		{"nic with both", Machine{Kernel: "k", NICs: []NIC{{User: user, Socket: &SocketNet{MCast: "239.1.1.1:1"}}}}, "nics[0]: exactly one of user, socket or tap"},
		{"nic with neither", Machine{Kernel: "k", NICs: []NIC{{User: user}, {}}}, "nics[1]: exactly one"},
		{"bad model", Machine{Kernel: "k", NICs: []NIC{{User: user, Model: "rtl8139"}}}, `nics[0]: model: "rtl8139"`},
		{"short mac", Machine{Kernel: "k", NICs: []NIC{{User: user, MAC: net.HardwareAddr{1, 2}}}}, "nics[0]: mac:"},
		{"multicast mac", Machine{Kernel: "k", NICs: []NIC{{User: user, MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}}}}, "multicast address"},
		{"socket two modes", Machine{Kernel: "k", NICs: []NIC{{Socket: &SocketNet{Listen: "127.0.0.1:1", Connect: "127.0.0.1:2"}}}}, "exactly one of listen, connect or mcast"},
		{"listen not loopback", Machine{Kernel: "k", NICs: []NIC{{Socket: &SocketNet{Listen: "192.0.2.1:4000"}}}}, "socket: listen: 192.0.2.1:4000 is not a loopback"},
		{"connect no port", Machine{Kernel: "k", NICs: []NIC{{Socket: &SocketNet{Connect: "127.0.0.1"}}}}, "socket: connect:"},
		{"mcast unicast", Machine{Kernel: "k", NICs: []NIC{{Socket: &SocketNet{MCast: "127.0.0.1:4000"}}}}, "not an IPv4 multicast group"},
		{"negative memory", Machine{Kernel: "k", MemoryMB: -1}, "memory_mb"},
		{"config drive fs", Machine{Kernel: "k", ConfigDriveFS: "ext4"}, "config_drive_fs: \"ext4\" (want iso9660 or vfat)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "console=ttyS0 panic=-1",
		"quiet":                   "console=ttyS0 panic=-1 quiet",
		"console=tty0":            "panic=-1 console=tty0",
		"panic=1 console":         "panic=1 console",
		"weft.console=x panicky=": "console=ttyS0 panic=-1 weft.console=x panicky=",
	} {
		if got := kernelCmdline(in); got != want {
			t.Errorf("kernelCmdline(%q) = %q, want %q", in, got, want)
		}
	}
}
