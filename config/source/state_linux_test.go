//go:build linux

package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
)

// MountState mounts only a FAT filesystem labelled WEFT-STATE: a disk
// without the label is never touched, whatever else is on it, and one
// with the label that cannot be written (an ISO) is refused by name.
func TestMountState(t *testing.T) {
	state := makeVFAT(t, "", "WEFT-STATE", 16, 16)
	data := makeVFAT(t, "", "DATA", 12, 1)
	blank := filepath.Join(t.TempDir(), "blank.img")
	os.WriteFile(blank, make([]byte, 1<<20), 0o644)
	iso := makeISO(t, t.TempDir(), StateLabel)
	for _, tc := range []struct {
		name  string
		devs  map[string]string // name -> image
		mount error
		want  string // the device mounted, or what the error says
	}{
		{"partition", map[string]string{"vda": data, "vdb": blank, "vdb1": state}, nil, "vdb1"},
		{"none labelled", map[string]string{"vda": data, "vdb": blank}, nil, "no filesystem labelled WEFT-STATE"},
		{"iso", map[string]string{"sr0": iso}, nil, "sr0: labelled WEFT-STATE but iso9660, not FAT"},
		{"mount fails", map[string]string{"vdc1": state}, errors.New("EIO"), "vdc1: EIO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev, sizes := t.TempDir(), map[string]string{}
			for name, img := range tc.devs {
				os.Symlink(img, filepath.Join(dev, name))
				sizes[name] = "2048"
			}
			var mounted []string
			mount := func(d, dir, fstype string) error {
				mounted = append(mounted, d+" "+fstype)
				return tc.mount
			}
			dir := filepath.Join(t.TempDir(), "state")
			sd, err := mountState(context.Background(), fakeBlock(t, sizes), dev, dir, mount, testLogger(t))
			if strings.HasPrefix(tc.want, "vd") && tc.mount == nil {
				want := filepath.Join(dev, tc.want)
				if err != nil || sd.Dev != want || sd.Dir != dir || len(mounted) != 1 || mounted[0] != want+" vfat" {
					t.Fatalf("mountState = %+v, %v; mounted %q; want %s", sd, err, mounted, want)
				}
				if sd.String() != want+" (WEFT-STATE)" {
					t.Errorf("String() = %q", sd.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("mountState: %v; want an error saying %q", err, tc.want)
			}
			if errors.Is(err, config.ErrNotFound) != (len(mounted) == 0 && tc.name == "none labelled") {
				t.Errorf("errors.Is(ErrNotFound) = %v for %v", errors.Is(err, config.ErrNotFound), err)
			}
			if tc.mount == nil && len(mounted) > 0 {
				t.Errorf("mounted %q", mounted)
			}
		})
	}
}
