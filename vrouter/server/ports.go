package server

import (
	"errors"
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/proto"

	"github.com/weftnet/weft/internal/mtu"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/port"
)

// portConfig validates p and turns it into the engine's form.
func (s *state) portConfig(p *vrouterv1.Port) (dataplane.PortConfig, error) {
	cfg := dataplane.PortConfig{ID: p.GetId(), Name: p.GetName(), VRF: p.GetVrf(), MTU: int(p.GetMtu()), DHCP: p.GetDhcp(), Hostname: p.GetHostname()}
	if cfg.ID == 0 || cfg.ID >= dataplane.MaxPorts {
		return cfg, fmt.Errorf("id: %d out of range 1..%d", cfg.ID, dataplane.MaxPorts-1)
	}
	if cfg.Name == "" {
		return cfg, errors.New("name: empty")
	}
	switch p.GetKind() {
	case vrouterv1.PortKind_PORT_KIND_TAP:
		if n := p.GetIfname(); len(n) > 15 {
			return cfg, fmt.Errorf("ifname: %q longer than 15 bytes", n)
		}
		if n := p.GetNetnsIfname(); len(n) > 15 {
			return cfg, fmt.Errorf("netns_ifname: %q longer than 15 bytes", n)
		}
	case vrouterv1.PortKind_PORT_KIND_AF_PACKET:
		if p.GetIfname() == "" {
			return cfg, errors.New("ifname: an af_packet port needs the netdev to attach to")
		}
		if p.GetNetns() != "" {
			return cfg, errors.New("netns: an af_packet port attaches to a netdev in the vRouter's namespace")
		}
	default:
		return cfg, fmt.Errorf("kind: %v not supported", p.GetKind())
	}
	if m := p.GetMac(); len(m) != 0 {
		if len(m) != 6 {
			return cfg, fmt.Errorf("mac: %d bytes, want 6", len(m))
		}
		copy(cfg.MAC[:], m)
		if cfg.MAC.IsMulticast() || cfg.MAC.IsZero() {
			return cfg, fmt.Errorf("mac: %v must be unicast", cfg.MAC)
		}
	}
	if cfg.MTU != 0 && (cfg.MTU < mtu.Min || cfg.MTU > mtu.Max) {
		return cfg, fmt.Errorf("mtu: %d out of range %d..%d", cfg.MTU, mtu.Min, mtu.Max)
	}
	var err error
	if cfg.Addresses, err = prefixes("addresses", p.GetAddresses(), false); err != nil {
		return cfg, err
	}
	if len(cfg.Addresses) == 0 {
		return cfg, errors.New("addresses: none")
	}
	if cfg.AllowedSources, err = prefixes("allowed_sources", p.GetAllowedSources(), true); err != nil {
		return cfg, err
	}
	for i, d := range p.GetDns() {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return cfg, fmt.Errorf("dns[%d]: %w", i, err)
		}
		cfg.DNS = append(cfg.DNS, a)
	}
	for i, g := range p.GetGateways() {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return cfg, fmt.Errorf("gateways[%d]: %w", i, err)
		}
		cfg.Gateways = append(cfg.Gateways, a)
	}
	if len(cfg.Gateways) == 0 {
		cfg.Gateways = port.DefaultGateways(cfg.Addresses)
	}
	return cfg, nil
}

func prefixes(field string, in []string, masked bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if masked {
			p = p.Masked()
		}
		out = append(out, p)
	}
	return out, nil
}

// ioFields are the fields whose change needs the port's I/O made again.
func ioFields(p *vrouterv1.Port) *vrouterv1.Port {
	return &vrouterv1.Port{Kind: p.GetKind(), Ifname: p.GetIfname(), Netns: p.GetNetns(), NetnsIfname: p.GetNetnsIfname(),
		Mac: p.GetMac(), Addresses: p.GetAddresses(), Gateways: p.GetGateways(), Mtu: p.GetMtu()}
}

func (s *state) putPort(p *vrouterv1.Port) (bool, error) {
	old, exists := s.objs.Ports[p.GetId()]
	if exists && proto.Equal(old, p) {
		return false, nil
	}
	cfg, err := s.portConfig(p)
	if err != nil {
		return false, err
	}
	if exists && proto.Equal(ioFields(old), ioFields(p)) {
		cur, _ := s.eng.Port(cfg.ID)
		cfg.MAC = cur.MAC
		if err := s.eng.UpdatePort(cfg); err != nil {
			return false, err
		}
		return true, s.refreshPortNextHops(p.GetId())
	}
	if exists {
		if err := s.eng.DetachPort(cfg.ID); err != nil {
			return false, err
		}
	}
	if cfg.MTU == 0 {
		cfg.MTU = s.eng.DefaultMTU()
	}
	io, mac, err := s.open(p, cfg)
	if err != nil {
		return false, err
	}
	cfg.MAC = mac
	if err := s.eng.AttachPort(cfg, io); err != nil {
		io.Close()
		return false, err
	}
	return true, s.refreshPortNextHops(p.GetId())
}

// refreshPortNextHops rewrites the next hops that deliver to port id, whose
// MAC may have changed.
func (s *state) refreshPortNextHops(id uint32) error {
	for _, nh := range s.objs.NextHops {
		if nh.GetKind() == vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT && nh.GetPort() == id {
			n, err := s.nextHop(nh)
			if err != nil {
				return err
			}
			if err := s.eng.SetNextHop(n); err != nil {
				return fmt.Errorf("next hop %d: %w", nh.GetId(), err)
			}
		}
	}
	return nil
}

func (s *state) deletePort(id uint32) error {
	if _, ok := s.objs.Ports[id]; !ok {
		return nil
	}
	return s.eng.DetachPort(id)
}

// setUnderlayMTU puts a new underlay MTU in force and gives the ports
// whose MTU derives from it (Port.mtu 0) the new default endpoint MTU.
// It returns how many ports changed; a port that cannot take the new MTU
// is named in the error, and the others still get it.
func (s *state) setUnderlayMTU(mtu int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.eng.SetUnderlayMTU(mtu); err != nil {
		return 0, err
	}
	want := s.eng.DefaultMTU()
	var errs []error
	n := 0
	for _, id := range sortedKeys(s.objs.Ports) {
		if s.objs.Ports[id].GetMtu() != 0 {
			continue
		}
		if cfg, ok := s.eng.Port(id); !ok || cfg.MTU == want {
			continue
		}
		if err := s.eng.SetPortMTU(id, want); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		s.generation++
	}
	return n, errors.Join(errs...)
}
