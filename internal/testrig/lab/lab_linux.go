// Package lab builds the multi-host topologies the vRouter and agent
// integration tests run on: a fabric namespace with a bridge, one
// namespace per host joined to it by a veth (the host's underlay), the
// real `weft vrouter` (and later `weft agent`) processes started inside
// the hosts, and endpoint namespaces the vRouters put their TAPs into.
// A test reads like the topology it builds:
//
//	l := lab.New(t, "wtv")
//	a := l.Host("a", "192.0.2.1")
//	b := l.Host("b", "192.0.2.2")
//	a.StartVRouter(t)
//
// Names carry the test's prefix so that packages running in parallel do
// not collide, and everything is removed by name when the test ends.
package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/testrig/daemon"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/client"
)

// Lab is one topology.
type Lab struct {
	Prefix string
	Fabric *nettest.NS
	// Mode is how the lab's vRouters forward.
	Mode  Mode
	dir   string
	hosts int
}

// New creates the fabric namespace (prefix-fab) with bridge br0; its
// vRouters run userspace only.
func New(t testing.TB, prefix string) *Lab {
	t.Helper()
	return NewMode(t, prefix, Userspace)
}

// NewMode is New with the lab's vRouters forwarding in mode m.
func NewMode(t testing.TB, prefix string, m Mode) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	l := &Lab{Prefix: prefix, Mode: m, dir: t.TempDir()}
	l.Fabric = nettest.New(t, prefix+"-fab")
	l.Fabric.Bridge(t, "br0")
	return l
}

// Host is one simulated server: a namespace whose eth0 is on the fabric.
type Host struct {
	Name     string
	NS       *nettest.NS
	Underlay netip.Addr
	lab      *Lab
	VRouter  *Process
	Client   *client.Client
	Socket   string
	// Agent is the running `weft agent`, AgentAPI its local API.
	Agent       *Process
	AgentAPI    *agentapi.Client
	AgentSocket string
}

// Host adds a host namespace (prefix-name) with eth0 addressed addr/24 on
// the fabric bridge.
func (l *Lab) Host(t testing.TB, name, addr string) *Host {
	t.Helper()
	a, err := netip.ParseAddr(addr)
	if err != nil {
		t.Fatalf("host %s: %v", name, err)
	}
	ns := nettest.New(t, l.Prefix+"-"+name)
	l.hosts++
	peer := fmt.Sprintf("%s%d", shortPrefix(l.Prefix), l.hosts)
	nettest.Veth(t, l.Fabric, peer, "", ns, "eth0", netip.PrefixFrom(a, 24).String())
	l.Fabric.Attach(t, "br0", peer)
	return &Host{Name: name, NS: ns, Underlay: a, lab: l, Socket: filepath.Join(l.dir, name+"-vrouter.sock"),
		AgentSocket: filepath.Join(l.dir, name+"-agent.sock")}
}

func shortPrefix(p string) string {
	if len(p) > 8 {
		return p[:8]
	}
	return p
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary is the weft binary the tests run: WEFT_BIN (make test builds it),
// else one built once per test process from this module.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WEFT_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("WEFT_BIN=%s: %v (run make build)", p, err)
		}
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-lab-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "weft")
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/weft")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/weft: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Process is a daemon started by the lab, with its output kept.
type Process = daemon.Process

// Start runs weft with args inside the host's namespace; it is killed at
// the end of the test and its output logged if the test failed.
func (h *Host) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS.Name, Binary(t)}, args...)...)
	p, err := daemon.Start(cmd)
	if err != nil {
		t.Fatalf("%s: start %s: %v", h.Name, name, err)
	}
	t.Cleanup(func() {
		p.Kill(unix.SIGTERM)
		if t.Failed() {
			t.Logf("%s %s output:\n%s", h.Name, name, indent(p.Output()))
		}
	})
	return p
}

func indent(s string) string {
	return "  | " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  | ")
}

// StartVRouter runs `weft vrouter` in the host and connects to its API.
func (h *Host) StartVRouter(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{"vrouter", "--underlay", h.Underlay.String(), "--socket", h.Socket}, extra...)
	if h.lab.Mode == FastPath && !slices.Contains(extra, "--fastpath") {
		args = append(args, "--fastpath")
	}
	h.VRouter = h.Start(t, "vrouter", args...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.DialRetry(ctx, h.Socket)
	if err != nil {
		t.Fatalf("%s: vrouter did not come up: %v\n%s", h.Name, err, indent(h.VRouter.Output()))
	}
	h.Client = c
	t.Cleanup(func() { c.Close() })
	if h.lab.Mode == FastPath {
		h.RequireFastPath(t)
	}
}

// StartAgent runs `weft agent` in the host with the config file at path,
// this host's name as its hostname, and waits until its API answers.
func (h *Host) StartAgent(t testing.TB, path string, extra ...string) *Process {
	t.Helper()
	args := append([]string{"agent", "--config", path, "--hostname", h.Name, "--vrouter-socket", h.Socket,
		"--api-socket", h.AgentSocket}, extra...)
	// WEFT_AGENT_ARGS runs every lab's agents with more flags (profiling:
	// WEFT_AGENT_ARGS='--cpuprofile /tmp/agent.cpu').
	args = append(args, strings.Fields(os.Getenv("WEFT_AGENT_ARGS"))...)
	h.Agent = h.Start(t, "agent", args...)
	h.AgentAPI = agentapi.NewClient(h.AgentSocket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := h.AgentAPI.Status(); err == nil {
			return h.Agent
		}
		if h.Agent.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s: agent did not come up:\n%s", h.Name, indent(h.Agent.Output()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WriteFile writes a file into the lab's directory and returns its path.
func (l *Lab) WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Endpoint creates a namespace for a workload (prefix-name); the vRouter
// moves the TAP into it.
func (l *Lab) Endpoint(t testing.TB, name string) *nettest.NS {
	t.Helper()
	return nettest.New(t, l.Prefix+"-"+name)
}
