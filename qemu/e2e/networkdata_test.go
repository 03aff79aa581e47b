package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/qemu"
)

// manyLinks is a network_data.json of n links: n-1 NICs that are not there
// and, last, the node's NIC on DHCP.
func manyLinks(n int) string {
	var b strings.Builder
	b.WriteString(`{"links": [`)
	for i := range n - 1 {
		fmt.Fprintf(&b, "\n"+`{"id": "ghost%d", "type": "phy", "ethernet_mac_address": "52:54:01:%02x:%02x:%02x", "mtu": 1500},`, i, i>>16, (i>>8)&255, i&255)
	}
	b.WriteString("\n" + `{"id": "nic0", "type": "phy", "ethernet_mac_address": "` + nodeMAC + `", "mtu": 1500}],
"networks": [{"id": "net0", "type": "ipv4_dhcp", "link": "nic0"}],
"services": []}`)
	return b.String()
}

// A network_data.json of 10,000 links (the real NIC last) costs the node
// its bounded wait for the missing NICs, not minutes of status writes: it
// is ready within a minute of the same node with a 1-link document, and
// its operator console answers all along (issue 10).
func TestBootTenThousandLinks(t *testing.T) {
	imageDir(t)
	tOne, _ := bootLinks(t, "1-link", 1)
	tBig, q := bootLinks(t, "10000-links", 10_000)
	figures(t, "network-data-links", "s-to-ready-1-link", tOne, "s-to-ready-10000-links", tBig,
		"operator-queries", float64(q.answered), "s-slowest-answer", q.slowest.Seconds())
	if tBig > tOne+60 {
		t.Errorf("ready after %.1fs with 10,000 links, %.1fs with 1: more than 60s apart", tBig, tOne)
	}
}

// queries is what the operator console answered while a node came up.
type queries struct {
	answered int
	slowest  time.Duration
}

// bootLinks boots the node with a network_data.json of n links, asks its
// operator console for the status every 2 s until it is ready, and returns
// the seconds to ready.
func bootLinks(t *testing.T, name string, n int) (float64, queries) {
	var ready float64
	var q queries
	t.Run(name, func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "op.sock")
		vm := boot(t, qemu.Machine{
			NICs:            []qemu.NIC{{MAC: mac(nodeMAC), User: &qemu.UserNet{}}},
			ConfigDrive:     configDrive(t, metaData, manyLinks(n), weftYAMLNoUnderlay),
			OperatorConsole: sock,
			// The drive's 10,000-link document, its parse, layout and
			// verdicts live in PID 1's memory beside the initramfs: more
			// than the harness's default guest (192 MB) holds. A real
			// server has gigabytes.
			MemoryMB: 512,
		})
		op := dialOperator(t, sock)
		done := make(chan struct{})
		var wg sync.WaitGroup
		var unanswered error
		wg.Go(func() {
			// The prompt comes up with PID 1, before the bring-up: from the
			// first answer on, every query must be answered.
			first := true
			for {
				select {
				case <-done:
					return
				case <-time.After(2 * time.Second):
				}
				// Until the first answer, a query may go to a port no one
				// reads yet: ask again soon.
				timeout := 30 * time.Second
				if first {
					timeout = 3 * time.Second
				}
				ans, took, err := op.ask("steps config-drive underlay ready", timeout)
				if err != nil {
					if !first {
						unanswered = fmt.Errorf("operator console after %d answers: %w", q.answered, err)
						return
					}
					continue
				}
				first = false
				q.answered++
				q.slowest = max(q.slowest, took)
				t.Logf("operator console answered in %v:\n%s", took.Round(time.Millisecond), ans)
			}
		})
		_, tDrive := expect(t, vm, `weft: step=config-drive verdict=ok`)
		_, tUnderlay := expect(t, vm, `weft: step=underlay verdict=ok`)
		_, ready = expect(t, vm, `weft: step=ready verdict=ok .*underlay=10\.0\.2\.15`)
		t.Logf("%s: config drive read at %.1fs, underlay ok at %.1fs, ready at %.1fs", name, tDrive, tUnderlay, ready)
		close(done)
		wg.Wait()
		if unanswered != nil {
			t.Error(unanswered)
		}
		switch {
		case q.answered > 0:
		case n > 1:
			t.Error("the operator console never answered during the bring-up")
		default:
			// A 1-link bring-up may be over before the first 2 s query:
			// the console must still answer, once, after it.
			if _, _, err := op.ask("steps ready", 30*time.Second); err != nil {
				t.Errorf("the operator console never answered: %v", err)
			}
		}
		if n > 1 {
			last := fmt.Sprintf("52:54:01:%02x:%02x:%02x", 0, (n-2)>>8, (n-2)&255)
			if !regexp.MustCompile(`weft: step=link verdict=failed .*` + last).MatchString(vm.Console()) {
				t.Errorf("the last missing NIC (%s) has no failed verdict", last)
			}
		}
	})
	return ready, q
}

// operator is a connection to a node's operator console (ttyS1).
type operator struct {
	c       net.Conn
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{}
}

func dialOperator(t *testing.T, sock string) *operator {
	t.Helper()
	var c net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err = net.Dial("unix", sock); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("operator console: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	o := &operator{c: c, changed: make(chan struct{})}
	go func() {
		b := make([]byte, 64<<10)
		for {
			n, err := c.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

var entriesLine = regexp.MustCompile(`\((\d+) entries\)`)

// ask sends a command and waits for the end of the steps listing.
func (o *operator) ask(cmd string, timeout time.Duration) (string, time.Duration, error) {
	o.mu.Lock()
	from := o.buf.Len()
	o.mu.Unlock()
	start := time.Now()
	if _, err := o.c.Write([]byte(cmd + "\n")); err != nil {
		return "", 0, err
	}
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		out, changed := o.buf.String()[from:], o.changed
		o.mu.Unlock()
		if entriesLine.MatchString(out) {
			return strings.TrimSpace(strings.ReplaceAll(out, "\r", "")), time.Since(start), nil
		}
		select {
		case <-changed:
		case <-deadline:
			return "", 0, fmt.Errorf("no answer to %q within %v (got %q)", cmd, timeout, out)
		}
	}
}
