package pid1

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/init/steps"
)

// Phone-home: a node that boots from a weft controller (weft.config= a
// metadata base URL, ending in "/") reports its boot steps and, once the
// agent runs, its BGP sessions and endpoints, so that the fleet view shows
// which node is stuck where and why. It also runs the live checks (probes)
// the controller hands it, through the agent.

const (
	reportBooting = 5 * time.Second  // while not ready: the operator is watching
	reportReady   = 15 * time.Second // then
	agentSocket   = RunDir + "/agent.sock"
)

// identity is the node's name as the controller knows it: meta_data.json's
// name, learnt from any bundle fetched.
type identity struct {
	mu   sync.Mutex
	name string
}

func (id *identity) seen(b *config.Bundle) {
	if b == nil || b.MetaData == nil {
		return
	}
	name := b.MetaData.Name
	if name == "" {
		name = b.MetaData.Hostname
	}
	if name == "" {
		return
	}
	id.mu.Lock()
	id.name = name
	id.mu.Unlock()
}

func (id *identity) get() string {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.name
}

// controllerBase is the controller's URL when the node boots from one.
func controllerBase(cl config.Cmdline) string {
	if u := cl.ConfigURL; strings.HasSuffix(u, "/") && (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) {
		return u
	}
	return ""
}

// phoneHome reports until ctx ends, with the node's credential.
func (n *node) phoneHome(ctx context.Context, node *fleetapi.Claimer, id *identity) {
	base := node.URL
	c := &fleetapi.Client{URL: base, MACs: nicMACs(), HTTP: node.HTTP, Node: node}
	ac := agentapi.NewClient(agentSocket)
	var lastErr string
	for {
		interval := reportBooting
		if n.ready() {
			interval = reportReady
		}
		if name := id.get(); name != "" {
			rep := &fleetapi.Report{IntervalSeconds: int(interval / time.Second), Time: time.Now(), Version: n.opts.Version,
				Addresses: hostAddrs(), Steps: reportSteps(n.rec.Steps()), Agent: agentStatus(ac)}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.Report(rctx, name, rep)
			cancel()
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if msg != lastErr {
				if err != nil {
					n.log.Warn("phone-home to the controller failed", "controller", base, "node", name, "err", err)
				} else {
					n.log.Info("reporting to the controller", "controller", base, "node", name)
				}
				lastErr = msg
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (n *node) ready() bool {
	for _, s := range n.rec.Steps() {
		if s.Name == StepReady {
			return s.Verdict == steps.OK
		}
	}
	return false
}

// agentStatus reads the local agent; nil while it is not up.
func agentStatus(ac *agentapi.Client) *fleetapi.AgentStatus {
	st, err := ac.Status()
	if err != nil {
		return nil
	}
	as := &fleetapi.AgentStatus{}
	if rid, err := netip.ParseAddr(st.RouterID); err == nil {
		as.RouterID = rid
	}
	if peers, err := ac.Peers(); err == nil {
		for _, p := range peers {
			a, err := netip.ParseAddr(p.Address)
			if err != nil {
				continue
			}
			as.BGP = append(as.BGP, fleetapi.BGPSession{Peer: a, State: p.State, LastError: p.LastError})
		}
	}
	if eps, err := ac.Endpoints(); err == nil {
		for _, e := range eps {
			p, _ := netip.ParsePrefix(e.Address)
			as.Endpoints = append(as.Endpoints, fleetapi.Endpoint{Name: e.Name, Network: e.Network, Address: p})
		}
	}
	return as
}

func nicMACs() []net.HardwareAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []net.HardwareAddr
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
			out = append(out, i.HardwareAddr)
		}
	}
	return out
}

// hostAddrs are the node's global unicast addresses.
func hostAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		if ip = ip.Unmap(); ip.IsGlobalUnicast() {
			out = append(out, ip)
		}
	}
	return out
}

// probeWorkers is how many probes PID 1 runs at once (the agent runs at
// most agentapi.MaxRunningProbes; the rest are left to operators' `weft
// ctl probe`), probeQueue how many more wait their turn. A task beyond
// both is answered at once as refused.
const (
	probeWorkers = 4
	probeQueue   = 16
)

// runProbes long-polls the controller for probes and runs each through
// the local agent (which enters the endpoint's namespace), with the
// node's credential, on a bounded pool: a controller (or whoever answers
// as one) that hands out many tasks cannot make PID 1 start a goroutine
// and a probe for each.
func (n *node) runProbes(ctx context.Context, node *fleetapi.Claimer, id *identity) {
	c := &fleetapi.Client{URL: node.URL, MACs: nicMACs(), HTTP: node.HTTP, Node: node}
	ac := agentapi.NewClient(agentSocket)
	pool := newTaskPool(probeWorkers, probeQueue)
	defer pool.close()
	for ctx.Err() == nil {
		name := id.get()
		if name == "" {
			time.Sleep(2 * time.Second)
			continue
		}
		tasks, err := c.Tasks(ctx, name)
		if err != nil {
			time.Sleep(2 * time.Second)
			continue
		}
		for _, t := range tasks {
			if !pool.submit(func() { n.runProbe(ctx, c, ac, t) }) {
				n.log.Warn("probe refused: too many running", "probe", t.ID, "running", probeWorkers, "queued", probeQueue)
				n.sendProbeResult(ctx, c, t.ID, fleetapi.ProbeResult{Detail: fmt.Sprintf(
					"node busy: %d probes running and %d waiting, the most it takes on: try again when they are done", probeWorkers, probeQueue)})
			}
		}
	}
}

// runProbe runs t through the agent and sends its result.
func (n *node) runProbe(ctx context.Context, c *fleetapi.Client, ac *agentapi.Client, t fleetapi.ProbeTask) {
	res, err := ac.Probe(ctx, agentapi.ProbeRequest{Endpoint: t.Endpoint, To: t.To.String(), Kind: string(t.Kind),
		Port: t.Port, Count: t.Count, TimeoutMillis: t.TimeoutMillis})
	r := fleetapi.ProbeResult{OK: res.OK, Detail: res.Detail, RTTMicros: res.RTTMicros}
	if err != nil {
		r = fleetapi.ProbeResult{Detail: err.Error()}
	}
	n.sendProbeResult(ctx, c, t.ID, r)
}

func (n *node) sendProbeResult(ctx context.Context, c *fleetapi.Client, id string, r fleetapi.ProbeResult) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.ProbeResult(rctx, id, r); err != nil {
		n.log.Warn("probe result not delivered", "probe", id, "err", err)
	}
}
