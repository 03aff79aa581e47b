package underlay

import (
	"log/slog"
	"time"

	"github.com/weftnet/weft/init/steps"
)

// option adjusts a Manager for a test: a network namespace (withNetns), a
// scratch resolv.conf, shorter waits.
type option func(*Manager) error

func withResolvConf(path string) option {
	return func(m *Manager) error { m.resolvPath = path; return nil }
}

func withNICWait(d time.Duration) option {
	return func(m *Manager) error { m.nicWait = d; return nil }
}

func withDHCPTimeout(d time.Duration) option {
	return func(m *Manager) error { m.dhcpTimeout = d; return nil }
}

func withDHCPWait(d time.Duration) option {
	return func(m *Manager) error { m.dhcpWait = d; return nil }
}

// newManager is New with test options applied.
func newManager(rec *steps.Recorder, log *slog.Logger, opts ...option) (*Manager, error) {
	m := New(rec, log)
	for _, o := range opts {
		if err := o(m); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}
