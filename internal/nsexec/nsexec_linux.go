// Package nsexec runs code inside another network namespace. Go's
// goroutines move between OS threads and a namespace belongs to a thread,
// so the work runs on a thread locked for it; sockets it opens stay in the
// namespace and may be used from any goroutine afterwards. If the thread
// cannot be switched back it is never unlocked, and Go discards it with
// its goroutine: nothing else ever runs in the wrong namespace.
package nsexec

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Open returns a handle of namespace ns: a name under /run/netns, or a
// path such as /proc/<pid>/ns/net (anything with a '/').
func Open(ns string) (netns.NsHandle, error) {
	if strings.ContainsRune(ns, '/') {
		return netns.GetFromPath(ns)
	}
	return netns.GetFromName(ns)
}

// Do runs f inside the namespace ns (see Open) and returns its error.
func Do(ns string, f func() error) error {
	h, err := Open(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := DoHandle(h, f); err != nil {
		return err
	}
	return nil
}

// DoHandle runs f inside the namespace h.
func DoHandle(h netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			// setns failed: the thread is where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering netns %v: %w", h, err)
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
