// Package inproc runs the vRouter's server (vrouter/server) inside the
// test's process, behind its real control API socket, with ports that
// carry no traffic: for tests of the control API and of what programs it
// (the agent's planner), where the data path's I/O is not under test and
// a `weft vrouter` process, TAPs and endpoint namespaces would only add
// time. The data path itself is reachable (Server.Engine) to check what
// was programmed.
package inproc

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/server"
)

// quietPort is a port.Port that carries no traffic. Read blocks until
// Close; Write takes every frame.
type quietPort struct {
	name string
	done chan struct{}
	once sync.Once
}

func (p *quietPort) Name() string   { return p.name }
func (p *quietPort) BatchSize() int { return port.BatchSize }

func (p *quietPort) Read([]*frame.Frame) (int, error) {
	<-p.done
	return 0, port.ErrClosed
}

func (p *quietPort) Write(f []*frame.Frame) (int, error) {
	select {
	case <-p.done:
		return 0, port.ErrClosed
	default:
		return len(f), nil
	}
}

func (p *quietPort) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// VRouter starts a vRouter server in this process, its tunnel sockets on
// 127.0.0.1 in a network namespace of its own (ns, which needs root: a
// skip locally, a failure under CI) and its ports quiet (a port left
// without a MAC gets 02:00:00:00:00:<id>), and returns it with a client
// on its control API socket. Both stop when t ends.
func VRouter(t testing.TB, ns string) (*server.Server, *client.Client) {
	t.Helper()
	n := nettest.New(t, ns)
	sock := filepath.Join(t.TempDir(), "vrouter.sock")
	var s *server.Server
	err := n.Do(func() (err error) {
		s, err = server.New(server.Options{Socket: sock, Underlay: netip.MustParseAddr("127.0.0.1"),
			Log: slog.New(slog.DiscardHandler),
			OpenPort: func(p *vrouterv1.Port, cfg dataplane.PortConfig) (port.Port, packet.MAC, error) {
				mac := cfg.MAC
				if mac.IsZero() {
					mac = packet.MAC{0x02, 0, 0, 0, 0, byte(p.GetId())}
				}
				return &quietPort{name: p.GetName(), done: make(chan struct{})}, mac, nil
			}})
		return err
	})
	if err != nil {
		t.Fatalf("in-process vrouter: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("in-process vrouter: %v", err)
		}
	})
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	c, err := client.DialRetry(dctx, sock)
	if err != nil {
		t.Fatalf("in-process vrouter: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}
