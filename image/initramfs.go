package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/u-root/u-root/pkg/cpio"
)

// tree is the file system of the initramfs being assembled, by path
// relative to / ("bin/weft"). Parent directories are implied.
type tree map[string]cpio.Record

func (t tree) file(name string, data []byte, perm uint64) {
	t[name] = cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm})
}

func (t tree) dir(name string, perm uint64) {
	t[name] = cpio.Directory(name, perm)
}

func (t tree) symlink(name, target string) {
	t[name] = cpio.Symlink(name, target)
}

func (t tree) chardev(name string, perm, major, minor uint64) {
	t[name] = cpio.CharDev(name, perm, major, minor)
}

// addDir copies the regular files under src into the tree at dst.
func (t tree) addDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		name := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			t.dir(name, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			t.file(name, b, 0o644)
		default:
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
		return nil
	})
}

// records returns the tree as newc records, reproducibly: every parent
// directory present, sorted by path (a directory before its contents, as
// the kernel's unpacker needs), inode numbers by position, owner root,
// mtime 0.
func (t tree) records() []cpio.Record {
	for name := range t {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := t[d]; !ok {
				t.dir(d, 0o755)
			}
		}
	}
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	recs := make([]cpio.Record, len(names))
	for i, n := range names {
		recs[i] = t[n]
		recs[i].Name = n
	}
	cpio.MakeAllReproducible(recs)
	for i := range recs {
		recs[i].Ino = uint64(i + 1)
		recs[i].NLink = 1
		if recs[i].Mode&cpio.S_IFMT == cpio.S_IFDIR {
			recs[i].NLink = 2
		}
	}
	return recs
}

// writeInitramfs writes the tree as a gzip-compressed newc archive. The
// gzip header carries no name and mtime 0, so equal trees give equal bytes.
func writeInitramfs(w io.Writer, t tree) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	cw := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecords(cw, t.records()); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// readInitramfs lists the records of a gzip-compressed newc archive with
// their contents, for tests and for checking what was built.
func readInitramfs(b []byte) ([]cpio.Record, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	return cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
}
