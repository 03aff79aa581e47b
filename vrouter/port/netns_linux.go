package port

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/nsexec"
)

// NetnsDir is where named network namespaces are bind-mounted, as by
// `ip netns add`.
const NetnsDir = "/run/netns"

// netnsPath turns TAPConfig.Netns into a path: a name is looked up under
// NetnsDir, anything with a slash is a path already (/proc/<pid>/ns/net,
// /var/run/netns/x as CNI passes it).
func netnsPath(s string) (string, error) {
	if strings.ContainsRune(s, '/') {
		return s, nil
	}
	if err := checkNetnsName(s); err != nil {
		return "", err
	}
	return filepath.Join(NetnsDir, s), nil
}

func checkNetnsName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == ".." || strings.ContainsRune(name, '/'):
		return fmt.Errorf("%q is not a file name", name)
	case len(name) > 255:
		return fmt.Errorf("%d bytes, want at most 255", len(name))
	}
	return nil
}

// netnsMu serialises EnsureNamedNetns and DeleteNamedNetns in this
// process, so that two reconciles of one endpoint do not both mount.
var netnsMu sync.Mutex

// EnsureNamedNetns makes /run/netns/<name> a network namespace, as
// `ip netns add` does, unless it is one already: for a static endpoint
// whose namespace nobody created yet. NetnsDir is made a shared mount so
// the namespace is visible from other mount namespaces too.
func EnsureNamedNetns(name string) error {
	if err := checkNetnsName(name); err != nil {
		return fmt.Errorf("netns name: %w", err)
	}
	netnsMu.Lock()
	defer netnsMu.Unlock()
	path := filepath.Join(NetnsDir, name)
	if isNetnsMount(path) {
		return nil
	}
	if err := sharedNetnsDir(); err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: create %s: %w", name, path, err)
	}
	unix.Close(fd)
	err = newNetnsAt(path)
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// isNetnsMount reports whether path is a bind mount of a namespace.
func isNetnsMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// sharedNetnsDir creates NetnsDir and makes it a shared mount point, like
// iproute2 does: a bind mount of itself if it is not a mount point yet.
func sharedNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", NetnsDir, err)
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", NetnsDir, err)
	}
	if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", NetnsDir, err)
	}
	if err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", NetnsDir, err)
	}
	return nil
}

// newNetnsAt creates a network namespace and binds it to path (an
// existing file). The unshare happens on a thread nsexec lends for it and
// switches back afterwards, so nothing else runs in the new namespace.
func newNetnsAt(path string) error {
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer cur.Close()
	return nsexec.DoHandle(cur, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", path, err)
		}
		return nil
	})
}

// DeleteNamedNetns removes /run/netns/<name> as `ip netns del` does; the
// namespace itself goes when nothing uses it any more. A missing one is
// not an error.
func DeleteNamedNetns(name string) error {
	if err := checkNetnsName(name); err != nil {
		return fmt.Errorf("netns name: %w", err)
	}
	netnsMu.Lock()
	defer netnsMu.Unlock()
	path := filepath.Join(NetnsDir, name)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: unmount %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}
