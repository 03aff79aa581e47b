package kmod

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultParams are module parameters the Loader passes unless told
// otherwise. bonding would otherwise create a bond0 on load that nobody
// asked for and that could collide with a configured bond of that name;
// the underlay creates its bonds through netlink.
var DefaultParams = map[string]string{"bonding": "max_bonds=0"}

// Loader loads modules from one module directory with their dependencies.
// It is safe for concurrent use; loads are serialised.
type Loader struct {
	dir string
	ix  *Index
	log *slog.Logger

	// Params maps a module name to the parameters passed to finit_module
	// ("max_bonds=0"). NewLoader fills it from DefaultParams.
	Params map[string]string

	sysfs string                                           // "/sys"; tests point it elsewhere
	finit func(path, params string, compressed bool) error // finit_module; tests replace it

	mu    sync.Mutex
	state map[string]error // module name -> nil when loaded, else why it failed
}

// NewLoader reads the index in dir (/lib/modules/<uname -r>).
func NewLoader(dir string, log *slog.Logger) (*Loader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ix, err := LoadIndex(dir)
	if err != nil {
		return nil, err
	}
	return &Loader{
		dir:    dir,
		ix:     ix,
		log:    log,
		Params: maps.Clone(DefaultParams),
		sysfs:  "/sys",
		finit:  finitModule,
		state:  map[string]error{},
	}, nil
}

// Failures returns the modules that failed to load and why.
func (l *Loader) Failures() map[string]error {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]error{}
	for n, err := range l.state {
		if err != nil {
			out[n] = err
		}
	}
	return out
}

// Load loads module name, after its dependencies. A module that is
// already loaded or built in is not an error. A name that is not a module
// is looked up as an alias ("fs-vfat", "rtnl-link-bond"), like modprobe.
// A module that failed once is not tried again: its error is returned.
func (l *Loader) Load(name string) error {
	_, err := l.load(name)
	return err
}

// load returns the modules this call actually loaded (dependencies
// first), so callers can report them.
func (l *Loader) load(name string) ([]string, error) {
	name = NormalizeName(strings.TrimSpace(name))
	if name == "" {
		return nil, errors.New("load module: empty name")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix.Builtin(name) {
		return nil, nil
	}
	if _, ok := l.ix.Path(name); !ok {
		mods := l.ix.Match(name)
		if len(mods) == 0 {
			return nil, fmt.Errorf("load module %s: not in %s and no alias matches", name, filepath.Join(l.dir, DepFile))
		}
		var loaded []string
		var errs []error
		for _, m := range mods {
			got, err := l.loadLocked(m)
			loaded = append(loaded, got...)
			errs = append(errs, err)
		}
		return loaded, errors.Join(errs...)
	}
	return l.loadLocked(name)
}

func (l *Loader) loadLocked(name string) ([]string, error) {
	if err, done := l.state[name]; done {
		return nil, err
	}
	deps, err := l.ix.Deps(name)
	if err != nil {
		return nil, err
	}
	var loaded []string
	for _, rel := range deps {
		dep := NameFromPath(rel)
		if err, done := l.state[dep]; done {
			if err != nil {
				return loaded, l.fail(name, fmt.Errorf("load module %s: dependency %s failed: %w", name, dep, err))
			}
			continue
		}
		ok, err := l.insert(dep, rel)
		if err != nil {
			return loaded, l.fail(name, fmt.Errorf("load module %s: dependency %w", name, err))
		}
		if ok {
			loaded = append(loaded, dep)
		}
	}
	rel, _ := l.ix.Path(name)
	ok, err := l.insert(name, rel)
	if err != nil {
		return loaded, err
	}
	if ok {
		loaded = append(loaded, name)
	}
	return loaded, nil
}

// insert loads one module file. It reports whether this call loaded it
// (false when it was already there) and records the outcome.
func (l *Loader) insert(name, rel string) (bool, error) {
	if l.ix.Builtin(name) {
		l.state[name] = nil
		return false, nil
	}
	p := filepath.Join(l.dir, rel)
	compressed := strings.HasSuffix(rel, ".xz") || strings.HasSuffix(rel, ".zst") || strings.HasSuffix(rel, ".gz")
	start := time.Now()
	err := l.finit(p, l.Params[name], compressed)
	switch {
	case err == nil:
		l.state[name] = nil
		l.log.Info("module loaded", "module", name, "duration", time.Since(start).Round(time.Millisecond))
		return true, nil
	case errors.Is(err, unix.EEXIST):
		l.state[name] = nil
		return false, nil
	default:
		return false, l.fail(name, fmt.Errorf("%s (%s): %w", name, p, err))
	}
}

func (l *Loader) fail(name string, err error) error {
	l.state[name] = err
	l.log.Warn("module load failed", "module", name, "err", err)
	return err
}

func finitModule(path, params string, compressed bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if compressed {
		// The kernel decompresses itself when built with MODULE_DECOMPRESS.
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	for {
		err = unix.FinitModule(int(f.Fd()), params, flags)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Coldplug loads the modules for every device present now: it reads each
// /sys/devices/**/modalias, matches it against the index and loads what
// matches. Loading a bus driver (virtio_pci) creates new devices (the
// virtio devices behind it), so it scans again until a pass loads
// nothing new. It returns the modules it loaded; err joins every failure,
// each naming its module.
func (l *Loader) Coldplug(ctx context.Context) (loaded []string, err error) {
	var errs []error
	seen := map[string]bool{}
	for pass := 0; pass < 8; pass++ {
		aliases, err := l.scan(ctx)
		if err != nil {
			return loaded, err
		}
		before := len(loaded)
		for _, a := range aliases {
			if seen[a] {
				continue
			}
			seen[a] = true
			for _, m := range l.ix.Match(a) {
				if err := ctx.Err(); err != nil {
					return loaded, err
				}
				got, err := l.load(m)
				loaded = append(loaded, got...)
				if err != nil {
					errs = append(errs, err)
				}
			}
		}
		if len(loaded) == before {
			break
		}
	}
	return loaded, errors.Join(errs...)
}

// scan returns the distinct modaliases under /sys/devices, sorted.
func (l *Loader) scan(ctx context.Context) ([]string, error) {
	root := filepath.Join(l.sysfs, "devices")
	set := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // a device vanished or is unreadable: skip it
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if d.Name() != "modalias" || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if a := strings.TrimSpace(string(b)); a != "" {
			set[a] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("coldplug: scan %s: %w", root, err)
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.Sort(out)
	return out, nil
}

// Watch loads modules for devices that appear after boot (a NIC behind a
// slow bus, a hotplugged card): it listens for kernel "add" uevents with
// a MODALIAS and loads what matches, calling onLoad (may be nil) for each
// module it loaded. It rescans /sys once it listens, so a device that
// appeared between Coldplug and Watch is not missed. It blocks until ctx
// is done and then returns ctx.Err(); other errors mean it could not
// listen at all.
func (l *Loader) Watch(ctx context.Context, onLoad func(module string)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return fmt.Errorf("uevent socket: %w", err)
	}
	// A burst of hotplug events must not overflow the queue; FORCE needs
	// CAP_NET_ADMIN, which PID 1 has, the plain option is the fallback.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	// Group 1 is the kernel's broadcast; udev's rebroadcast is group 2.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("uevent socket: bind: %w", err)
	}
	// A non-blocking fd in an *os.File uses the runtime poller, so Close
	// from another goroutine wakes the reader.
	f := os.NewFile(uintptr(fd), "uevent")
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()

	report := func(mods []string) {
		for _, m := range mods {
			if onLoad != nil {
				onLoad(m)
			}
		}
	}
	rescan := func() {
		got, err := l.Coldplug(ctx)
		report(got)
		if err != nil && ctx.Err() == nil {
			l.log.Warn("module rescan", "err", err)
		}
	}
	rescan()

	buf := make([]byte, 64*1024)
	for {
		n, err := f.Read(buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				// Events were dropped: the devices are in /sys all the same.
				l.log.Warn("uevent queue overflowed; rescanning devices")
				rescan()
				continue
			}
			return fmt.Errorf("uevent socket: read: %w", err)
		}
		ev, err := ParseUevent(buf[:n])
		if err != nil {
			l.log.Debug("uevent ignored", "err", err)
			continue
		}
		if ev.Action != "add" || ev.Modalias() == "" {
			continue
		}
		for _, m := range l.ix.Match(ev.Modalias()) {
			got, err := l.load(m)
			report(got)
			if err != nil {
				l.log.Warn("module for new device", "devpath", ev.DevPath, "modalias", ev.Modalias(), "module", m, "err", err)
			}
		}
	}
}
