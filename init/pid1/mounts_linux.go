package pid1

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// mount is one early filesystem.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode // of the mount point when created
}

// earlyMounts are what PID 1 mounts before anything else, in order: /proc
// first (the rest checks /proc/self/mounts), devtmpfs before /dev/pts and
// /dev/shm. The kernel does not mount devtmpfs for an initramfs.
var earlyMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"run", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755},
	{"tmp", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate", 0o555},
	{"bpf", "/sys/fs/bpf", "bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0700", 0o700},
}

// mountEarly mounts earlyMounts; a mount point that already has a
// filesystem is left alone. It returns what it mounted and one error per
// failure (never stops at the first: a missing bpffs must not cost /run).
func mountEarly() (mounted []string, errs []error) {
	for _, m := range earlyMounts {
		if isMounted(m.target) {
			continue
		}
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			errs = append(errs, fmt.Errorf("mount %s (%s): %w", m.target, m.fstype, err))
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if errors.Is(err, unix.EINVAL) && m.data != "" && m.fstype == "cgroup2" {
			// nsdelegate is newer than some kernels; the mount works without it.
			err = unix.Mount(m.source, m.target, m.fstype, m.flags, "")
		}
		if errors.Is(err, unix.EBUSY) {
			continue // mounted meanwhile, or /proc was not there to tell us
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("mount %s (%s): %w", m.target, m.fstype, err))
			continue
		}
		mounted = append(mounted, m.target)
	}
	return mounted, errs
}

// isMounted reports whether target is a mount point per /proc/self/mounts;
// false when that cannot be read (before /proc is mounted).
func isMounted(target string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	return slices.Contains(mountPoints(string(b)), target)
}

// mountPoints returns the mount points listed in a /proc/self/mounts
// document, in mount order, with the kernel's octal escapes (\040 for a
// space) undone. Malformed lines are skipped.
func mountPoints(doc string) []string {
	var out []string
	for line := range strings.Lines(doc) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		out = append(out, unescapeMount(f[1]))
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// unmountAll unmounts everything but / in reverse mount order, for an
// orderly poweroff; what stays busy (the console keeps /dev) is returned,
// not fatal.
func unmountAll() []error {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return []error{fmt.Errorf("reading /proc/self/mounts: %w", err)}
	}
	var errs []error
	points := mountPoints(string(b))
	for _, p := range slices.Backward(points) {
		if p == "/" {
			continue
		}
		if err := unix.Unmount(p, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			// Busy: detach it so that at least no new use starts.
			if err2 := unix.Unmount(p, unix.MNT_DETACH); err2 != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errs
}
