package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// makeKO builds a minimal ELF64 relocatable file whose .modinfo section
// holds fields ("name=x", "depends=a,b", ...), like a .ko file.
func makeKO(fields ...string) []byte {
	var modinfo []byte
	for _, f := range fields {
		modinfo = append(modinfo, f...)
		modinfo = append(modinfo, 0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := uint64(ehsize)
	strOff := modOff + uint64(len(modinfo))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7

	var b bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, hdr)
	b.Write(modinfo)
	b.Write(shstr)
	for uint64(b.Len()) < shOff {
		b.WriteByte(0)
	}
	sections := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: modOff, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	}
	for _, s := range sections {
		binary.Write(&b, binary.LittleEndian, s)
	}
	return b.Bytes()
}

func TestReadModinfo(t *testing.T) {
	tests := []struct {
		name    string
		ko      []byte
		want    Modinfo
		wantErr string
	}{
		{
			name: "virtio_net",
			ko: makeKO("license=GPL", "description=Virtio network driver", "depends=virtio_ring,virtio,net_failover",
				"retpoline=Y", "intree=Y", "name=virtio_net", "vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions ",
				"alias=virtio:d00000001v*"),
			want: Modinfo{Name: "virtio_net", Depends: []string{"virtio_ring", "virtio", "net_failover"},
				Aliases: []string{"virtio:d00000001v*"}, Vermagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions "},
		},
		{
			name: "no deps, dashes normalised",
			ko:   makeKO("depends=", "name=virtio-rng", "alias=virtio:d00000004v*", "alias=", "alias=fs-x"),
			want: Modinfo{Name: "virtio_rng", Aliases: []string{"virtio:d00000004v*", "fs-x"}},
		},
		{
			name: "padding between fields",
			ko:   makeKO("name=a", "", "", "depends=b-c, d ,", ""),
			want: Modinfo{Name: "a", Depends: []string{"b_c", "d"}},
		},
		{name: "not ELF", ko: []byte("hello"), wantErr: "not an ELF module"},
		{name: "xz", ko: []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}, wantErr: "xz-compressed"},
		{name: "zstd", ko: []byte{0x28, 0xb5, 0x2f, 0xfd, 0}, wantErr: "zstd-compressed"},
		{name: "field without =", ko: makeKO("name=a", "garbage"), wantErr: `byte 7: field "garbage" has no '='`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadModinfo(tt.ko)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tt.want.Name || got.Vermagic != tt.want.Vermagic ||
				!slices.Equal(got.Depends, tt.want.Depends) || !slices.Equal(got.Aliases, tt.want.Aliases) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestReadModinfoNoSection(t *testing.T) {
	ko := makeKO("name=x")
	// Rename .modinfo to .modinfX in the string table.
	i := bytes.Index(ko, []byte(".modinfo\x00"))
	ko[i+7] = 'X'
	if _, err := ReadModinfo(ko); err == nil || !strings.Contains(err.Error(), "no .modinfo section") {
		t.Fatalf("err = %v", err)
	}
}

func TestNameFromPath(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"kernel/fs/nls/nls_iso8859-1.ko.xz":           "nls_iso8859_1",
		"kernel/net/8021q/8021q.ko.zst":               "8021q",
		"e1000.ko":                                    "e1000",
	} {
		if got := NameFromPath(in); got != want {
			t.Errorf("NameFromPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzReadModinfo(f *testing.F) {
	f.Add(makeKO("name=virtio_net", "depends=virtio_ring,virtio", "alias=virtio:d00000001v*"))
	f.Add(makeKO())
	f.Add([]byte("\x7fELF"))
	f.Add(makeKO("=", "a==b", "depends=,,,"))
	f.Fuzz(func(t *testing.T, ko []byte) {
		mi, err := ReadModinfo(ko)
		if err != nil {
			return
		}
		for _, d := range mi.Depends {
			if d == "" || strings.Contains(d, "-") || strings.Contains(d, ",") {
				t.Fatalf("bad dependency %q", d)
			}
		}
	})
}
