package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/weftnet/weft/config"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
)

// declared is what the node is told to be: the running config (and why
// the last reload was refused, if it was) and the endpoints added through
// the API (CNI) or recovered from the vRouter. Desired state starts here.
type declared struct {
	hostname string
	log      *slog.Logger

	mu      sync.Mutex
	cfg     *config.Config
	cfgErr  error                    // the last reload's, if it failed
	runtime map[string]LocalEndpoint // added through the API (CNI), recovered from the vRouter
}

func newDeclared(hostname string, cfg *config.Config, log *slog.Logger) *declared {
	return &declared{hostname: hostname, log: log, cfg: cfg, runtime: map[string]LocalEndpoint{}}
}

// config is the running config.
func (d *declared) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// snapshot is the running config and this node's endpoints, taken together.
func (d *declared) snapshot() (*config.Config, []LocalEndpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg, d.endpointsLocked()
}

// endpoints lists this node's endpoints, and which of them are runtime ones.
func (d *declared) endpoints() (eps []LocalEndpoint, runtime map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	runtime = make(map[string]bool, len(d.runtime))
	for n := range d.runtime {
		runtime[n] = true
	}
	return d.endpointsLocked(), runtime
}

// endpointsLocked lists this node's endpoints: the config's, then the
// runtime ones, by name.
func (d *declared) endpointsLocked() []LocalEndpoint {
	var out []LocalEndpoint
	seen := map[string]bool{}
	for _, e := range d.cfg.LocalEndpoints(d.hostname) {
		ep := LocalEndpoint{Name: e.Name, Network: e.Network, Address: e.Address, Netns: e.Netns, Anycast: e.Anycast}
		if ep.Netns == "" {
			ep.Netns = e.Name
		}
		if len(e.MAC) == 6 {
			ep.MAC = packet.MAC(e.MAC)
		}
		out = append(out, ep)
		seen[e.Name] = true
	}
	names := make([]string, 0, len(d.runtime))
	for n := range d.runtime {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, d.runtime[n])
	}
	return out
}

// raw is the running config as written, and why the last reload was
// refused (nil if it was not).
func (d *declared) raw() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Raw(), d.cfgErr
}

// lastErr is why the last reload was refused, nil if it was not.
func (d *declared) lastErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfgErr
}

// reloaded takes a reload's outcome: an error keeps the running config.
func (d *declared) reloaded(cfg *config.Config, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.cfgErr = err
		return
	}
	d.cfg, d.cfgErr = cfg, nil
	d.ensureStaticNetnsLocked()
}

// add validates and adds a runtime endpoint; it returns the endpoint as
// added (its namespace defaulted).
func (d *declared) add(ep LocalEndpoint) (LocalEndpoint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.Network(ep.Network) == nil {
		return ep, fmt.Errorf("network: no network is called %q", ep.Network)
	}
	if !ep.Address.IsValid() {
		return ep, errors.New("address: required")
	}
	if ep.Name == "" {
		return ep, errors.New("name: required")
	}
	switch {
	case ep.Device != "" && ep.Netns != "":
		return ep, errors.New("netns: an endpoint on a device (AF_PACKET) has no namespace of its own")
	case ep.Device != "" && ep.MAC.IsZero():
		return ep, errors.New("mac: an endpoint on a device (AF_PACKET) needs the MAC its workload sends from")
	case ep.Netns == "" && ep.Device == "":
		ep.Netns = ep.Name
	}
	for _, e := range d.endpointsLocked() {
		// A runtime endpoint in the same place may change what the
		// vRouter changes on a running port: its allowed sources.
		if e.Name != ep.Name {
			continue
		}
		_, isRuntime := d.runtime[e.Name]
		same := slices.Equal(e.AllowedSources, ep.AllowedSources) && e.NeutronPort == ep.NeutronPort
		if !e.samePlacement(ep) || !isRuntime && !same {
			return ep, fmt.Errorf("name: endpoint %q exists with other settings", ep.Name)
		}
	}
	d.runtime[ep.Name] = ep
	return ep, nil
}

// remove removes a runtime endpoint; false if there was none of that name.
func (d *declared) remove(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.runtime[name]
	delete(d.runtime, name)
	return ok
}

// recoverRuntime takes back the endpoints an earlier agent created
// through the API: ports the vRouter has that the config lacks. It also
// creates the namespaces of the config's endpoints.
func (d *declared) recoverRuntime(inst *Installed) {
	d.mu.Lock()
	defer d.mu.Unlock()
	static := map[string]bool{}
	for _, e := range d.cfg.LocalEndpoints(d.hostname) {
		static[e.Name] = true
	}
	for _, p := range inst.Ports {
		if static[p.GetName()] {
			continue
		}
		vrf := inst.VRFs[p.GetVrf()]
		if vrf == nil || len(p.GetAddresses()) == 0 || d.cfg.Network(vrf.GetName()) == nil {
			continue
		}
		addr, err := netip.ParsePrefix(p.GetAddresses()[0])
		if err != nil {
			continue
		}
		ep := LocalEndpoint{Name: p.GetName(), Network: vrf.GetName(), Address: addr, Netns: p.GetNetns(), IfName: p.GetNetnsIfname()}
		if p.GetKind() == vrouterv1.PortKind_PORT_KIND_AF_PACKET {
			ep.Device = p.GetIfname()
		}
		if as := p.GetAddresses(); len(as) > 1 {
			ep.Address6, _ = netip.ParsePrefix(as[1])
		}
		if len(p.GetMac()) == 6 {
			// Kept, so that whoever added it (a Neutron port) adds it
			// again unchanged.
			ep.MAC = packet.MAC(p.GetMac())
		}
		for _, s := range p.GetAllowedSources() {
			if a, err := netip.ParsePrefix(s); err == nil {
				ep.AllowedSources = append(ep.AllowedSources, a)
			}
		}
		d.runtime[ep.Name] = ep
		d.log.Info("endpoint recovered from the vRouter", "endpoint", ep.Name, "network", ep.Network, "address", ep.Address)
	}
	d.ensureStaticNetnsLocked()
}

// ensureStaticNetnsLocked creates the namespaces of the config's endpoints.
func (d *declared) ensureStaticNetnsLocked() {
	for _, e := range d.endpointsLocked() {
		if err := ensureNetns(e.Netns); err != nil {
			d.log.Warn("endpoint namespace", "endpoint", e.Name, "netns", e.Netns, "err", err)
		}
	}
}

// ensureNetns creates a named namespace for an endpoint that has none
// yet; a path (CNI's /proc/…/ns/net) must exist already.
func ensureNetns(ns string) error {
	if ns == "" || ns[0] == '/' {
		return nil
	}
	return port.EnsureNamedNetns(ns)
}
