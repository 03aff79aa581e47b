// Package atomicfile replaces a file's content so that a reader, or a
// power cut, sees the old content or the new one whole, never a part.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path's content with data; see Write.
func WriteFile(path string, data []byte, mode fs.FileMode) error {
	return Write(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write replaces path's content with what fill writes, and gives the
// file mode (not masked by the umask). The content goes to a temporary
// file in path's directory (which must exist), is synced, and the file
// is renamed over path: a reader opens the old file or the new one. Then
// the file is synced again under its new name and the directory synced,
// so that after a power cut the new name points at the new content.
//
// The second sync is for FAT (the WEFT-STATE disk, see DESIGN.md): it
// writes a renamed file's new directory entry with no length and no
// first cluster and fills them in only when the file itself is written
// back; without it the file was empty after a reboot in QEMU
// (TestBootLastGood). Elsewhere it costs nothing: the data is synced.
//
// A failure before the rename removes the temporary file and leaves path
// as it was; one after it (a sync) leaves the new content in place, not
// yet known to be on disk. Either way the error names path. Two writers
// of one path at once each leave a whole file; the last rename wins.
func Write(path string, mode fs.FileMode, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if renamed, err := replace(f, path, mode, fill); err != nil {
		f.Close()
		if !renamed {
			os.Remove(f.Name())
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory %s: %w", path, dir, err)
	}
	return nil
}

// replace fills f, syncs it, renames it over path and syncs it again
// (for FAT, see Write); renamed says path holds f now.
func replace(f *os.File, path string, mode fs.FileMode, fill func(io.Writer) error) (renamed bool, err error) {
	if err := fill(f); err != nil {
		return false, err
	}
	if err := f.Chmod(mode); err != nil {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return false, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return true, fmt.Errorf("sync after rename: %w", err)
	}
	return true, nil
}

// RemoveTemps removes the temporary files that interrupted writes of
// path left (a power cut between creating one and renaming it): every
// ".<name>.*" beside it. Call it only where nothing else writes path at
// the same time: it would remove that write's temporary file and fail it.
func RemoveTemps(path string) {
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	for _, o := range old {
		os.Remove(o)
	}
}

// tempPattern names path's temporary files: hidden, beside it, and
// recognisable by RemoveTemps, as the writes before this package named
// them (so RemoveTemps also removes what those left).
func tempPattern(path string) string {
	return "." + filepath.Base(path) + ".*"
}
