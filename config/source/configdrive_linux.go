//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
)

// ConfigDriveDir is where the config drive is mounted while it is read.
const ConfigDriveDir = "/run/weft/config-drive"

// configDriveLabel is the label Nova and Ironic give a config drive
// (iso9660 writes it as is, vfat upper-cased).
const configDriveLabel = "config-2"

type configDrive struct {
	log *slog.Logger
	// Where to look; tests point them at their own trees.
	sysRoot  string // /sys
	devRoot  string // /dev
	mountDir string
	mount    func(dev, dir, fstype string) error
	unmount  func(dir string) error
}

// NewConfigDrive returns the config drive source: it scans the block
// devices (whole disks and partitions) for a filesystem labelled config-2 or
// CONFIG-2 (iso9660 or vfat), mounts it read-only under ConfigDriveDir and
// reads openstack/latest/{meta_data.json,network_data.json,user_data}. The
// kernel must have the filesystem (modules isofs, vfat) loaded; mount(2)
// does not load modules in an initramfs without modprobe.
func NewConfigDrive(log *slog.Logger) Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &configDrive{
		log:      log,
		sysRoot:  "/sys",
		devRoot:  "/dev",
		mountDir: ConfigDriveDir,
		mount:    mountReadOnly,
		unmount:  unmountDir,
	}
}

func (c *configDrive) Name() string { return "config-drive" }

func (c *configDrive) Fetch(ctx context.Context) (*config.Bundle, error) {
	dev, fstype, err := c.find(ctx)
	if err != nil {
		return nil, err
	}
	src := "config-drive " + dev
	if err := os.MkdirAll(c.mountDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	_ = c.unmount(c.mountDir) // a mount left by an interrupted earlier run
	if err := c.mount(dev, c.mountDir, fstype); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	defer func() {
		if err := c.unmount(c.mountDir); err != nil {
			c.log.Warn("config drive: unmount failed", "dev", dev, "dir", c.mountDir, "err", err)
		}
	}()
	b, err := readOpenStackTree(os.DirFS(c.mountDir), src)
	if err != nil {
		return nil, err
	}
	c.log.Info("config drive read", "dev", dev, "fstype", fstype,
		"meta_data", b.MetaData != nil, "network_data", b.NetworkData != nil, "user_data_bytes", len(b.UserData))
	return b, nil
}

// find returns the first block device (in name order) labelled config-2.
func (c *configDrive) find(ctx context.Context) (dev, fstype string, err error) {
	dev, fstype, found, err := scanLabel(ctx, c.sysRoot, c.devRoot, configDriveLabel, c.log)
	if err != nil {
		return "", "", fmt.Errorf("config drive: %w", err)
	}
	if dev == "" {
		return "", "", fmt.Errorf("config drive: no block device labelled %s: %w", configDriveLabel, config.ErrNotFound)
	}
	if len(found) > 1 {
		c.log.Warn("config drive: several devices labelled config-2; using the first", "devs", strings.Join(found, " "), "dev", dev)
	}
	return dev, fstype, nil
}

// scanLabel lists the block devices under sysRoot/class/block (whole disks
// and partitions, in name order) whose filesystem carries label (compared
// without case: vfat upper-cases it) and returns the first with its
// filesystem type, and all of them. Devices of size 0 (an empty CD drive,
// an unattached loop device) are not opened; a device it cannot read is
// passed over. Only the first 64 KiB of a device are read (readLabel).
func scanLabel(ctx context.Context, sysRoot, devRoot, label string, log *slog.Logger) (dev, fstype string, found []string, err error) {
	dir := filepath.Join(sysRoot, "class", "block")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return "", "", nil, err
		}
		// Size in 512-byte sectors; 0 is an empty CD drive or an
		// unattached loop device, which must not be opened.
		sz, err := os.ReadFile(filepath.Join(dir, name, "size"))
		if err != nil {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(sz)), 10, 64); err != nil || n == 0 {
			continue
		}
		path := filepath.Join(devRoot, name)
		t, l, err := readLabelFile(path)
		if err != nil {
			log.Debug("cannot read the label", "dev", path, "err", err)
			continue
		}
		if t == "" || !strings.EqualFold(l, label) {
			continue
		}
		if dev == "" {
			dev, fstype = path, t
		}
		found = append(found, path)
	}
	return dev, fstype, found, nil
}

func readLabelFile(path string) (string, string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	return readLabel(f)
}

func mountReadOnly(dev, dir, fstype string) error {
	err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if errors.Is(err, unix.ENODEV) {
		mod := map[string]string{fsISO9660: "isofs", fsVFAT: "vfat"}[fstype]
		return fmt.Errorf("mount %s on %s: the kernel has no %s filesystem (module %s not loaded): %w", dev, dir, fstype, mod, err)
	}
	if err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, dir, err)
	}
	return nil
}

func unmountDir(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}
