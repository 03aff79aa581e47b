// Package image builds Weft's bootable artifacts: Debian's kernel (as
// vmlinuz for PXE and as the uncompressed PVH vmlinux for fast QEMU
// boots), a reproducible initramfs holding the static weft binary as /init
// with the kernel modules a server needs and their index, an iPXE script
// and a manifest. Building twice from the same inputs gives byte-identical
// files.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// Options say what to build and where.
type Options struct {
	Out     string // directory the artifacts are written to; created if needed
	Cache   string // kernel cache: the .deb and the extracted subset, per package version
	Binary  string // the static weft binary to pack as /init; empty = the running executable
	Cmdline string // extra kernel parameters for boot.ipxe, after the defaults
	// Progress receives "image: ..." lines; nil discards them.
	Progress io.Writer
}

// Artifact file names in Options.Out. boot.ipxe refers to the others by
// these relative names, so the directory can be served over TFTP or HTTP.
const (
	Vmlinuz   = "vmlinuz"
	Vmlinux   = "vmlinux"
	Initramfs = "initramfs.cpio.gz"
	IPXE      = "boot.ipxe"
	Manifest  = "manifest.json"
)

// DefaultCmdline are the kernel parameters every boot gets: the serial
// console, and reboot instead of hanging should the kernel panic.
const DefaultCmdline = "console=ttyS0 panic=-1"

// Artifacts describe what Build wrote.
type Artifacts struct {
	Dir           string   `json:"-"`
	KernelPackage string   `json:"kernel_package"` // linux-image-6.1.0-56-amd64
	KernelVersion string   `json:"kernel_version"` // Debian version, 6.1.192-2
	KernelRelease string   `json:"kernel_release"` // uname -r, 6.1.0-56-amd64
	Weft          string   `json:"weft"`           // version of the packed binary
	Cmdline       string   `json:"cmdline"`        // as in boot.ipxe, without initrd=
	Modules       []string `json:"modules"`
	Files         []File   `json:"files"` // in the order above, manifest excluded
}

// File is one artifact.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Path returns the full path of the artifact name (Vmlinux, ...).
func (a *Artifacts) Path(name string) string { return filepath.Join(a.Dir, name) }

// MaxInitramfs is the size the compressed initramfs must stay under: iPXE
// over HTTP (how the controller and Ironic boot nodes) and a small boot
// partition stay practical below it. It was 15 MiB until the Kubernetes
// join: client-go's typed clients link every k8s.io/api group (its scheme
// registers them all), which took the static binary from 28 to 67 MB and
// the initramfs to 23 MB. A leaner watch (a REST+JSON client of the two
// resources Weft reads) would win most of it back.
const MaxInitramfs = 32 << 20

type builder struct {
	opt Options
}

func (b *builder) progress(format string, args ...any) {
	fmt.Fprintf(b.opt.Progress, format+"\n", args...)
}

// Build resolves and caches the kernel, assembles the initramfs and writes
// the artifacts into opt.Out, each atomically.
func Build(ctx context.Context, opt Options) (*Artifacts, error) {
	if opt.Out == "" || opt.Cache == "" {
		return nil, errors.New("image: Out and Cache directories are required")
	}
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	if opt.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("image: which binary to pack: %w", err)
		}
		opt.Binary = exe
	}
	b := &builder{opt: opt}
	bin, version, err := readBinary(opt.Binary)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Cache, 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", opt.Cache, err)
	}
	k, err := b.prepareKernel(ctx)
	if err != nil {
		return nil, err
	}

	t, err := b.initramfsTree(k, bin, version)
	if err != nil {
		return nil, err
	}
	b.progress("image: writing initramfs")
	var initrd bytes.Buffer
	if err := writeInitramfs(&initrd, t); err != nil {
		return nil, err
	}
	if initrd.Len() >= MaxInitramfs {
		return nil, fmt.Errorf("initramfs is %s, over the %s limit: the weft binary is %s (build it with make build: static, stripped)",
			size(int64(initrd.Len())), size(MaxInitramfs), size(int64(len(bin))))
	}

	cmdline := DefaultCmdline
	if extra := strings.Join(strings.Fields(opt.Cmdline), " "); extra != "" {
		cmdline += " " + extra
	}
	a := &Artifacts{
		Dir:           opt.Out,
		KernelPackage: k.Package,
		KernelVersion: k.Version,
		KernelRelease: k.Release,
		Weft:          version,
		Cmdline:       cmdline,
		Modules:       k.Modules,
	}
	vmlinuz, err := os.ReadFile(k.vmlinuz())
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w (delete %s to rebuild it)", err, k.dir)
	}
	vmlinux, err := os.ReadFile(k.vmlinux())
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w (delete %s to rebuild it)", err, k.dir)
	}
	ipxe := fmt.Sprintf("#!ipxe\ndhcp\nkernel %s initrd=%s %s\ninitrd %s\nboot\n", Vmlinuz, Initramfs, cmdline, Initramfs)

	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("output %s: %w", opt.Out, err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{Vmlinuz, vmlinuz},
		{Vmlinux, vmlinux},
		{Initramfs, initrd.Bytes()},
		{IPXE, []byte(ipxe)},
	} {
		if err := atomicfile.WriteFile(filepath.Join(opt.Out, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(f.data)
		a.Files = append(a.Files, File{Name: f.name, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	manifest, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(opt.Out, Manifest), append(manifest, '\n'), 0o644); err != nil {
		return nil, err
	}
	for _, f := range a.Files {
		b.progress("image: %-18s %9s  %s", f.Name, size(f.Size), filepath.Join(opt.Out, f.Name))
	}
	return a, nil
}

// initramfsTree lays out the initramfs: the binary as /init, the device
// nodes /init needs before it mounts devtmpfs, mount points, CA
// certificates, the release file and the modules with their index.
func (b *builder) initramfsTree(k *kernel, bin []byte, version string) (tree, error) {
	t := tree{}
	t.file("bin/weft", bin, 0o755)
	t.symlink("init", "/bin/weft")
	// Without /dev/console the kernel starts /init with no stdout.
	t.chardev("dev/console", 0o600, 5, 1)
	t.chardev("dev/null", 0o666, 1, 3)
	for _, d := range []string{"proc", "sys", "dev", "run", "etc", "var/lib/weft", "root"} {
		t.dir(d, 0o755)
	}
	t.dir("tmp", 0o1777)
	const caFile = "/etc/ssl/certs/ca-certificates.crt"
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (install ca-certificates: run make deps)", err)
	}
	t.file(strings.TrimPrefix(caFile, "/"), ca, 0o644)
	sum := sha256.Sum256(bin)
	release := fmt.Sprintf("NAME=Weft\nID=weft\nVERSION=%q\nWEFT_BINARY_SHA256=%s\nKERNEL_RELEASE=%s\nKERNEL_PACKAGE=%q\n",
		version, hex.EncodeToString(sum[:]), k.Release, k.Package+" "+k.Version)
	t.file("etc/weft-release", []byte(release), 0o644)
	if err := t.addDir(k.moduleDir(), "lib/modules/"+k.Release); err != nil {
		return nil, fmt.Errorf("kernel cache: %w (delete %s to rebuild it)", err, k.dir)
	}
	return t, nil
}

// readBinary reads the binary to pack and checks that it can run as /init
// of an amd64 kernel with no libraries: a static x86-64 executable.
func readBinary(p string) ([]byte, string, error) {
	bin, err := os.ReadFile(p)
	if err != nil {
		return nil, "", fmt.Errorf("weft binary: %w (run make build)", err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, "", fmt.Errorf("weft binary %s: not an ELF executable: %w", p, err)
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, "", fmt.Errorf("weft binary %s is for %v; the image kernel is x86-64 (GOARCH=amd64)", p, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, "", fmt.Errorf("weft binary %s is dynamically linked; the initramfs has no libc: build it with CGO_ENABLED=0 (make build)", p)
		}
	}
	version := "unknown"
	if bi, err := buildinfo.Read(bytes.NewReader(bin)); err == nil {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				version += " " + s.Value
			}
			if s.Key == "vcs.modified" && s.Value == "true" {
				version += "+dirty"
			}
		}
	}
	return bin, version, nil
}

// size formats a byte count for people: "2.3 MB".
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
