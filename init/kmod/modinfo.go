// Package kmod loads kernel modules the way modprobe and udev would, for a
// system that has neither: it reads the .modinfo section of .ko files, builds
// and reads kmod's text index (modules.dep, modules.alias, modules.builtin),
// matches device modaliases against alias globs, and on Linux loads modules
// with their dependencies through finit_module, for devices present at boot
// (Coldplug) and for devices that appear later (Watch).
//
// The image builder writes the index from the .ko files it packs; PID 1
// reads it. Module names are normalised like kmod does: '-' becomes '_'.
package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Modinfo is what a module declares about itself in its .modinfo section.
type Modinfo struct {
	// Name is the module name (name=); empty for modules built before
	// kernels recorded it, in which case the file name is used.
	Name string
	// Depends are the modules that must be loaded first (depends=),
	// normalised, in the order the module lists them.
	Depends []string
	// Aliases are the glob patterns of devices and features the module
	// serves (alias=), e.g. "pci:v00008086d0000100Esv*sd*bc*sc*i*".
	Aliases []string
	// Vermagic is the kernel the module was built for (vermagic=).
	Vermagic string
}

// Magic numbers of the compressions kmod knows for modules. A compressed
// module is rejected with a clear error: the image decompresses at build time.
var compressedMagic = []struct {
	name  string
	magic []byte
}{
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"gzip", []byte{0x1f, 0x8b}},
}

// ReadModinfo parses the .modinfo section of an uncompressed .ko file.
func ReadModinfo(ko []byte) (mi Modinfo, err error) {
	for _, c := range compressedMagic {
		if bytes.HasPrefix(ko, c.magic) {
			return Modinfo{}, fmt.Errorf("module is %s-compressed: decompress it first", c.name)
		}
	}
	// debug/elf is hardened against hostile input, but a module file is
	// input all the same: a parser bug must not take PID 1 down.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed ELF: %v", r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return Modinfo{}, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return Modinfo{}, errors.New("no .modinfo section: not a kernel module")
	}
	if sec.Type == elf.SHT_NOBITS {
		return Modinfo{}, errors.New(".modinfo section has no data")
	}
	data, err := sec.Data()
	if err != nil {
		return Modinfo{}, fmt.Errorf(".modinfo section: %w", err)
	}
	return parseModinfo(data)
}

// parseModinfo splits the NUL-separated key=value strings of .modinfo.
// Padding (runs of NUL) is skipped; a string without '=' is an error, as
// modinfo(8) would not know what to make of it either.
func parseModinfo(data []byte) (Modinfo, error) {
	var mi Modinfo
	off := 0
	for _, field := range bytes.Split(data, []byte{0}) {
		start := off
		off += len(field) + 1
		if len(field) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(field, []byte{'='})
		if !ok {
			return Modinfo{}, fmt.Errorf(".modinfo: byte %d: field %q has no '='", start, truncate(field))
		}
		switch string(k) {
		case "name":
			mi.Name = NormalizeName(string(v))
		case "depends":
			for d := range strings.SplitSeq(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, NormalizeName(d))
				}
			}
		case "alias":
			if len(v) > 0 {
				mi.Aliases = append(mi.Aliases, string(v))
			}
		case "vermagic":
			mi.Vermagic = string(v)
		}
	}
	return mi, nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// NormalizeName turns a module name or file name stem into kmod's canonical
// form: '-' and '_' are the same character in module names.
func NormalizeName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// NameFromPath derives the module name from its path in the module tree:
// "kernel/drivers/char/hw_random/virtio-rng.ko.xz" is "virtio_rng".
func NameFromPath(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return NormalizeName(strings.TrimSuffix(base, ".ko"))
}
