package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weftnet/weft/init/kmod"
)

// KernelMeta is the meta-package that always depends on Debian's current
// amd64 kernel; the versioned package it names changes at every ABI bump.
const KernelMeta = "linux-image-amd64"

// Modules are the kernel modules a server node needs, by name: NICs from
// virtual to 100G, bonding and VLANs, the config drive's file systems and
// block devices, local disks for the state partition, TUN. Their
// dependencies are added automatically; a name the kernel package does
// not ship is skipped with a progress line.
var Modules = []string{
	"virtio_net", "virtio_blk", "virtio_pci", "virtio_rng", "virtio_scsi",
	"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "mlx5_core", "bnxt_en",
	"bonding", "8021q", "tun",
	// veth joins a host endpoint's namespace to the host; it also lets the
	// bond/VLAN tests run in a VM with this very kernel subset.
	"veth",
	// The vRouter's fast path on a kernel without TCX (6.1): tc's clsact
	// qdisc and BPF classifier.
	"sch_ingress", "cls_bpf",
	"isofs", "cdrom", "sr_mod", "ata_piix",
	// Local disks, for a state partition labelled WEFT-STATE (the last
	// good config): SCSI/SAS/virtio-scsi disks, SATA, NVMe.
	"sd_mod", "ahci", "nvme",
	// vfat mounts only with its code page and character set loaded: the
	// kernel asks modprobe for them, and there is no modprobe. Debian's
	// defaults are code page 437 and iocharset ascii.
	"vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8",
}

// kernel is one extracted kernel subset in the cache.
type kernel struct {
	Package string   `json:"package"`
	Version string   `json:"version"` // Debian package version: the cache key
	Release string   `json:"release"` // uname -r, the module directory name
	Wanted  []string `json:"wanted"`  // Modules at the time the subset was cut
	Modules []string `json:"modules"` // what ended up in it, dependencies included
	Skipped []string `json:"skipped,omitempty"`

	dir string
}

func (k *kernel) vmlinuz() string   { return filepath.Join(k.dir, "vmlinuz") }
func (k *kernel) vmlinux() string   { return filepath.Join(k.dir, "vmlinux") }
func (k *kernel) moduleDir() string { return filepath.Join(k.dir, "modules", k.Release) }

const kernelMetaFile = "kernel.json"

// prepareKernel returns the cached kernel subset for the current Debian
// kernel, downloading and extracting it when the cache does not have it.
func (b *builder) prepareKernel(ctx context.Context) (*kernel, error) {
	for _, tool := range []string{"apt-cache", "apt-get", "dpkg", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: this needs a Debian system with xz-utils (run make deps)", tool)
		}
	}
	unlock, err := lockDir(b.opt.Cache)
	if err != nil {
		return nil, err
	}
	defer unlock()

	pkg, version, err := b.resolveKernel(ctx)
	if err != nil {
		cached := b.newestCached()
		if cached == nil {
			return nil, err
		}
		b.progress("image: cannot resolve the kernel package (%v); using cached %s %s", err, cached.Package, cached.Version)
		return cached, nil
	}
	b.progress("image: kernel package %s %s", pkg, version)
	dir := filepath.Join(b.opt.Cache, "kernel", safeName(version))
	if k, err := readKernelMeta(dir); err == nil && k.Package == pkg && slices.Equal(k.Wanted, Modules) {
		b.progress("image: kernel %s cached in %s", k.Release, dir)
		return k, nil
	}
	deb, err := b.download(ctx, pkg, version)
	if err != nil {
		return nil, err
	}
	return b.extract(ctx, deb, pkg, version, dir)
}

// resolveKernel names the versioned kernel package and its version, from
// apt's lists; it runs apt-get update once when the lists lack them.
func (b *builder) resolveKernel(ctx context.Context) (pkg, version string, err error) {
	pkg, err = aptDepends(ctx)
	if err != nil {
		b.progress("image: %v; running apt-get update", err)
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return "", "", fmt.Errorf("apt-get update failed: %v: %s (run make deps as root, or check /etc/apt/sources.list)", uerr, lastLines(out, 3))
		}
		if pkg, err = aptDepends(ctx); err != nil {
			return "", "", fmt.Errorf("%w, even after apt-get update (is this Debian amd64 with the main component enabled?)", err)
		}
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache show %s: %v", pkg, err)
	}
	version = field(out, "Version")
	if version == "" {
		return "", "", fmt.Errorf("apt-cache show %s: no Version field", pkg)
	}
	return pkg, version, nil
}

func aptDepends(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", KernelMeta).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %v: %s", KernelMeta, err, lastLines(out, 2))
	}
	pkg := parseDepends(out)
	if pkg == "" {
		return "", fmt.Errorf("apt-cache depends %s names no linux-image package", KernelMeta)
	}
	return pkg, nil
}

// parseDepends picks the versioned kernel from `apt-cache depends` output:
//
//	linux-image-amd64
//	  Depends: linux-image-6.1.0-56-amd64
func parseDepends(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimLeft(strings.TrimSpace(sc.Text()), "|")
		v, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), "<>")
		if strings.HasPrefix(v, "linux-image-") && v != KernelMeta && !strings.ContainsAny(v, " /") {
			return v
		}
	}
	return ""
}

// field returns the value of a deb822 field in the first stanza.
func field(out []byte, name string) string {
	for line := range strings.SplitSeq(string(out), "\n") {
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// download fetches the .deb into <cache>/debs once; later runs reuse it.
func (b *builder) download(ctx context.Context, pkg, version string) (string, error) {
	debs := filepath.Join(b.opt.Cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	// apt encodes an epoch's ':' as %3a in file names.
	pattern := pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_*.deb"
	if m, _ := filepath.Glob(filepath.Join(debs, pattern)); len(m) > 0 {
		return m[0], nil
	}
	b.progress("image: downloading %s %s", pkg, version)
	tmp, err := os.MkdirTemp(debs, ".download-")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt's sandbox user cannot write into a root-owned cache; that is a
	// warning, not an error.
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s failed: %v: %s (run apt-get update, or make deps)", pkg, version, err, lastLines(out, 3))
	}
	m, _ := filepath.Glob(filepath.Join(tmp, pattern))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s: no %s written", pkg, version, pattern)
	}
	dst := filepath.Join(debs, filepath.Base(m[0]))
	if err := os.Rename(m[0], dst); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	// Keep one kernel .deb: the previous ABI's is never needed again.
	old, _ := filepath.Glob(filepath.Join(debs, "linux-image-*.deb"))
	for _, o := range old {
		if o != dst {
			os.Remove(o)
		}
	}
	return dst, nil
}

// extract unpacks the .deb into a scratch directory and keeps the subset
// a node boots from: vmlinuz, the PVH vmlinux, and the module closure.
func (b *builder) extract(ctx context.Context, deb, pkg, version, dir string) (*kernel, error) {
	b.progress("image: extracting %s", filepath.Base(deb))
	root := filepath.Join(b.opt.Cache, "kernel")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	scratch, err := os.MkdirTemp(b.opt.Cache, ".extract-")
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(scratch)
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", deb, scratch).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg -x %s failed: %v: %s (delete it to download it again)", deb, err, lastLines(out, 3))
	}
	modRoot, release, err := findModuleTree(scratch)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(deb), err)
	}
	k := &kernel{Package: pkg, Version: version, Release: release, Wanted: slices.Clone(Modules)}

	staging, err := os.MkdirTemp(root, ".staging-")
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(staging)
	k.dir = staging

	vmlinuz, err := os.ReadFile(filepath.Join(scratch, "boot", "vmlinuz-"+release))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(deb), err)
	}
	if err := os.WriteFile(k.vmlinuz(), vmlinuz, 0o644); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	vmlinux, err := extractVmlinux(ctx, vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("vmlinuz-%s: %w", release, err)
	}
	if err := os.WriteFile(k.vmlinux(), vmlinux, 0o644); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	b.progress("image: vmlinux extracted (%s)", size(int64(len(vmlinux))))

	if err := b.copyModules(ctx, k, modRoot); err != nil {
		return nil, err
	}
	meta, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(staging, kernelMetaFile), append(meta, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	// The metadata file is written last and the directory renamed into
	// place, so an interrupted run leaves no half entry behind.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(staging, dir); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	k.dir = dir
	return k, nil
}

// findModuleTree finds lib/modules/<release> (or usr/lib/modules) in an
// extracted kernel package.
func findModuleTree(root string) (dir, release string, err error) {
	for _, base := range []string{"lib/modules", "usr/lib/modules"} {
		ents, err := os.ReadDir(filepath.Join(root, base))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				return filepath.Join(root, base, e.Name()), e.Name(), nil
			}
		}
	}
	return "", "", errors.New("no lib/modules/<release> in the package")
}

// copyModules copies the wanted modules and their dependency closure from
// the extracted tree into the cache entry, decompressed, with the index.
func (b *builder) copyModules(ctx context.Context, k *kernel, src string) error {
	byName := map[string]string{} // module name -> path relative to src
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && isModuleFile(d.Name()) {
			rel, _ := filepath.Rel(src, p)
			name := kmod.NameFromPath(rel)
			if _, dup := byName[name]; !dup {
				byName[name] = filepath.ToSlash(rel)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("module tree: %w", err)
	}
	dst := k.moduleDir()
	infos := map[string]kmod.Modinfo{}
	queue := []string{}
	for _, m := range Modules {
		if _, ok := byName[kmod.NormalizeName(m)]; !ok {
			b.progress("image: module %s is not in %s, skipped", m, k.Package)
			k.Skipped = append(k.Skipped, m)
			continue
		}
		queue = append(queue, kmod.NormalizeName(m))
	}
	done := map[string]bool{}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if done[name] {
			continue
		}
		done[name] = true
		rel, ok := byName[name]
		if !ok {
			return fmt.Errorf("module tree of %s: a module depends on %s, which the package does not ship", k.Package, name)
		}
		ko, err := readModule(ctx, filepath.Join(src, rel))
		if err != nil {
			return err
		}
		mi, err := kmod.ReadModinfo(ko)
		if err != nil {
			return fmt.Errorf("module %s: %w", rel, err)
		}
		plain := stripCompression(rel)
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(plain)), 0o755); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dst, plain), ko, 0o644); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		infos[plain] = mi
		k.Modules = append(k.Modules, name)
		queue = append(queue, mi.Depends...)
	}
	slices.Sort(k.Modules)
	ix := kmod.BuildIndex(infos)
	if u := ix.Unresolved(); len(u) > 0 {
		return fmt.Errorf("module index: unresolved dependencies %q", u)
	}
	if builtin, err := os.ReadFile(filepath.Join(src, kmod.BuiltinFile)); err == nil {
		for line := range strings.SplitSeq(string(builtin), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				ix.AddBuiltin(line)
			}
		}
	}
	if err := ix.WriteFiles(dst); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	b.progress("image: %d modules (%d asked for, with dependencies)", len(k.Modules), len(Modules)-len(k.Skipped))
	return nil
}

func isModuleFile(name string) bool {
	return strings.HasSuffix(stripCompression(name), ".ko")
}

func stripCompression(p string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if s, ok := strings.CutSuffix(p, ext); ok {
			return s
		}
	}
	return p
}

// readModule returns the plain ELF of a module file. Debian 12 ships
// plain .ko files; later releases compress them (xz, zstd), and the
// initramfs must hold them plain: its loader passes files straight to
// finit_module and the kernel's in-kernel decompression is optional.
func readModule(ctx context.Context, p string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".gz"):
		tool = "gzip"
	default:
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("module: %w", err)
		}
		return b, nil
	}
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("module %s is compressed with %s, which is not installed (run make deps)", filepath.Base(p), tool)
	}
	out, err := exec.CommandContext(ctx, tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s: %w", filepath.Base(p), tool, err)
	}
	return out, nil
}

func readKernelMeta(dir string) (*kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, kernelMetaFile))
	if err != nil {
		return nil, err
	}
	k := &kernel{dir: dir}
	if err := json.Unmarshal(b, k); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, kernelMetaFile), err)
	}
	if k.Release == "" || k.Package == "" {
		return nil, fmt.Errorf("%s: incomplete", filepath.Join(dir, kernelMetaFile))
	}
	return k, nil
}

// newestCached is the most recently cut kernel subset in the cache, for
// building offline when apt cannot answer.
func (b *builder) newestCached() *kernel {
	ents, _ := filepath.Glob(filepath.Join(b.opt.Cache, "kernel", "*", kernelMetaFile))
	var best *kernel
	var bestTime int64
	for _, e := range ents {
		st, err := os.Stat(e)
		if err != nil {
			continue
		}
		k, err := readKernelMeta(filepath.Dir(e))
		if err != nil || !slices.Equal(k.Wanted, Modules) {
			continue
		}
		if t := st.ModTime().UnixNano(); best == nil || t > bestTime {
			best, bestTime = k, t
		}
	}
	return best
}

// safeName makes a Debian version usable as a directory name.
func safeName(v string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".+~-", r):
			return r
		}
		return '_'
	}, v)
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
