package fastpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PinRoot is where vRouters pin their programs' links and maps, one
// directory per vRouter instance (PinDir). PID 1 mounts the bpffs.
const PinRoot = "/sys/fs/bpf/weft"

// PinDir is the pin directory of the vRouter instance named instance
// (its control socket's name: "vrouter" for /run/weft/vrouter.sock).
func PinDir(instance string) string { return filepath.Join(PinRoot, instance) }

// onBPFFS says why pins under dir would not outlive this process: the
// nearest existing directory above it is not on a bpffs (not mounted, or
// hidden by `ip netns exec`, which mounts a fresh /sys).
func onBPFFS(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("%s is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)", d)
			}
			return nil
		}
		if d == "/" || d == "." {
			return fmt.Errorf("%s: no directory above it", dir)
		}
	}
}

// hook is one program attached to one device's ingress: a TCX link (in
// pinned, it outlives this process) or a tc filter (which always does).
type hook struct {
	l  link.Link
	tc *netlink.BpfFilter
}

// detach takes the program off the device.
func (h hook) detach() error {
	if h.tc != nil {
		return netlink.FilterDel(h.tc)
	}
	if h.l == nil {
		return nil
	}
	err := h.l.Unpin()
	return errors.Join(err, h.l.Close())
}

// attachPinned puts prog on ifindex's ingress. A link pinned at path by
// an earlier vRouter that is still on ifindex is updated in place (the
// kernel swaps the program atomically: no packet meets a device without
// one); a stale one (its device gone) is removed. A new TCX link is
// pinned at path, if path is set.
func attachPinned(path string, ifindex int, prog *ebpf.Program) (hook, error) {
	if path != "" {
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			info, ierr := l.Info()
			if ierr == nil && info.TCX() != nil && int(info.TCX().Ifindex) == ifindex && l.Update(prog) == nil {
				return hook{l: l}, nil
			}
			l.Unpin()
			l.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			os.Remove(path)
		}
	}
	h, err := attach(ifindex, prog)
	if err != nil {
		return h, err
	}
	if h.l != nil && path != "" {
		if err := h.l.Pin(path); err != nil {
			h.detach()
			return hook{}, fmt.Errorf("pin %s: %w", path, err)
		}
	}
	return h, nil
}

// loadPinned loads the programs with their maps pinned in dir, reusing
// the maps an earlier vRouter pinned there (adopted reports that it did).
// Maps of another layout (an upgrade that changed them) are replaced:
// the flows they held go to the engine again.
func (d *Datapath) loadPinned(dir string) (adopted bool, err error) {
	spec, err := loadFp()
	if err != nil {
		return false, err
	}
	opts := &ebpf.CollectionOptions{}
	if dir != "" {
		if err := os.MkdirAll(filepath.Join(dir, "ports"), 0o700); err != nil {
			return false, fmt.Errorf("pin directory: %w", err)
		}
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinByName
		}
		opts.Maps.PinPath = dir
		_, err := os.Stat(filepath.Join(dir, "flows"))
		adopted = err == nil
	}
	err = spec.LoadAndAssign(&d.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		d.log.Warn("fastpath: pinned maps of another layout replaced; their flows go to the engine", "dir", dir, "err", err)
		for name := range spec.Maps {
			os.Remove(filepath.Join(dir, name))
		}
		adopted = false
		err = spec.LoadAndAssign(&d.objs, opts)
	}
	return adopted, err
}

// portPins is where port id's links are pinned ("" when not pinning).
func (d *Datapath) portPins(id uint32) string {
	if d.cfg.PinDir == "" {
		return ""
	}
	return filepath.Join(d.cfg.PinDir, "ports", strconv.FormatUint(uint64(id), 10))
}

// pinnedPorts are the port IDs with links pinned in dir.
func pinnedPorts(dir string) []uint32 {
	ents, _ := os.ReadDir(filepath.Join(dir, "ports"))
	var ids []uint32
	for _, e := range ents {
		if id, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			ids = append(ids, uint32(id))
		}
	}
	return ids
}

// removePortPins detaches the links pinned for a port that is no longer
// (deleted while no vRouter ran) and deletes its veth pair, found by the
// host side's ifindex: the endpoint keeps no interface of a port that is
// gone, as with a TAP.
func removePortPins(dir string, veth uint32) error {
	var errs []error
	for _, name := range []string{"veth", "tap"} {
		path := filepath.Join(dir, name)
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			errs = append(errs, hook{l: l}.detach())
		} else {
			os.Remove(path)
		}
	}
	if l, err := netlink.LinkByIndex(int(veth)); err == nil && veth != 0 && l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, "fp") {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RemovePins undoes what a crashed fast-path vRouter left in dir, for a
// vRouter that now runs without the fast path: every port's veth pair and
// links, the underlay's program (a TCX link pinned in dir, or the tc
// filter on underlayIfindex, 0 if unknown), and the maps. A missing dir
// is nothing to do.
func RemovePins(dir string, underlayIfindex int) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	var errs []error
	var veths map[uint32]fpPortInfo
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "ports_by_id"), nil); err == nil {
		veths = readMap[uint32, fpPortInfo](m)
		m.Close()
	}
	for _, id := range pinnedPorts(dir) {
		errs = append(errs, removePortPins(filepath.Join(dir, "ports", strconv.FormatUint(uint64(id), 10)), veths[id].VethIfindex))
	}
	if l, err := link.LoadPinnedLink(filepath.Join(dir, "underlay"), nil); err == nil {
		errs = append(errs, hook{l: l}.detach())
	} else if underlayIfindex > 0 {
		errs = append(errs, removeTCFilter(underlayIfindex))
	}
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

// removeTCFilter deletes the fast path's tc filter from ifindex's ingress.
func removeTCFilter(ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil
	}
	fs, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return nil // no clsact qdisc: no filter
	}
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(b.Name, tcFilterName) {
			if err := netlink.FilterDel(b); err != nil {
				return fmt.Errorf("tc filter on ifindex %d: %w", ifindex, err)
			}
		}
	}
	return nil
}

// readMap is m's contents (a map an earlier vRouter wrote).
func readMap[K, V comparable](m *ebpf.Map) map[K]V {
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	return out
}
