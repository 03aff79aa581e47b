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
	dir := filepath.Join(c.sysRoot, "class", "block")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("config drive: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	var found []string
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return "", "", fmt.Errorf("config drive: %w", err)
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
		path := filepath.Join(c.devRoot, name)
		t, label, err := readLabelFile(path)
		if err != nil {
			c.log.Debug("config drive: cannot read the label", "dev", path, "err", err)
			continue
		}
		if t == "" || !strings.EqualFold(label, configDriveLabel) {
			continue
		}
		if dev == "" {
			dev, fstype = path, t
		}
		found = append(found, path)
	}
	if dev == "" {
		return "", "", fmt.Errorf("config drive: no block device labelled %s: %w", configDriveLabel, config.ErrNotFound)
	}
	if len(found) > 1 {
		c.log.Warn("config drive: several devices labelled config-2; using the first", "devs", strings.Join(found, " "), "dev", dev)
	}
	return dev, fstype, nil
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
