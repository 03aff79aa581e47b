//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/config"
)

// StateLabel is the filesystem label of a node's persistent state: a FAT
// filesystem (vfat) carrying it, on a partition or a whole disk, is where
// the node keeps its last good config across reboots. A device without
// this label is never written to.
const StateLabel = "WEFT-STATE"

// StateDisk is a state filesystem found and mounted by MountState.
type StateDisk struct {
	Dev string // /dev/vdb1
	Dir string // where it is mounted
}

// String is how verdicts and `weft ctl status` name it:
// "/dev/vdb1 (WEFT-STATE)".
func (d StateDisk) String() string { return d.Dev + " (" + StateLabel + ")" }

// MountState finds the block device whose filesystem is labelled
// WEFT-STATE and mounts it read-write on dir (created if missing), files
// root's only. Without one it returns an error wrapping config.ErrNotFound;
// a device with the label that is not FAT, or that does not mount, is an
// error naming it (the node then keeps its state in RAM). With several, the
// first in name order is used and the others are logged.
//
// Why FAT: the kernel of the image already has it for config drives (no
// new module), and any OS or BMC can make and inspect one. Its lack of a
// journal costs little here: the one file is replaced by a rename, which
// rewrites one directory entry, and the file carries its own length and
// checksum (Store), so whatever a power cut leaves is refused, not used.
func MountState(ctx context.Context, dir string, log *slog.Logger) (StateDisk, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return mountState(ctx, "/sys", "/dev", dir, mountReadWrite, log)
}

func mountState(ctx context.Context, sysRoot, devRoot, dir string, mount func(dev, dir, fstype string) error, log *slog.Logger) (StateDisk, error) {
	dev, fstype, found, err := scanLabel(ctx, sysRoot, devRoot, StateLabel, log)
	switch {
	case err != nil:
		return StateDisk{}, fmt.Errorf("state disk: %w", err)
	case dev == "":
		return StateDisk{}, fmt.Errorf("state disk: no filesystem labelled %s: %w", StateLabel, config.ErrNotFound)
	case fstype != fsVFAT:
		return StateDisk{}, fmt.Errorf("state disk %s: labelled %s but %s, not FAT (vfat): it cannot be written; make it with mkfs.vfat -n %s", dev, StateLabel, fstype, StateLabel)
	}
	if len(found) > 1 {
		log.Warn("state disk: several filesystems labelled "+StateLabel+"; using the first", "devs", strings.Join(found, " "), "dev", dev)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return StateDisk{}, fmt.Errorf("state disk %s: %w", dev, err)
	}
	if err := mount(dev, dir, fstype); err != nil {
		return StateDisk{}, fmt.Errorf("state disk %s: %w", dev, err)
	}
	return StateDisk{Dev: dev, Dir: dir}, nil
}

// mountReadWrite mounts a FAT state filesystem: files 0600 and directories
// 0700, root's (FAT keeps no owners or modes; the stored config holds the
// node's secrets).
func mountReadWrite(dev, dir, fstype string) error {
	err := unix.Mount(dev, dir, fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "uid=0,gid=0,fmask=0177,dmask=0077")
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("mount %s on %s: the kernel has no %s filesystem (module vfat not loaded): %w", dev, dir, fstype, err)
	}
	if err != nil {
		return fmt.Errorf("mount %s (%s, read-write) on %s: %w", dev, fstype, dir, err)
	}
	return nil
}
