package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/weftnet/weft/init/kmod"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

func TestParseDepends(t *testing.T) {
	tests := []struct{ in, want string }{
		{"linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.1.0-56-amd64"},
		{"linux-image-amd64\n  Depends: <linux-image-6.1.0-57-amd64>\n", "linux-image-6.1.0-57-amd64"},
		{"linux-image-amd64\n |Depends: linux-image-6.1.0-9-amd64\n  Depends: x\n", "linux-image-6.1.0-9-amd64"},
		{"linux-image-amd64\n  Recommends: firmware-linux-free\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := parseDepends([]byte(tt.in)); got != tt.want {
			t.Errorf("parseDepends(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestField(t *testing.T) {
	out := []byte("Package: linux-image-6.1.0-56-amd64\nVersion: 6.1.192-2\nSection: kernel\n\nPackage: x\nVersion: 9\n")
	if got := field(out, "Version"); got != "6.1.192-2" {
		t.Errorf("Version = %q", got)
	}
	if got := field(out, "Missing"); got != "" {
		t.Errorf("Missing = %q", got)
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{"6.1.192-2": "6.1.192-2", "1:6.1~rc1+b1": "1_6.1~rc1+b1", "../x": ".._x"} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInitramfsLayout(t *testing.T) {
	build := func() []byte {
		tr := tree{}
		tr.file("bin/weft", []byte("binary"), 0o755)
		tr.symlink("init", "/bin/weft")
		tr.chardev("dev/console", 0o600, 5, 1)
		tr.dir("tmp", 0o1777)
		tr.file("lib/modules/6.1.0-56-amd64/kernel/net/8021q/8021q.ko", []byte("ko"), 0o644)
		var b bytes.Buffer
		if err := writeInitramfs(&b, tr); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b := build(), build()
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of one tree differ")
	}
	// gzip header: no name flag, mtime 0.
	if a[3]&0x08 != 0 || binary.LittleEndian.Uint32(a[4:8]) != 0 {
		t.Errorf("gzip header carries a name or mtime: % x", a[:10])
	}
	recs, err := readInitramfs(a)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]cpio.Record{}
	for _, r := range recs {
		names = append(names, r.Name)
		byName[r.Name] = r
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: not reproducible: %v", r.Name, r.Info)
		}
	}
	want := []string{"bin", "bin/weft", "dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/6.1.0-56-amd64",
		"lib/modules/6.1.0-56-amd64/kernel", "lib/modules/6.1.0-56-amd64/kernel/net", "lib/modules/6.1.0-56-amd64/kernel/net/8021q",
		"lib/modules/6.1.0-56-amd64/kernel/net/8021q/8021q.ko", "tmp"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("records:\n%q\nwant\n%q", names, want)
	}
	if c := byName["dev/console"]; c.Mode != cpio.S_IFCHR|0o600 || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console = %v", c.Info)
	}
	if r := byName["init"]; r.Mode&cpio.S_IFMT != cpio.S_IFLNK || content(t, r) != "/bin/weft" {
		t.Errorf("init = %v", r.Info)
	}
	if r := byName["tmp"]; r.Mode != cpio.S_IFDIR|0o1777 {
		t.Errorf("tmp mode %o", r.Mode)
	}
	if r := byName["bin/weft"]; r.Mode != cpio.S_IFREG|0o755 || content(t, r) != "binary" {
		t.Errorf("bin/weft = %v", r.Info)
	}
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pvhELF is a minimal x86-64 executable with a PT_NOTE segment holding
// the Xen PVH entry note (or another note when pvh is false).
func pvhELF(pvh bool) []byte {
	typ := uint32(xenElfNotePhys32Entry)
	if !pvh {
		typ = 1
	}
	var note bytes.Buffer
	binary.Write(&note, binary.LittleEndian, []uint32{4, 4, typ})
	note.WriteString("Xen\x00")
	binary.Write(&note, binary.LittleEndian, uint32(0x1000000))
	var b bytes.Buffer
	hdr := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, hdr)
	binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: 64 + 56, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4})
	b.Write(note.Bytes())
	return b.Bytes()
}

func xzCompress(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command("xz", "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExtractVmlinux(t *testing.T) {
	testenv.RequireTools(t, "xz")
	ctx := context.Background()
	kernel := pvhELF(true)
	// A bzImage: setup code, a decoy xz magic that is no stream, the
	// payload, then trailing data the decompressor must ignore.
	var bz bytes.Buffer
	bz.WriteString("MZ setup code ")
	bz.Write(xzMagic)
	bz.WriteString("not a stream")
	bz.Write(xzCompress(t, kernel))
	bz.WriteString("\x00\x00trailing size field")
	got, err := extractVmlinux(ctx, bz.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kernel) {
		t.Fatal("extracted kernel differs")
	}

	if _, err := extractVmlinux(ctx, []byte("MZ no payload")); err == nil || !strings.Contains(err.Error(), "no xz stream") {
		t.Errorf("no payload: err = %v", err)
	}
	_, err = extractVmlinux(ctx, append([]byte("MZ"), xzCompress(t, pvhELF(false))...))
	if err == nil || !strings.Contains(err.Error(), "no PVH entry note") {
		t.Errorf("no PVH note: err = %v", err)
	}
	_, err = extractVmlinux(ctx, append([]byte("MZ"), xzCompress(t, []byte("not elf"))...))
	if err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("not ELF: err = %v", err)
	}
}

func TestReadBinary(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := readBinary(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "script"), []byte("#!/bin/sh\n"), 0o755)
	if _, _, err := readBinary(filepath.Join(dir, "script")); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("script: %v", err)
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if p, _ := filepath.EvalSymlinks(sh); p != "" {
			if _, _, err := readBinary(p); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
				t.Errorf("%s: %v", p, err)
			}
		}
	}
}

// weftBinary is the static binary to pack: $WEFT_BIN (make test sets
// it), else one built from the tree now.
func weftBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_BIN"); p != "" {
		return p
	}
	if builtBinary != "" {
		return builtBinary
	}
	testenv.RequireTools(t, "go")
	dir, err := os.MkdirTemp("", "weft-image-test-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "weft")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, "github.com/weftnet/weft/cmd/weft")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	builtBinary = out
	return out
}

// builtBinary is the binary weftBinary built, shared by the tests and
// removed by TestMain.
var builtBinary string

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		os.RemoveAll(filepath.Dir(builtBinary))
	}
	os.Exit(code)
}

func cacheDir() string {
	if c := os.Getenv("WEFT_CACHE"); c != "" {
		return c
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "weft")
}

// TestBuildReproducible builds the real image twice (downloading the
// kernel into the cache the first time) and checks the bar: the same
// bytes both times, the initramfs under 15 MB, and the contents PID 1
// relies on.
func TestBuildReproducible(t *testing.T) {
	testenv.SkipIfShort(t)
	testenv.RequireTools(t, "apt-cache", "apt-get", "dpkg", "xz")
	bin := weftBinary(t)
	ctx := context.Background()
	var outs []string
	var arts []*Artifacts
	for i := 0; i < 2; i++ {
		out := filepath.Join(t.TempDir(), "image")
		var progress bytes.Buffer
		a, err := Build(ctx, Options{Out: out, Cache: cacheDir(), Binary: bin, Cmdline: " weft.debug  ", Progress: &progress})
		if err != nil {
			t.Fatalf("build %d: %v\n%s", i+1, err, progress.String())
		}
		t.Logf("build %d:\n%s", i+1, progress.String())
		outs = append(outs, out)
		arts = append(arts, a)
	}
	for _, name := range []string{Vmlinuz, Vmlinux, Initramfs, IPXE, Manifest} {
		a, err := os.ReadFile(filepath.Join(outs[0], name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(outs[1], name))
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(a) != sha256.Sum256(b) {
			t.Errorf("%s differs between two builds", name)
		}
	}

	a := arts[0]
	initrd, err := os.ReadFile(a.Path(Initramfs))
	if err != nil {
		t.Fatal(err)
	}
	if len(initrd) >= MaxInitramfs {
		t.Errorf("initramfs is %d bytes, limit %d", len(initrd), MaxInitramfs)
	}
	t.Logf("initramfs %s, kernel %s (%s)", size(int64(len(initrd))), a.KernelRelease, a.KernelVersion)

	ipxe, _ := os.ReadFile(a.Path(IPXE))
	wantIPXE := "#!ipxe\ndhcp\nkernel vmlinuz initrd=initramfs.cpio.gz console=ttyS0 panic=-1 weft.debug\ninitrd initramfs.cpio.gz\nboot\n"
	if string(ipxe) != wantIPXE {
		t.Errorf("boot.ipxe:\n%s\nwant:\n%s", ipxe, wantIPXE)
	}
	var m Artifacts
	mb, _ := os.ReadFile(a.Path(Manifest))
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if m.KernelRelease != a.KernelRelease || len(m.Files) != 4 || m.Files[2].Name != Initramfs || m.Files[2].Size != int64(len(initrd)) {
		t.Errorf("manifest.json = %s", mb)
	}
	if _, err := elf.Open(a.Path(Vmlinux)); err != nil {
		t.Errorf("vmlinux: %v", err)
	}

	// The initramfs: /init, the binary, device nodes, certificates, and
	// every module modules.dep names, plus an index that finds drivers.
	recs, err := readInitramfs(initrd)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]cpio.Record{}
	for _, r := range recs {
		files[r.Name] = r
	}
	binBytes, _ := os.ReadFile(bin)
	for _, n := range []string{"init", "bin/weft", "dev/console", "dev/null", "etc/ssl/certs/ca-certificates.crt", "etc/weft-release", "proc", "sys", "run", "tmp", "var/lib/weft"} {
		if _, ok := files[n]; !ok {
			t.Errorf("initramfs lacks %s", n)
		}
	}
	if content(t, files["bin/weft"]) != string(binBytes) {
		t.Error("bin/weft is not the binary given")
	}
	modDir := "lib/modules/" + a.KernelRelease + "/"
	tmp := t.TempDir()
	for _, f := range []string{kmod.DepFile, kmod.AliasFile, kmod.BuiltinFile} {
		r, ok := files[modDir+f]
		if !ok {
			t.Fatalf("initramfs lacks %s%s", modDir, f)
		}
		os.WriteFile(filepath.Join(tmp, f), []byte(content(t, r)), 0o644)
	}
	ix, err := kmod.LoadIndex(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ix.Modules() {
		p, _ := ix.Path(name)
		if _, ok := files[modDir+p]; !ok {
			t.Errorf("modules.dep names %s, not in the initramfs", p)
		}
	}
	for _, want := range []string{"virtio_net", "virtio_blk", "virtio_pci", "e1000", "bonding", "8021q", "isofs", "vfat", "tun", "nls_cp437", "nls_ascii"} {
		if _, ok := ix.Path(want); !ok {
			t.Errorf("module %s missing", want)
		}
	}
	if got := ix.Match("virtio:d00000001v00001AF4"); len(got) != 1 || got[0] != "virtio_net" {
		t.Errorf("Match(virtio net) = %q", got)
	}
}

// fakeApt puts failing apt-cache and apt-get first on PATH, as on a
// machine without network or package lists.
func fakeApt(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"apt-cache", "apt-get"} {
		script := "#!/bin/sh\necho 'E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)' >&2\nexit 100\n"
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestBuildAptFails(t *testing.T) {
	testenv.RequireTools(t, "dpkg", "xz", "sh")
	fakeApt(t)
	// Any static x86-64 executable passes the binary check.
	bin := filepath.Join(t.TempDir(), "weft")
	if err := os.WriteFile(bin, pvhELF(true), 0o755); err != nil {
		t.Fatal(err)
	}
	// Empty cache: the error says what failed and what to do.
	_, err := Build(context.Background(), Options{Out: t.TempDir(), Cache: t.TempDir(), Binary: bin})
	if err == nil || !strings.Contains(err.Error(), "apt-get update failed") || !strings.Contains(err.Error(), "make deps") ||
		!strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("err = %v", err)
	}
}

func TestBuildOfflineFromCache(t *testing.T) {
	testenv.SkipIfShort(t)
	testenv.RequireTools(t, "dpkg", "xz", "sh")
	cache := cacheDir()
	if m, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", kernelMetaFile)); len(m) == 0 {
		testenv.Unavailable(t, "no kernel cache in "+cache+" (run make image)")
	}
	bin := weftBinary(t)
	fakeApt(t)
	var progress bytes.Buffer
	a, err := Build(context.Background(), Options{Out: t.TempDir(), Cache: cache, Binary: bin, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if !strings.Contains(progress.String(), "using cached "+a.KernelPackage) {
		t.Errorf("progress does not say the cached kernel is used:\n%s", progress.String())
	}
}
