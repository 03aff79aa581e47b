package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
)

// ConfigDriveLabel is the volume label OpenStack config drives carry and
// the node looks for.
const ConfigDriveLabel = "config-2"

// BuildConfigDrive writes dir (openstack/latest/meta_data.json, …) into an
// ISO 9660 image at iso, labelled config-2, with Joliet and Rock Ridge
// names, as OpenStack's nova does.
func BuildConfigDrive(ctx context.Context, dir, iso string) error {
	bin, err := exec.LookPath("xorriso")
	if err != nil {
		return fmt.Errorf("config drive: xorriso not found: run make deps (Debian package xorriso)")
	}
	cmd := exec.CommandContext(ctx, bin, "-as", "mkisofs", "-V", ConfigDriveLabel, "-J", "-R", "-o", iso, dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("config drive %s: xorriso: %w: %s", dir, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
