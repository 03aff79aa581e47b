package openstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
)

// PollInterval is how often the node reads its ports from Neutron. Neutron
// tells a bare-metal instance nothing when a port is added (Nova's
// hot-plug reaches only a hypervisor), and a list filtered by device_id
// is one cheap indexed query; 5 s follows a change "within seconds" at
// 12 queries a minute per node, which a fleet of thousands keeps well
// below what one neutron-server worker answers.
const PollInterval = 5 * time.Second

// maxBackoff bounds the wait after failed polls (doubling from the
// interval): an unreachable cloud is not hammered, and a recovered one is
// noticed within a minute.
const maxBackoff = time.Minute

// Endpoints is what the follower needs of the agent: its local API's
// endpoint calls (agentapi.Client has them).
type Endpoints interface {
	Endpoints() ([]agentapi.Endpoint, error)
	AddEndpoint(agentapi.Endpoint) error
	RemoveEndpoint(name string) error
}

// Links are a compute host's netdevs, where libvirt creates the VMs' taps.
type Links interface {
	// Present says whether the netdev exists.
	Present(name string) (bool, error)
	// Changes signals when a tap appears or goes; the channel closes if
	// the events stop (the follower then polls alone).
	Changes(ctx context.Context) (<-chan struct{}, error)
}

// VIFTap is the binding:vif_type of the ports Weft attaches on a compute
// host: a plain tap that Nova's libvirt driver creates (as
// tap+ID[:11]) and plugs into nothing, which the vRouter takes with
// AF_PACKET.
const VIFTap = "tap"

// Follower keeps the agent's endpoints equal to Neutron's ports: the
// instance's (a bare-metal node: device_id), or on a Nova compute host
// those bound to it (binding:host_id) whose VM tap is present. One
// endpoint per port, on the port's mapped network, with its fixed IPs,
// MAC and allowed addresses. It owns the endpoints that carry a
// NeutronPort and touches no other.
type Follower struct {
	Session  *Session
	Agent    Endpoints
	Mapping  Mapping
	Instance string // meta_data.json's uuid: the ports' device_id
	// Host is the compute host's name in Neutron (binding:host_id, Nova's
	// [DEFAULT] host); set, it replaces Instance: each port bound here
	// with vif_type tap becomes an AF_PACKET endpoint on its tap, once
	// the tap exists in Links.
	Host     string
	Links    Links
	Interval time.Duration // 0 = PollInterval
	Log      *slog.Logger
}

// Run polls until ctx ends. A failed poll changes nothing (the endpoints
// the agent has keep forwarding) and is retried with a growing delay.
func (f *Follower) Run(ctx context.Context) error {
	interval := f.Interval
	if interval <= 0 {
		interval = PollInterval
	}
	wait := interval
	var taps <-chan struct{}
	for {
		if taps == nil && f.Links != nil {
			// A tap libvirt creates is attached at once, not at the next
			// poll; without events the poll alone finds it.
			var err error
			if taps, err = f.Links.Changes(ctx); err != nil {
				f.log().Warn("openstack: no tap events; taps are found by the poll", "err", err)
			}
		}
		if err := f.Sync(ctx); err != nil {
			f.log().Warn("openstack: ports", "err", err, "retry", wait)
			wait = min(2*wait, maxBackoff)
		} else {
			wait = interval
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		case _, ok := <-taps:
			if !ok {
				taps = nil // subscribe again
			}
		}
	}
}

func (f *Follower) log() *slog.Logger {
	if f.Log == nil {
		return slog.Default()
	}
	return f.Log
}

// Sync makes one pass: ports read, endpoints added, changed, removed. A
// port that cannot be attached (an unmapped network) is reported and the
// others are attached; if Neutron cannot be read nothing is removed.
func (f *Follower) Sync(ctx context.Context) error {
	ports, err := f.ports(ctx)
	if err != nil {
		return err
	}
	var errs []error
	want := map[string]agentapi.Endpoint{}
	nets := map[string]string{} // neutron network ID -> Weft network
	for _, p := range ports {
		weft, ok := nets[p.NetworkID]
		if !ok {
			n, err := f.Session.Network(ctx, p.NetworkID)
			if err != nil {
				return err
			}
			if weft, err = f.Mapping.Resolve(n); err != nil {
				errs = append(errs, fmt.Errorf("port %s: %w", p.ID, err))
			}
			nets[p.NetworkID] = weft
		}
		if weft == "" {
			continue
		}
		ep, err := endpointOf(p, weft)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f.Host != "" {
			ep.Device = TapName(p.ID)
		}
		want[ep.Name] = ep
	}
	have, err := f.Agent.Endpoints()
	if err != nil {
		return fmt.Errorf("agent endpoints: %w", err)
	}
	current := map[string]agentapi.Endpoint{}
	for _, e := range have {
		// A restarted agent recovers endpoints from the vRouter without
		// their port: the name says they are ours.
		if e.NeutronPort != "" || e.Source == "api" && strings.HasPrefix(e.Name, namePrefix) {
			current[e.Name] = e
		}
	}
	for name, e := range current {
		if w, ok := want[name]; !ok || !samePlace(e, w) {
			if err := f.Agent.RemoveEndpoint(name); err != nil {
				errs = append(errs, fmt.Errorf("port %s: remove endpoint %s: %w", e.NeutronPort, name, err))
				continue
			}
			f.log().Info("openstack: endpoint removed", "endpoint", name, "port", e.NeutronPort)
			delete(current, name)
		}
	}
	for name, w := range want {
		if e, ok := current[name]; ok && slices.Equal(e.AllowedSources, w.AllowedSources) && e.NeutronPort == w.NeutronPort && e.Device == w.Device {
			continue
		}
		if err := f.Agent.AddEndpoint(w); err != nil {
			errs = append(errs, fmt.Errorf("port %s: add endpoint %s: %w", w.NeutronPort, name, err))
			continue
		}
		f.log().Info("openstack: endpoint attached", "endpoint", name, "port", w.NeutronPort, "network", w.Network,
			"address", w.Address, "allowed", w.AllowedSources)
	}
	return errors.Join(errs...)
}

// ports are the ports to attach: the instance's, or the compute host's
// that are bound as taps whose tap exists (a port Nova has bound but
// libvirt not plugged yet, or one another mechanism driver bound on this
// host, is not Weft's to take).
func (f *Follower) ports(ctx context.Context) ([]Port, error) {
	if f.Host == "" {
		return f.Session.InstancePorts(ctx, f.Instance)
	}
	all, err := f.Session.HostPorts(ctx, f.Host)
	if err != nil {
		return nil, err
	}
	var out []Port
	for _, p := range all {
		if p.VIFType != VIFTap {
			f.log().Debug("openstack: port bound here, not as a tap", "port", p.ID, "vif_type", p.VIFType)
			continue
		}
		ok, err := f.Links.Present(TapName(p.ID))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// samePlace: the endpoint need not be made again (its allowed sources
// and port may change in place; a recovered endpoint has lost its port).
func samePlace(have, want agentapi.Endpoint) bool {
	return have.Network == want.Network && have.Address == want.Address && strings.EqualFold(have.MAC, want.MAC) && have.Device == want.Device &&
		(have.NeutronPort == "" || have.NeutronPort == want.NeutronPort)
}

// namePrefix starts the name of every endpoint join.openstack owns.
const namePrefix = "os-"

// EndpointName is the endpoint (and namespace) of a Neutron port:
// "os-" and the port ID's first 8 characters, short enough for an
// interface name. Runtime endpoints named "os-…" are join.openstack's.
func EndpointName(portID string) string {
	if len(portID) > 8 {
		portID = portID[:8]
	}
	return namePrefix + portID
}

// endpointOf is port p as an endpoint on Weft network weft. The first
// fixed IP is its address; further fixed IPs and the allowed address
// pairs are allowed sources; port security off allows any source.
func endpointOf(p Port, weft string) (agentapi.Endpoint, error) {
	if len(p.FixedIPs) == 0 {
		return agentapi.Endpoint{}, fmt.Errorf("port %s: no fixed IP", p.ID)
	}
	e := agentapi.Endpoint{Name: EndpointName(p.ID), Network: weft, Address: p.FixedIPs[0].String(), MAC: p.MAC, NeutronPort: p.ID}
	var allowed []netip.Prefix
	for _, a := range p.FixedIPs[1:] {
		allowed = append(allowed, netip.PrefixFrom(a.Addr(), a.Addr().BitLen()))
	}
	allowed = append(allowed, p.AllowedPairs...)
	if !p.PortSecurity {
		allowed = append(allowed, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	}
	for _, a := range allowed {
		if !slices.Contains(e.AllowedSources, a.String()) {
			e.AllowedSources = append(e.AllowedSources, a.String())
		}
	}
	return e, nil
}
