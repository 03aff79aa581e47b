// Package boot serves a PXE fleet its boot files: the output of `weft
// image build` and an iPXE script that boots it with weft.config pointing
// at the controller.
package boot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/httpx"

	"github.com/weftnet/weft/controller/inventory"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/image"
)

// Config has the controller serve a PXE fleet its boot files: the
// output of `weft image build`, and an iPXE script generated for the
// controller's own address.
type Config struct {
	// Dir is the directory `weft image build --out` wrote: vmlinuz and
	// initramfs.cpio.gz are required, manifest.json is shown when present.
	Dir string
	// Cmdline is added to the kernel command line, after
	// "console=ttyS0 weft.config=https://<controller>:<port>/ weft.ca=<CA>".
	Cmdline string
	// CA is the pin of the controller's CA, handed to nodes as weft.ca=.
	CA fleetapi.Pin
}

// The boot files' URL paths.
const (
	ScriptPath = "/boot.ipxe"
	Dir        = "/boot/"
)

// maxCmdline bounds --cmdline: the kernel's own limit on x86 is 2048
// bytes, and the defaults and the URL need room.
const maxCmdline = 1536

// Files are one image directory's boot files.
type Files struct {
	cfg      Config
	cmdline  string // the extra parameters, normalised
	manifest *image.Artifacts
}

// bootServed are the files under /boot/: only the two an iPXE boot needs
// (vmlinux is for QEMU's direct PVH boots, not for PXE).
var bootServed = []string{image.Vmlinuz, image.Initramfs}

// cmdlineRE admits what a kernel command line needs and nothing that
// could end an iPXE script line or start a comment or a command.
var cmdlineRE = regexp.MustCompile(`^[\x21-\x7e]+$`)

// New checks the image directory and the extra kernel parameters.
func New(cfg Config) (*Files, error) {
	if cfg.Dir == "" {
		return nil, errors.New("boot files: the image directory is required")
	}
	if abs, err := filepath.Abs(cfg.Dir); err == nil {
		cfg.Dir = abs
	}
	b := &Files{cfg: cfg}
	fields := strings.Fields(cfg.Cmdline)
	for _, f := range fields {
		if !cmdlineRE.MatchString(f) {
			return nil, fmt.Errorf("kernel command line: %q: only printable ASCII parameters separated by spaces", f)
		}
		if strings.HasPrefix(f, "weft.config=") {
			return nil, fmt.Errorf("kernel command line: %q: the controller sets weft.config to itself", f)
		}
		if strings.HasPrefix(f, "weft.ca=") {
			return nil, fmt.Errorf("kernel command line: %q: the controller sets weft.ca to its own CA", f)
		}
	}
	b.cmdline = strings.Join(fields, " ")
	if len(b.cmdline) > maxCmdline {
		return nil, fmt.Errorf("kernel command line: %d bytes, more than the %d allowed", len(b.cmdline), maxCmdline)
	}
	for _, name := range bootServed {
		p := filepath.Join(cfg.Dir, name)
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("image %s: no %s: give the directory weft image build --out wrote", cfg.Dir, name)
		case err != nil:
			return nil, fmt.Errorf("image %s: %w", cfg.Dir, err)
		case !st.Mode().IsRegular():
			return nil, fmt.Errorf("image %s: %s is not a regular file", cfg.Dir, name)
		}
	}
	if data, err := inventory.ReadRegular(filepath.Join(cfg.Dir, image.Manifest), 1<<20); err == nil {
		var a image.Artifacts
		if json.Unmarshal(data, &a) == nil {
			b.manifest = &a
		}
	}
	return b, nil
}

// fullCmdline is the kernel command line for a controller at host (as
// the boot script was fetched: its https is on the same port).
func (b *Files) fullCmdline(host string) string {
	s := "console=ttyS0 weft.config=" + HTTPSBase(host) + " weft.ca=" + b.cfg.CA.String()
	if b.cmdline != "" {
		s += " " + b.cmdline
	}
	return s
}

// script is the iPXE script for a controller reached at host. It needs no
// dhcp command: iPXE has its address, having fetched the script. The
// initrd= parameter names the initrd as iPXE does (by its URL's last
// segment), which the EFI stub needs.
func (b *Files) script(host string) string {
	base := "http://" + host
	var s strings.Builder
	s.WriteString("#!ipxe\n")
	what := "weft"
	if m := b.manifest; m != nil {
		what = fmt.Sprintf("weft %s, kernel %s", m.Weft, m.KernelRelease)
	}
	fmt.Fprintf(&s, "echo Weft: booting %s from %s\n", what, base)
	fmt.Fprintf(&s, "kernel %s%s%s initrd=%s %s\n", base, Dir, image.Vmlinuz, image.Initramfs, b.fullCmdline(host))
	fmt.Fprintf(&s, "initrd %s%s%s\n", base, Dir, image.Initramfs)
	s.WriteString("boot\n")
	return s.String()
}

// Info describes what is served now.
func (b *Files) Info() *fleetapi.BootInfo {
	in := &fleetapi.BootInfo{Dir: b.cfg.Dir, Script: ScriptPath, Cmdline: b.fullCmdline("<controller>:<port>"), Files: []fleetapi.BootFile{}}
	if m := b.manifest; m != nil {
		in.KernelRelease, in.Weft = m.KernelRelease, m.Weft
	}
	for _, name := range bootServed {
		f := fleetapi.BootFile{Name: name, Path: Dir + name}
		if st, err := os.Stat(filepath.Join(b.cfg.Dir, name)); err == nil {
			f.Size, f.Mod = st.Size(), st.ModTime()
		}
		in.Files = append(in.Files, f)
	}
	return in
}

// hostRE is a Host header that may go into the script: a name or an
// address, with a port. Anything else (white space, quotes, ${...}) could
// change what iPXE runs.
var hostRE = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$`)

// Handler serves the iPXE script and the boot files; without Files, it
// answers 404 saying how to serve them. Boot scripts served are recorded
// in State for the node at the request's address.
type Handler struct {
	Files *Files // nil = none
	Inv   func() *inventory.Inventory
	State *fleet.State
	Log   *slog.Logger
	Now   func() time.Time
}

// Script serves GET ScriptPath.
func (s *Handler) Script(w http.ResponseWriter, r *http.Request) {
	b := s.Files
	if b == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no boot files are served: start the controller with --image DIR (the output of weft image build)")
		return
	}
	if !hostRE.MatchString(r.Host) {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: Host %q is not a host[:port] the boot script can name", r.Host)
		return
	}
	addr := httpx.RemoteAddr(r)
	node := s.node(addr)
	s.Log.Info("boot script served", "node", node, "addr", addr.String(), "host", r.Host)
	if node != "" {
		s.State.Booted(node, s.Now())
	}
	httpx.Send(w, "text/plain; charset=utf-8", []byte(b.script(r.Host)))
}

// bootNode names the node at addr; "" when the inventory has none there
// (iPXE sends no X-Weft-MAC).
func (s *Handler) node(addr netip.Addr) string {
	if n, err := s.Inv().Match(nil, addr); err == nil {
		return n.Name
	}
	return ""
}

// File serves GET Dir{file}.
func (s *Handler) File(w http.ResponseWriter, r *http.Request) {
	b := s.Files
	if b == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no boot files are served: start the controller with --image DIR (the output of weft image build)")
		return
	}
	name := r.PathValue("file")
	known := false
	for _, n := range bootServed {
		known = known || n == name
	}
	if !known {
		httpx.Plain(w, http.StatusNotFound, "weft controller: /boot/%s is not served: only %s", name, strings.Join(bootServed, " and "))
		return
	}
	f, err := os.Open(filepath.Join(b.cfg.Dir, name))
	if err != nil {
		s.Log.Error("boot file", "file", name, "err", err)
		httpx.Plain(w, http.StatusInternalServerError, "weft controller: %v", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		httpx.Plain(w, http.StatusInternalServerError, "weft controller: %s: not a regular file", name)
		return
	}
	addr := httpx.RemoteAddr(r)
	s.Log.Info("boot file served", "node", s.node(addr), "file", name, "addr", addr.String(), "size", st.Size(), "range", r.Header.Get("Range"))
	// A boot file over a slow firmware NIC takes longer than the server's
	// write timeout for API answers.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(10 * time.Minute))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// HTTPSBase is the controller's https base URL for a client that reached
// its plain http at host (a Host header): the same listener serves both,
// so the port is the same, and it is written out even when it is 80.
func HTTPSBase(host string) string {
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(strings.Trim(host, "[]"), "80")
	}
	return "https://" + host + "/"
}

// HostPort is the host[:port] of a URL for a controller reached at ip
// on port: the port is left out when it is 80.
func HostPort(ip netip.Addr, port int) string {
	h := ip.String()
	if ip.Is6() {
		h = "[" + h + "]"
	}
	if port != 80 && port != 0 {
		h = net.JoinHostPort(ip.String(), fmt.Sprint(port))
	}
	return h
}

// Log says what is served for PXE boots.
func (b *Files) Log(log *slog.Logger) {
	in := b.Info()
	attrs := []any{"dir", in.Dir, "script", ScriptPath, "cmdline", in.Cmdline}
	for _, f := range in.Files {
		attrs = append(attrs, f.Name, fmt.Sprintf("%s (%d bytes)", f.Path, f.Size))
	}
	if in.KernelRelease != "" {
		attrs = append(attrs, "kernel", in.KernelRelease, "weft", in.Weft)
	}
	log.Info("serving boot files for iPXE", attrs...)
}
