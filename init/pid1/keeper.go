package pid1

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/weftnet/weft/init/steps"
)

// A panic in any goroutine of PID 1 would end the process, and the kernel
// panics when init exits. Every goroutine this package starts runs under
// a keeper, which recovers, reports and (for the long-lived loops) starts
// the function again. Goroutines started inside other packages (DHCP
// renewal in init/underlay, the uevent reader in init/kmod) are theirs to
// recover.
type keeper struct {
	log *slog.Logger
	rec Reporter // may be nil
}

// call runs fn and reports whether it panicked.
func (k keeper) call(name string, fn func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			k.log.Error("recovered from a panic: please report this bug", "goroutine", name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if k.rec != nil {
				k.rec.Report("panic", steps.Failed, fmt.Sprintf("%s: %v (recovered; stack on the console)", name, r), "goroutine", name)
			}
		}
	}()
	fn()
	return false
}

// loop runs fn in a new goroutine; when fn panics it is started again after
// a pause, so a bug in one part does not silently stop it for good.
func (k keeper) loop(name string, fn func()) {
	go func() {
		for k.call(name, fn) {
			time.Sleep(time.Second)
		}
	}()
}

// once runs fn in a new goroutine, recovering a panic without restarting.
func (k keeper) once(name string, fn func()) {
	go k.call(name, fn)
}
