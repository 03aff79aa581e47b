package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// writeTree writes files (path -> content) under dir.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runTool(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// makeISO builds an ISO 9660 image of dir as Nova does for a config drive.
func makeISO(t testing.TB, dir, label string) string {
	t.Helper()
	testenv.RequireTools(t, "xorriso")
	img := filepath.Join(t.TempDir(), "cd.iso")
	runTool(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-J", "-R", "-o", img, dir)
	return img
}

// makeVFAT builds a FAT image (fat 12, 16 or 32) of sizeMB labelled label
// and copies dir's contents into it.
func makeVFAT(t testing.TB, dir, label string, fat, sizeMB int) string {
	t.Helper()
	testenv.RequireTools(t, "mkfs.vfat", "mcopy")
	img := filepath.Join(t.TempDir(), "cd.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mkfs.vfat", "-F", strconv.Itoa(fat), "-n", label, img)
	if dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			runTool(t, "mcopy", "-s", "-i", img, filepath.Join(dir, e.Name()), "::")
		}
	}
	return img
}

func labelOf(t *testing.T, img string) (string, string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fstype, label, err := readLabel(f)
	if err != nil {
		t.Fatal(err)
	}
	return fstype, label
}

func TestReadLabelRealImages(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"openstack/latest/meta_data.json": `{"uuid": "x"}`})
	tests := []struct {
		name      string
		make      func(*testing.T) string
		fstype    string
		wantLabel string
	}{
		{"iso9660 config-2", func(t *testing.T) string { return makeISO(t, src, "config-2") }, fsISO9660, "config-2"},
		{"iso9660 CONFIG-2", func(t *testing.T) string { return makeISO(t, src, "CONFIG-2") }, fsISO9660, "CONFIG-2"},
		{"iso9660 other", func(t *testing.T) string { return makeISO(t, src, "cidata") }, fsISO9660, "cidata"},
		{"fat12", func(t *testing.T) string { return makeVFAT(t, src, "CONFIG-2", 12, 2) }, fsVFAT, "CONFIG-2"},
		{"fat16", func(t *testing.T) string { return makeVFAT(t, src, "CONFIG-2", 16, 20) }, fsVFAT, "CONFIG-2"},
		{"fat32", func(t *testing.T) string { return makeVFAT(t, src, "CONFIG-2", 32, 40) }, fsVFAT, "CONFIG-2"},
		{"fat lower-case label", func(t *testing.T) string { return makeVFAT(t, "", "config-2", 16, 20) }, fsVFAT, "config-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fstype, label := labelOf(t, tc.make(t))
			if fstype != tc.fstype || label != tc.wantLabel {
				t.Errorf("readLabel = %q %q, want %q %q", fstype, label, tc.fstype, tc.wantLabel)
			}
		})
	}
}

// isoPVD returns a minimal image holding an ISO 9660 primary volume
// descriptor with label, an optional Joliet one, and a terminator.
func isoPVD(label, joliet string) []byte {
	img := make([]byte, 32768+3*2048)
	d := img[32768:]
	d[0], d[6] = 1, 1
	copy(d[1:6], "CD001")
	copy(d[40:72], bytes.Repeat([]byte(" "), 32))
	copy(d[40:72], label)
	d = img[32768+2048:]
	if joliet != "" {
		d[0], d[6] = 2, 1
		copy(d[1:6], "CD001")
		copy(d[88:91], "%/E")
		for i, r := range joliet {
			binary.BigEndian.PutUint16(d[40+2*i:], uint16(r))
		}
		d = img[32768+4096:]
	}
	d[0], d[6] = 255, 1
	copy(d[1:6], "CD001")
	return img
}

// fatBoot returns a FAT boot sector: fat32 puts the label at 71, else 43.
func fatBoot(label string, fat32 bool) []byte {
	b := make([]byte, 512)
	b[0] = 0xeb
	binary.LittleEndian.PutUint16(b[11:], 512)
	b[13] = 4
	binary.LittleEndian.PutUint16(b[14:], 1)
	b[16] = 2
	sig, off := 38, 43
	if fat32 {
		binary.LittleEndian.PutUint32(b[36:], 100)
		sig, off = 66, 71
	} else {
		binary.LittleEndian.PutUint16(b[22:], 9)
	}
	b[sig] = 0x29
	copy(b[off:off+11], "           ")
	copy(b[off:], label)
	b[510], b[511] = 0x55, 0xaa
	return b
}

type errReader struct{}

func (errReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("I/O error") }

func TestReadLabelSynthetic(t *testing.T) {
	tests := []struct {
		name          string
		img           []byte
		fstype, label string
	}{
		{"empty", nil, "", ""},
		{"zeros", make([]byte, 70000), "", ""},
		{"iso", isoPVD("config-2", ""), fsISO9660, "config-2"},
		{"iso joliet only", isoPVD("", "config-2"), fsISO9660, "config-2"},
		{"iso primary wins", isoPVD("CONFIG_2", "config-2"), fsISO9660, "CONFIG_2"},
		{"iso truncated", isoPVD("config-2", "")[:33000], "", ""},
		{"fat16", fatBoot("CONFIG-2", false), fsVFAT, "CONFIG-2"},
		{"fat32", fatBoot("CONFIG-2", true), fsVFAT, "CONFIG-2"},
		{"fat no name", fatBoot("NO NAME", false), fsVFAT, ""},
		{"fat bad signature", func() []byte { b := fatBoot("X", false); b[511] = 0; return b }(), "", ""},
		{"fat bad sector size", func() []byte { b := fatBoot("X", false); b[11] = 7; return b }(), "", ""},
		{"fat no extended signature", func() []byte { b := fatBoot("X", false); b[38] = 0; return b }(), fsVFAT, ""},
		{"mbr is not fat", func() []byte { b := make([]byte, 512); b[510], b[511] = 0x55, 0xaa; return b }(), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fstype, label, err := readLabel(bytes.NewReader(tc.img))
			if err != nil || fstype != tc.fstype || label != tc.label {
				t.Errorf("readLabel = %q %q %v, want %q %q", fstype, label, err, tc.fstype, tc.label)
			}
		})
	}
	if _, _, err := readLabel(errReader{}); err == nil {
		t.Error("I/O error not reported")
	}
}

func FuzzReadLabel(f *testing.F) {
	f.Add(isoPVD("config-2", ""))
	f.Add(isoPVD("", "config-2"))
	f.Add(fatBoot("CONFIG-2", false))
	f.Add(fatBoot("CONFIG-2", true))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, img []byte) {
		fstype, label, err := readLabel(bytes.NewReader(img))
		if err != nil {
			t.Fatalf("error from an in-memory reader: %v", err)
		}
		switch fstype {
		case "":
			if label != "" {
				t.Fatalf("label %q without a filesystem", label)
			}
		case fsISO9660, fsVFAT:
			if len(label) > 3*32 {
				t.Fatalf("label of %d bytes", len(label))
			}
		default:
			t.Fatalf("fstype %q", fstype)
		}
	})
}
