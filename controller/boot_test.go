package controller

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/image"

	"github.com/weftnet/weft/controller/boot"
)

// fakeImage writes an image directory as weft image build leaves it, with
// made-up kernel and initramfs bytes.
func fakeImage(t testing.TB) (dir string, kernel, initrd []byte) {
	t.Helper()
	dir = t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	kernel, initrd = make([]byte, 300<<10), make([]byte, 200<<10)
	for i := range kernel {
		kernel[i] = byte(r.Uint32())
	}
	for i := range initrd {
		initrd[i] = byte(r.Uint32())
	}
	m, _ := json.Marshal(image.Artifacts{KernelRelease: "6.1.0-56-amd64", Weft: "v0.9.0", Cmdline: image.DefaultCmdline})
	for name, b := range map[string][]byte{image.Vmlinuz: kernel, image.Initramfs: initrd, image.Vmlinux: []byte("not served"),
		image.IPXE: []byte("#!ipxe\n"), image.Manifest: m} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, kernel, initrd
}

func bootServer(t testing.TB, dir, cmdline string) *Server {
	t.Helper()
	s, err := New(Options{State: t.TempDir(), Inventory: "inventory/testdata/fleet.yaml", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WatchInterval: -1,
		Boot: &boot.Config{Dir: dir, Cmdline: cmdline}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBootScript: the iPXE script fetches the kernel and initramfs from
// the host iPXE reached the controller at, with absolute URLs, and points
// the node's config at the same controller.
func TestBootScript(t *testing.T) {
	dir, _, _ := fakeImage(t)
	s := bootServer(t, dir, "  weft.debug   panic=-1 ")
	ca := " weft.ca=" + s.CA().String()
	for _, host := range []string{"198.18.10.1", "198.18.10.1:8080", "controller.lab:8080", "[fd00::1]:8080"} {
		https := host // the API: https on the port of the plain http
		if !strings.Contains(host, ":") {
			https += ":80"
		}
		r := httptest.NewRequest(http.MethodGet, "/boot.ipxe", nil)
		r.Host = host
		r.RemoteAddr = "10.0.2.15:1234" // node-a
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		want := "#!ipxe\n" +
			"echo Weft: booting weft v0.9.0, kernel 6.1.0-56-amd64 from http://" + host + "\n" +
			"kernel http://" + host + "/boot/vmlinuz initrd=initramfs.cpio.gz console=ttyS0 weft.config=https://" + https + "/" + ca + " weft.debug panic=-1\n" +
			"initrd http://" + host + "/boot/initramfs.cpio.gz\n" +
			"boot\n"
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("Host %s: %d\n%s\nwant\n%s", host, w.Code, w.Body, want)
		}
	}
	if n := s.Fleet().Nodes[0]; n.Name != "node-a" || n.BootFetched.IsZero() || n.Phase != fleetapi.PhaseBooting {
		t.Errorf("the boot script fetch is not in the fleet view: %+v", n)
	}
	// A Host that could add a line or a setting to the script.
	for _, host := range []string{"a b", "x\ninitrd evil", "${net0/mac}", "h:1:2"} {
		r := httptest.NewRequest(http.MethodGet, "/boot.ipxe", nil)
		r.Host = host
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != 400 || strings.Contains(w.Body.String(), "kernel") {
			t.Errorf("Host %q: %d %s", host, w.Code, w.Body)
		}
	}
	f := s.Fleet()
	if f.Boot == nil || f.Boot.Dir != dir || f.Boot.KernelRelease != "6.1.0-56-amd64" || len(f.Boot.Files) != 2 || f.Boot.Files[0].Size != 300<<10 ||
		f.Boot.Cmdline != "console=ttyS0 weft.config=https://<controller>:<port>/"+ca+" weft.debug panic=-1" {
		t.Errorf("fleet view: %+v", f.Boot)
	}
	page := get(operator(t, s), "/", "127.0.0.1", "").Body.String()
	if !strings.Contains(page, `id="boot"`) || !strings.Contains(page, "/boot/initramfs.cpio.gz</code> 200.0 kB") {
		t.Errorf("the page does not say what is served")
	}
}

// TestBootFiles: the kernel and initramfs as iPXE fetches them, whole or
// by ranges; nothing else of the directory.
func TestBootFiles(t *testing.T) {
	dir, kernel, initrd := fakeImage(t)
	ts := httptest.NewServer(bootServer(t, dir, "").Handler())
	defer ts.Close()
	fetch := func(path, rng string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, b := fetch("/boot/vmlinuz", ""); resp.StatusCode != 200 || !bytes.Equal(b, kernel) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("vmlinuz: %s, %d bytes, %v", resp.Status, len(b), resp.Header)
	}
	if resp, b := fetch("/boot/initramfs.cpio.gz", "bytes=1000-1999"); resp.StatusCode != 206 || !bytes.Equal(b, initrd[1000:2000]) ||
		resp.Header.Get("Content-Range") != "bytes 1000-1999/204800" {
		t.Errorf("a range of the initramfs: %s, %d bytes, %v", resp.Status, len(b), resp.Header)
	}
	if resp, b := fetch("/boot/initramfs.cpio.gz", "bytes=-100"); resp.StatusCode != 206 || !bytes.Equal(b, initrd[len(initrd)-100:]) {
		t.Errorf("the initramfs's tail: %s, %d bytes", resp.Status, len(b))
	}
	if resp, _ := fetch("/boot/vmlinuz", "bytes=999999999-"); resp.StatusCode != 416 {
		t.Errorf("a range past the end: %s", resp.Status)
	}
	for _, p := range []string{"/boot/vmlinux", "/boot/manifest.json", "/boot/..%2fmanifest.json", "/boot/"} {
		if resp, b := fetch(p, ""); resp.StatusCode != 404 {
			t.Errorf("%s: %s %s", p, resp.Status, b)
		}
	}
	// HEAD, as some firmware asks first.
	resp, err := http.Head(ts.URL + "/boot/vmlinuz")
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(kernel)) {
		t.Errorf("HEAD: %v %v", resp, err)
	}

	// Without --image: a 404 that says what to do.
	plain := httptest.NewServer(testServer(t, "inventory/testdata/fleet.yaml").Handler())
	defer plain.Close()
	for _, p := range []string{"/boot.ipxe", "/boot/vmlinuz"} {
		resp, err := http.Get(plain.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(b), "start the controller with --image DIR") {
			t.Errorf("%s without boot files: %s %s", p, resp.Status, b)
		}
	}
}

func TestBootConfigErrors(t *testing.T) {
	dir, _, _ := fakeImage(t)
	empty := t.TempDir()
	for _, tc := range []struct {
		dir, cmdline, err string
	}{
		{empty, "", "image " + empty + ": no vmlinuz: give the directory weft image build --out wrote"},
		{filepath.Join(empty, "nothing"), "", "no vmlinuz"},
		{dir, "weft.debug\nboot", ""}, // white space, newlines included, separates parameters
		{dir, "quiet \x01", `kernel command line: "\x01": only printable ASCII`},
		{dir, "weft.config=http://elsewhere/", "the controller sets weft.config to itself"},
		{dir, strings.Repeat("x", 2000), "more than the 1536 allowed"},
	} {
		_, err := New(Options{State: t.TempDir(), Inventory: "inventory/testdata/fleet.yaml", Boot: &boot.Config{Dir: tc.dir, Cmdline: tc.cmdline}})
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("dir %s, cmdline %q: %v, want %q", tc.dir, tc.cmdline, err, tc.err)
		}
	}
}
