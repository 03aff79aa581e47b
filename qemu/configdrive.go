package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ConfigDriveLabel is the volume label OpenStack config drives carry and
// the node looks for (a FAT drive carries it upper-cased).
const ConfigDriveLabel = "config-2"

// The config drive filesystems nova writes (config_drive_format).
const (
	FSISO9660 = "iso9660"
	FSVFAT    = "vfat"
)

// BuildConfigDrive writes dir (openstack/latest/meta_data.json, …) into an
// ISO 9660 image at iso, labelled config-2, with Joliet and Rock Ridge
// names, as OpenStack's nova does.
func BuildConfigDrive(ctx context.Context, dir, iso string) error {
	bin, err := exec.LookPath("xorriso")
	if err != nil {
		return fmt.Errorf("config drive: xorriso not found: run make deps (Debian package xorriso)")
	}
	return runTool(ctx, "config drive "+dir, bin, "-as", "mkisofs", "-V", ConfigDriveLabel, "-J", "-R", "-o", iso, dir)
}

// vfatDriveSize is the FAT config drive's size: nova's is 64 MiB; the
// contents here are a few kilobytes, and FAT16's floor is well below.
const vfatDriveSize = 16 << 20

// BuildConfigDriveVFAT writes dir into a FAT image at img labelled
// CONFIG-2 (mkfs.vfat, mcopy), as nova does with config_drive_format=vfat.
func BuildConfigDriveVFAT(ctx context.Context, dir, img string) error {
	mkfs, err := exec.LookPath("mkfs.vfat")
	if err != nil {
		return fmt.Errorf("config drive: mkfs.vfat not found: run make deps (Debian package dosfstools)")
	}
	mcopy, err := exec.LookPath("mcopy")
	if err != nil {
		return fmt.Errorf("config drive: mcopy not found: run make deps (Debian package mtools)")
	}
	what := "config drive " + dir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Truncate(img, vfatDriveSize); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := runTool(ctx, what, mkfs, "-n", "CONFIG-2", img); err != nil {
		return err
	}
	for _, e := range ents {
		if err := runTool(ctx, what, mcopy, "-s", "-i", img, filepath.Join(dir, e.Name()), "::"); err != nil {
			return err
		}
	}
	return nil
}

// runTool runs a drive-building tool, its output in the error.
func runTool(ctx context.Context, what, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s: %w: %s", what, filepath.Base(bin), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
