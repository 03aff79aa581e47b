package main

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The module's import rules (docs/DESIGN.md, "Who may import whom"). They
// are checked here, from `go list`, so that a shortcut import fails
// `make test` instead of waiting for a review. cmd/weft is the one place
// that may import everything: it wires the programs together.

const module = "github.com/weftnet/weft"

// rule: no package matching from (a module-relative path, "x/..." for a
// tree) may depend, directly or not, on a package matching any of deny,
// unless that package matches allow.
type rule struct {
	from  string
	deny  []string
	allow []string
	why   string
}

var layering = []rule{
	{from: "init/...", deny: []string{"agent/...", "controller/...", "vrouter/..."},
		allow: []string{"agent/agentapi", "controller/fleetapi", "vrouter/api/...", "vrouter/client", "vrouter/packet"},
		why:   "PID 1 talks to the agent, the controller and the vRouter only through their API packages (vrouter/packet: the wire vocabulary the vRouter's API speaks)"},
	{from: "vrouter/...", deny: []string{"agent/...", "config/...", "controller/...", "init/..."},
		why: "the vRouter is programmed only through its control API"},
	{from: "config/...", deny: []string{"agent/...", "vrouter/...", "init/...", "controller/..."},
		allow: []string{"controller/fleetapi"},
		why:   "config is the schema and its sources, below every program; the metadata source names the node's MACs in the controller's fleetapi.MACHeader"},
	{from: "agent/bgp/...", deny: []string{"config/...", "controller/...", "init/..."},
		why: "the BGP speaker takes its own types; the agent converts its config once"},
	{from: "internal/bgpguard", deny: []string{"agent/...", "controller/...", "config/...", "init/...", "vrouter/..."},
		why: "the BGP guard sits in front of every GoBGP (the agent's speaker, the controller's reflector): it knows GoBGP and nothing of either program"},
	{from: "agent/agentapi", deny: []string{"agent", "agent/bgp/...", "controller/...", "init/...", "config/..."},
		why: "a contract package carries documents and a client, not its server"},
	{from: "controller/fleetapi", deny: []string{"controller", "agent/...", "init/...", "vrouter/..."},
		why: "a contract package carries documents and a client, not its server"},
	{from: "bootstrap/...", deny: []string{"agent/...", "controller/...", "init/...", "vrouter/..."},
		allow: []string{"agent/agentapi", "vrouter/api/...", "vrouter/packet"},
		why:   "joining an orchestrator (the CNI plugin, OpenStack) feeds the agent through its local API (agentapi), never its internals (vrouter/api, vrouter/packet: what agentapi's documents carry)"},
	{from: "qemu/...", deny: []string{"agent", "controller", "init/pid1"},
		why: "the QEMU harness and the demo drive the programs through their APIs"},
	{from: "bootstrap/cni", deny: []string{"config/..."},
		why: "the CNI plugin knows the networks only as the agent names them: weft.yaml is the agent's to read"},
	{from: "internal/testrig/...", deny: []string{"agent", "controller"},
		why: "test rigs drive the programs through their API packages and binaries"},
}

// productRoots must never depend on the test rigs.
var testrigs = "internal/testrig/..."

type listed struct {
	ImportPath string
	Deps       []string
	Standard   bool
}

func goList(t *testing.T, pattern string) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps,Standard", pattern)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %s: %v\n%s", pattern, err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", pattern, err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list %s: %v", pattern, err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// matches reports whether the module package path (full import path) is
// matched by pattern ("x" exactly, or "x/..." for x and below).
func matches(path, pattern string) bool {
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return false
	}
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == tree || strings.HasPrefix(rel, tree+"/")
	}
	return rel == pattern
}

func matchesAny(path string, patterns []string) bool {
	for _, p := range patterns {
		if matches(path, p) {
			return true
		}
	}
	return false
}

func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to read the import graph: %v", err)
	}
	pkgs := goList(t, module+"/...")
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: the pattern or the module path is wrong", len(pkgs))
	}
	for _, r := range layering {
		roots := 0
		for _, p := range pkgs {
			if !matches(p.ImportPath, r.from) {
				continue
			}
			roots++
			for _, d := range p.Deps {
				if matchesAny(d, r.deny) && !matchesAny(d, r.allow) {
					t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
		if roots == 0 {
			t.Errorf("rule %q matches no package: update the rule with the layout", r.from)
		}
	}
	for _, p := range pkgs {
		if matches(p.ImportPath, testrigs) {
			continue
		}
		for _, d := range p.Deps {
			if matches(d, testrigs) {
				t.Errorf("%s (product code) depends on the test rig %s", p.ImportPath, d)
			}
		}
	}
}

// kubeFree are the trees that must not link client-go and the Kubernetes
// API types (tens of MB, thousands of packages): only bootstrap/kubernetes
// and cmd/weft, which wires it into the agent's process, need them.
var kubeFree = []string{"agent/...", "vrouter/...", "init/...", "config/...", "controller/...", "bootstrap/cni", "bootstrap/openstack"}

func TestLayeringKubernetes(t *testing.T) {
	for _, p := range goList(t, module+"/...") {
		if !matchesAny(p.ImportPath, kubeFree) {
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "k8s.io/") {
				t.Errorf("%s depends on %s: the agent's Kubernetes side lives in bootstrap/kubernetes (agent.PodNetworks is its seam)", p.ImportPath, d)
				break
			}
		}
	}
}

// TestLayeringMatches keeps the matcher honest: a rule that matched nothing
// would pass silently.
func TestLayeringMatches(t *testing.T) {
	for _, c := range []struct {
		path, pattern string
		want          bool
	}{
		{module + "/agent", "agent", true},
		{module + "/agent/agentapi", "agent", false},
		{module + "/agent/agentapi", "agent/...", true},
		{module + "/agentx", "agent/...", false},
		{module + "/init/pid1", "init/...", true},
		{"github.com/other/agent", "agent/...", false},
	} {
		if got := matches(c.path, c.pattern); got != c.want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.path, c.pattern, got, c.want)
		}
	}
}
