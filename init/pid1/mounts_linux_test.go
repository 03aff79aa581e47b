package pid1

import (
	"slices"
	"testing"
)

func TestMountPoints(t *testing.T) {
	doc := `rootfs / rootfs rw 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/vda /run/weft/config\040drive iso9660 ro,relatime 0 0
broken
tmpfs /odd\134path tmpfs rw 0 0
tmpfs /trunc\04 tmpfs rw 0 0
`
	want := []string{"/", "/proc", "/run/weft/config drive", `/odd\path`, `/trunc\04`}
	if got := mountPoints(doc); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func FuzzMountPoints(f *testing.F) {
	f.Add("proc /proc proc rw 0 0\n/dev/vda /a\\040b iso9660 ro 0 0\n")
	f.Add("x \\\\\\0 y\n")
	f.Fuzz(func(t *testing.T, doc string) {
		for _, p := range mountPoints(doc) {
			if p == "" {
				t.Errorf("empty mount point from %q", doc)
			}
		}
	})
}
