package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeQEMU puts a qemu-system-x86_64 on PATH that lists firmware
// directories like `qemu -L help` and does nothing else.
func fakeQEMU(t *testing.T, firmwareDirs ...string) {
	t.Helper()
	bin := t.TempDir()
	script := "#!/bin/sh\nprintf '%s\\n' " + strings.Join(firmwareDirs, " ") + "\n"
	if err := os.WriteFile(filepath.Join(bin, Binary), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
}

func TestStartPreflight(t *testing.T) {
	tftp := t.TempDir()
	os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte("#!ipxe\n"), 0o644)
	roms := t.TempDir()
	os.WriteFile(filepath.Join(roms, "efi-virtio.rom"), nil, 0o644)
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(kernel, nil, 0o644)
	pxe := func(model, boot string) Machine {
		return Machine{PXE: true, NICs: []NIC{{Model: model, User: &UserNet{TFTP: tftp, BootFile: boot}}}}
	}
	tests := []struct {
		name string
		path []string // firmware dirs of the fake QEMU; nil = no QEMU at all
		m    Machine
		want string
	}{
		{"no qemu", nil, Machine{Kernel: kernel}, "qemu-system-x86_64 not found: run make deps"},
		{"missing kernel", []string{roms}, Machine{Name: "n", Kernel: "/nonexistent/vmlinux"}, `qemu "n": kernel: stat /nonexistent/vmlinux`},
		{"kernel is a dir", []string{roms}, Machine{Kernel: roms}, "kernel: " + roms + " is not a regular file"},
		{"missing initrd", []string{roms}, Machine{Kernel: kernel, Initrd: "/nonexistent/i"}, "initrd: stat"},
		{"config drive not a dir", []string{roms}, Machine{Kernel: kernel, ConfigDrive: kernel}, "config_drive: " + kernel + " is not a directory"},
		{"pxe boot file missing", []string{roms}, pxe("", "nope.ipxe"), "nics[0].user.boot_file: stat"},
		{"pxe rom missing", []string{"/nonexistent"}, pxe("", "boot.ipxe"), "efi-virtio.rom is in none of QEMU's firmware directories [/nonexistent]: install Debian package ipxe-qemu"},
		{"pxe e1000 rom missing", []string{roms}, pxe("e1000", "boot.ipxe"), "the e1000 ROM efi-e1000.rom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path == nil {
				t.Setenv("PATH", t.TempDir())
			} else {
				fakeQEMU(t, tt.path...)
			}
			vm, err := Start(context.Background(), tt.m)
			if err == nil {
				vm.Stop()
				t.Fatalf("Start succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start: %v\nwant an error containing %q", err, tt.want)
			}
		})
	}
}

func TestPXEROMFound(t *testing.T) {
	roms := t.TempDir()
	os.WriteFile(filepath.Join(roms, "efi-virtio.rom"), nil, 0o644)
	fakeQEMU(t, "/nonexistent", roms)
	if err := checkPXEROM(Binary, "virtio-net-pci"); err != nil {
		t.Fatal(err)
	}
}
