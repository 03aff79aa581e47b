package pid1

import "sync"

// taskPool runs work on a fixed number of goroutines, with a bounded
// queue in front of them: however many tasks the controller hands a node,
// PID 1 holds at most workers+queued of them, and refuses the rest at once
// (submit's false) instead of starting a goroutine, and a probe with its
// socket, per task.
type taskPool struct {
	queue chan func()
	wg    sync.WaitGroup
}

func newTaskPool(workers, queued int) *taskPool {
	p := &taskPool{queue: make(chan func(), queued)}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for f := range p.queue {
				f()
			}
		}()
	}
	return p
}

// submit queues f; it returns false, without running f, when the queue is
// full. It must not be called after close.
func (p *taskPool) submit(f func()) bool {
	select {
	case p.queue <- f:
		return true
	default:
		return false
	}
}

// close runs what is queued and waits for the workers to end.
func (p *taskPool) close() {
	close(p.queue)
	p.wg.Wait()
}
