package server

import (
	"context"
	"os"
	"slices"
	"time"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/fastpath"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// fastPathSync is how often the fast path's maps are brought in line with
// the engine's tables besides after each Apply: flows the engine creates
// while forwarding, and the credit of what the kernel carried.
const fastPathSync = 100 * time.Millisecond

// openFastPath loads the fast path, or says why the vRouter runs TAP-only.
func openFastPath(opt *Options, eng *dataplane.Engine, tunnels map[packet.Encap]tunnel.Conn) (*fastpath.Datapath, []string, string) {
	sports := map[packet.Encap][]uint16{}
	for enc, c := range tunnels {
		if u, ok := c.(interface{ SourcePorts() []uint16 }); ok {
			sports[enc] = u.SourcePorts()
		}
	}
	notes, err := fastpath.Probe()
	if err != nil {
		return nil, notes, err.Error()
	}
	fp, err := fastpath.Open(fastpath.Config{
		Underlay: opt.Underlay, UnderlayMTU: eng.UnderlayMTU(), GatewayMAC: opt.GatewayMAC,
		RouterMAC: eng.Options().RouterMAC, MPLSoUDPPort: opt.MPLSoUDPPort, VXLANPort: opt.VXLANPort,
		SourcePorts: sports, PinDir: opt.FastPathPins, Log: opt.Log,
	})
	if err != nil {
		return nil, notes, err.Error()
	}
	if why := fp.Pinned(); why != "" {
		opt.Log.Warn("fast path not pinned: forwarding stops while the vRouter restarts", "reason", why)
	}
	return fp, notes, ""
}

// removeFastPathPins undoes what a crashed fast-path vRouter of this
// instance left (its veth pairs, programs and maps) when this one runs
// without the fast path.
func removeFastPathPins(opt *Options) {
	if _, err := os.Stat(opt.FastPathPins); err != nil {
		return
	}
	ifindex := 0
	if opt.Underlay.IsValid() {
		ifindex = fastpath.UnderlayIfindex(opt.Underlay)
	}
	if err := fastpath.RemovePins(opt.FastPathPins, ifindex); err != nil {
		opt.Log.Warn("fast path: removing what a crashed vRouter left", "dir", opt.FastPathPins, "err", err)
		return
	}
	opt.Log.Info("fast path off: removed what a crashed fast-path vRouter left", "dir", opt.FastPathPins)
}

// fastPort is an endpoint on the fast path: its veth pair and punt TAP,
// taken off the fast path before its devices go.
type fastPort struct {
	*port.VethTAP
	fp *fastpath.Datapath
	id uint32
}

func (p *fastPort) Close() error {
	p.fp.DetachPort(p.id)
	return p.VethTAP.Close()
}

// openFastPort is openPort for a TAP endpoint in a namespace when the fast
// path is on: a veth pair with the TAP as its punt device.
func openFastPort(fp *fastpath.Datapath, p *vrouterv1.Port, cfg dataplane.PortConfig, name string, trainSegs int) (port.Port, packet.MAC, error) {
	v, err := port.CreateVethTAP(port.TAPConfig{
		Name: name, Netns: p.GetNetns(), NetnsIfname: p.GetNetnsIfname(),
		MAC: cfg.MAC, MTU: cfg.MTU, Addresses: cfg.Addresses, Gateways: cfg.Gateways,
		GSOMaxSegs: trainSegs,
	})
	if err != nil {
		return nil, packet.MAC{}, err
	}
	if err := fp.AttachPort(p.GetId(), v.HostIndex, v.TAPIndex); err != nil {
		v.Close()
		return nil, packet.MAC{}, err
	}
	return &fastPort{VethTAP: v, fp: fp, id: p.GetId()}, v.MAC(), nil
}

// runFastPath keeps the maps in line until ctx ends.
func (s *Server) runFastPath(ctx context.Context) {
	if s.fp != nil {
		go s.fp.Run(ctx, s.eng, fastPathSync)
	}
}

// syncFastPath brings the maps in line after a change of the tables, so
// that a removed route or a new policy is not served from them for long.
func (s *Server) syncFastPath() {
	if s.fp == nil {
		return
	}
	s.fp.Programmed()
	if err := s.fp.Sync(s.eng); err != nil {
		s.opt.Log.Warn("fastpath sync", "err", err)
	}
}

// FastPath is the fast path when it runs (tests, benchmarks), else nil.
func (s *Server) FastPath() *fastpath.Datapath { return s.fp }

// fastPortCounters is what the kernel carried for port id, which the
// port's counters include: an operator sees one count whichever path a
// packet took.
func (s *Server) fastPortCounters(id uint32) fastpath.PortCounters {
	if s.fp == nil {
		return fastpath.PortCounters{}
	}
	return s.fp.PortCounters(id)
}

// fastPathNotes are Info's fast_path_notes: the start-up probe's
// findings, then the running fast path's.
func (s *Server) fastPathNotes() []string {
	if s.fp == nil {
		return s.fpNotes
	}
	return append(slices.Clip(s.fpNotes), s.fp.Notes()...)
}

// addFastTunnelCounters adds what the kernel encapsulated and
// decapsulated to the engine's tunnel counters (a GSO super-packet the
// kernel carries whole counts once).
func (s *Server) addFastTunnelCounters(r *vrouterv1.CountersReply) {
	if s.fp == nil {
		return
	}
	k := s.fp.Counters()
	for enc, v := range k.EncapBy {
		if v > 0 {
			r.TunnelTx[enc.String()] += v
		}
	}
	for enc, v := range k.DecapBy {
		if v > 0 {
			r.TunnelRx[enc.String()] += v
		}
	}
}

// fastFlowPackets are the packets the kernel carried by flow (nil when
// the fast path is off).
func (s *Server) fastFlowPackets() map[flow.Key]uint64 {
	if s.fp == nil {
		return nil
	}
	return s.fp.KernelPackets()
}

// fastPathStatus is Info's fast_path.
func (s *Server) fastPathStatus() string {
	switch {
	case s.fp != nil:
		return "on"
	case s.fpOff != "":
		return "off: " + s.fpOff
	}
	return ""
}
