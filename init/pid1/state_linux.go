package pid1

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/init/steps"
)

// ramOnly is where the last good config is kept without a state disk.
const ramOnly = "RAM only: lost at reboot"

// stateStore is the node's LastGood: a source.Store on StoreDir, which is
// the state disk (a FAT filesystem labelled WEFT-STATE) once one is
// mounted there, else RAM. A disk whose driver probes late (SATA, NVMe)
// is looked for again before each save and load until one is found; a
// disk with the label that could not be used is not tried again (its
// verdict says why).
type stateStore struct {
	n     *node
	store source.Store

	mu     sync.Mutex
	disk   *source.StateDisk
	broken bool // a labelled disk failed to mount
}

func newStateStore(n *node) *stateStore {
	s := &stateStore{n: n, store: source.Store{Dir: StoreDir}}
	s.lookup(true)
	return s
}

func (s *stateStore) Save(b *config.Bundle, c *config.Config) error {
	s.lookup(false)
	return s.store.Save(b, c)
}

func (s *stateStore) Load() (*config.Bundle, *config.Config, error) {
	s.lookup(false)
	return s.store.Load()
}

// Where says where the last good config is kept, as `weft ctl status`
// shows it: "persistent: /dev/vdb1 (WEFT-STATE)" or ramOnly.
func (s *stateStore) Where() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disk != nil {
		return "persistent: " + s.disk.String()
	}
	return ramOnly
}

// lookup mounts the state disk if there is one now; the verdict (step
// last-good) is reported at boot and whenever the answer changes.
func (s *stateStore) lookup(boot bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disk != nil || s.broken {
		return
	}
	ctx, cancel := context.WithTimeout(s.n.ctx, 30*time.Second)
	defer cancel()
	disk, err := source.MountState(ctx, StoreDir, s.n.log)
	switch {
	case err == nil:
		s.disk = &disk
		s.n.rec.Report(StepLastGood, steps.OK, "persistent: "+disk.String(), "dev", disk.Dev, "dir", StoreDir)
	case errors.Is(err, config.ErrNotFound):
		if boot {
			s.n.rec.Report(StepLastGood, steps.Skipped, ramOnly+" (no filesystem labelled "+source.StateLabel+": see the README, Persistent state)", "dir", StoreDir)
		}
	default:
		s.broken = true
		s.n.rec.Report(StepLastGood, steps.Failed, fmt.Sprintf("%v; %s", err, ramOnly), "dir", StoreDir)
	}
}
