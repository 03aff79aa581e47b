package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/internal/mtu"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/fastpath"
	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/port"
	"github.com/weftnet/weft/vrouter/tunnel"
)

// DefaultSocket is where the control API listens.
const DefaultSocket = client.DefaultSocket

// DefaultGatewayMAC is the virtual gateway MAC every endpoint sees, the
// same on every node (the OpenContrail vRouter's): endpoints keep their
// neighbor entry when they move. VXLAN frames between vRouters use each
// node's own router MAC instead (packet.RouterMACFor its underlay
// address), as EVPN expects; a vRouter without an underlay address
// falls back to this one.
var DefaultGatewayMAC = packet.MAC{0x00, 0x00, 0x5e, 0x00, 0x01, 0x00}

// Options configure the vRouter process.
type Options struct {
	Socket string // control API socket; "" = DefaultSocket

	// Underlay is the local underlay address tunnels are bound to and sent
	// from; the zero Addr listens on every address (IPv4).
	Underlay                netip.Addr
	UnderlayMTU             int            // 0 = 1500
	Encaps                  []packet.Encap // tunnels to open; empty = all three
	MPLSoUDPPort, VXLANPort uint16
	GatewayMAC              packet.MAC // zero = DefaultGatewayMAC
	// FlowVRFQuota is the flow-table entries one VRF may hold; 0 = the
	// table's default (flow.Config.VRFQuota).
	FlowVRFQuota int
	// FastPath puts endpoints in namespaces on the in-kernel fast path
	// (package fastpath) when the kernel has what it needs; else the
	// vRouter runs TAP-only and says why (Info.fast_path, `weft ctl status`).
	FastPath bool
	// FastPathPins is where the fast path pins its programs' links and
	// maps so that they outlive the process; "" = fastpath.PinDir of the
	// socket's name ("vrouter" for the default socket).
	FastPathPins string

	Version string
	Log     *slog.Logger
	// Ready, if set, is called once the API serves.
	Ready func()
	// OpenPort replaces the real TAP/AF_PACKET port creation (tests).
	OpenPort PortOpener
}

// Server is a running vRouter: engine, tunnels and control API.
type Server struct {
	vrouterv1.UnimplementedVRouterServer
	opt     Options
	eng     *dataplane.Engine
	st      *state
	started time.Time
	fp      *fastpath.Datapath // nil: TAP-only
	// fpOff is why the fast path asked for is not running; "" when it
	// runs or was not asked for.
	fpOff string
	// fpNotes are the start-up probe's findings (fastpath.Probe).
	fpNotes []string
}

// New opens the tunnels and builds the engine; Serve runs it.
func New(opt Options) (*Server, error) {
	if opt.Socket == "" {
		opt.Socket = DefaultSocket
	}
	if opt.UnderlayMTU == 0 {
		opt.UnderlayMTU = 1500
	}
	if len(opt.Encaps) == 0 {
		opt.Encaps = []packet.Encap{packet.EncapMPLSoUDP, packet.EncapMPLSoGRE, packet.EncapVXLAN}
	}
	if opt.MPLSoUDPPort == 0 {
		opt.MPLSoUDPPort = 6635
	}
	if opt.VXLANPort == 0 {
		opt.VXLANPort = 4789
	}
	if opt.GatewayMAC.IsZero() {
		opt.GatewayMAC = DefaultGatewayMAC
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.FastPathPins == "" {
		opt.FastPathPins = fastpath.PinDir(strings.TrimSuffix(filepath.Base(opt.Socket), ".sock"))
	}
	tunnels := map[packet.Encap]tunnel.Conn{}
	closeAll := func() {
		for _, c := range tunnels {
			c.Close()
		}
	}
	local := opt.Underlay
	if !local.IsValid() {
		local = netip.IPv4Unspecified()
	}
	for _, enc := range opt.Encaps {
		var c tunnel.Conn
		var err error
		switch enc {
		case packet.EncapMPLSoUDP:
			c, err = tunnel.ListenUDP(tunnel.UDPConfig{Listen: netip.AddrPortFrom(local, opt.MPLSoUDPPort)})
		case packet.EncapVXLAN:
			c, err = tunnel.ListenUDP(tunnel.UDPConfig{Listen: netip.AddrPortFrom(local, opt.VXLANPort)})
		case packet.EncapMPLSoGRE:
			c, err = tunnel.ListenGRE(local)
		default:
			err = fmt.Errorf("encapsulation %v not supported", enc)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("vrouter: %v tunnel: %w", enc, err)
		}
		tunnels[enc] = c
	}
	eng, err := dataplane.New(dataplane.Options{
		GatewayMAC: opt.GatewayMAC, RouterMAC: packet.RouterMACFor(opt.Underlay), Underlay: opt.Underlay, UnderlayMTU: opt.UnderlayMTU,
		Tunnels: tunnels, Log: opt.Log, Flows: flow.Config{VRFQuota: opt.FlowVRFQuota},
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	s := &Server{opt: opt, eng: eng, started: time.Now()}
	if opt.FastPath {
		if s.fp, s.fpNotes, s.fpOff = openFastPath(&opt, eng, tunnels); s.fp == nil {
			opt.Log.Warn("fast path off: running TAP-only", "reason", s.fpOff)
		} else {
			opt.Log.Info("fast path on: endpoints in namespaces are veth pairs, established flows forwarded in the kernel")
		}
	} else {
		removeFastPathPins(&opt)
	}
	if opt.OpenPort == nil {
		opt.OpenPort = func(p *vrouterv1.Port, cfg dataplane.PortConfig) (port.Port, packet.MAC, error) {
			return openPort(s.fp, p, cfg, eng.TrainSegments(cfg.MTU))
		}
	}
	s.opt = opt
	s.st = newState(eng, opt.OpenPort)
	return s, nil
}

// Engine exposes the data path (benchmarks, tests).
func (s *Server) Engine() *dataplane.Engine { return s.eng }

// Serve runs the engine and the control API until ctx ends, then removes
// every port it created and the socket.
func (s *Server) Serve(ctx context.Context) error {
	if s.fp != nil {
		defer s.fp.Close()
	}
	defer s.eng.Close()
	if err := os.MkdirAll(filepath.Dir(s.opt.Socket), 0o755); err != nil {
		return fmt.Errorf("vrouter: socket directory: %w", err)
	}
	if err := removeStaleSocket(s.opt.Socket); err != nil {
		return err
	}
	ln, err := net.Listen("unix", s.opt.Socket)
	if err != nil {
		return fmt.Errorf("vrouter: listen %s: %w", s.opt.Socket, err)
	}
	defer os.Remove(s.opt.Socket)
	if err := os.Chmod(s.opt.Socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("vrouter: chmod %s: %w", s.opt.Socket, err)
	}
	s.eng.Start(ctx)
	s.runFastPath(ctx)
	gs := grpc.NewServer()
	vrouterv1.RegisterVRouterServer(gs, s)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	s.opt.Log.Info("vrouter ready", "socket", s.opt.Socket, "underlay", s.opt.Underlay, "mtu", s.opt.UnderlayMTU,
		"encaps", fmt.Sprint(s.opt.Encaps), "endpoint_mtu", s.eng.DefaultMTU())
	if s.opt.Ready != nil {
		s.opt.Ready()
	}
	select {
	case <-ctx.Done():
		gs.GracefulStop()
		return nil
	case err := <-errc:
		return fmt.Errorf("vrouter: serve: %w", err)
	}
}

// removeStaleSocket removes a socket file no process listens on; a live
// one means another vRouter runs.
func removeStaleSocket(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("vrouter: %s: another vRouter is serving there; stop it first", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("vrouter: removing stale socket %s: %w", path, err)
	}
	return nil
}

// openPort is the real PortOpener. A TAP's super-frames are capped at
// trainSegs segments, so that each leaves as one UDP GSO train.
func openPort(fp *fastpath.Datapath, p *vrouterv1.Port, cfg dataplane.PortConfig, trainSegs int) (port.Port, packet.MAC, error) {
	switch p.GetKind() {
	case vrouterv1.PortKind_PORT_KIND_TAP:
		name := p.GetIfname()
		if name == "" {
			name = fmt.Sprintf("wt%d", p.GetId())
		}
		if fp != nil && p.GetNetns() != "" {
			return openFastPort(fp, p, cfg, name, trainSegs)
		}
		t, err := port.CreateTAP(port.TAPConfig{
			Name: name, Netns: p.GetNetns(), NetnsIfname: p.GetNetnsIfname(),
			MAC: cfg.MAC, MTU: cfg.MTU, Addresses: cfg.Addresses, Gateways: cfg.Gateways,
			GSOMaxSegs: trainSegs,
		})
		if err != nil {
			return nil, packet.MAC{}, err
		}
		return t, t.MAC(), nil
	case vrouterv1.PortKind_PORT_KIND_AF_PACKET:
		a, err := port.OpenAFPacket(p.GetIfname())
		if err != nil {
			return nil, packet.MAC{}, err
		}
		if cfg.MAC.IsZero() {
			a.Close()
			return nil, packet.MAC{}, errors.New("mac: an af_packet port needs the endpoint's MAC")
		}
		return a, cfg.MAC, nil
	}
	return nil, packet.MAC{}, fmt.Errorf("kind: %v not supported", p.GetKind())
}

// The API --------------------------------------------------------------

// Info implements the API.
func (s *Server) Info(ctx context.Context, _ *vrouterv1.InfoRequest) (*vrouterv1.InfoReply, error) {
	sizes, gen := s.st.sizes()
	rmac := s.eng.Options().RouterMAC
	u := &vrouterv1.Underlay{Mtu: uint32(s.eng.UnderlayMTU()), MplsUdpPort: uint32(s.opt.MPLSoUDPPort),
		VxlanPort: uint32(s.opt.VXLANPort), RouterMac: rmac[:]}
	if s.opt.Underlay.IsValid() {
		u.Address = s.opt.Underlay.String()
	}
	for _, e := range s.opt.Encaps {
		u.Encaps = append(u.Encaps, vrouterv1.EncapFromPacket(e))
	}
	return &vrouterv1.InfoReply{Version: s.opt.Version, ApiVersion: 1, StartedUnix: s.started.Unix(),
		Underlay: u, Generation: gen, TableSizes: sizes, FastPath: s.fastPathStatus(), FastPathNotes: s.fastPathNotes()}, nil
}

// Apply implements the API.
func (s *Server) Apply(ctx context.Context, req *vrouterv1.ApplyRequest) (*vrouterv1.ApplyReply, error) {
	n, err := s.st.apply(req.GetOps())
	s.syncFastPath()
	if err != nil {
		s.opt.Log.Warn("apply refused", "applied", n, "of", len(req.GetOps()), "err", err)
		return nil, status.Errorf(codes.InvalidArgument, "applied %d of %d: %v", n, len(req.GetOps()), err)
	}
	_, gen := s.st.sizes()
	return &vrouterv1.ApplyReply{Applied: uint32(n), Generation: gen}, nil
}

// SetUnderlay implements the API.
func (s *Server) SetUnderlay(ctx context.Context, req *vrouterv1.SetUnderlayRequest) (*vrouterv1.SetUnderlayReply, error) {
	want := int(req.GetMtu())
	if want < mtu.Min || want > mtu.Max {
		return nil, status.Errorf(codes.InvalidArgument, "mtu: %d out of range %d..%d", req.GetMtu(), mtu.Min, mtu.Max)
	}
	old := s.eng.UnderlayMTU()
	n, err := s.st.setUnderlayMTU(want)
	if err != nil {
		s.opt.Log.Warn("underlay mtu: ports not updated", "mtu", want, "err", err)
		return nil, status.Errorf(codes.Internal, "mtu %d in force, but: %v", want, err)
	}
	if old != want {
		s.opt.Log.Info("underlay mtu changed", "from", old, "mtu", want, "endpoint_mtu", s.eng.DefaultMTU(), "ports", n)
	}
	_, gen := s.st.sizes()
	return &vrouterv1.SetUnderlayReply{Mtu: uint32(want), EndpointMtu: uint32(s.eng.DefaultMTU()), PortsChanged: uint32(n), Generation: gen}, nil
}

// Dump implements the API.
func (s *Server) Dump(req *vrouterv1.DumpRequest, stream grpc.ServerStreamingServer[vrouterv1.DumpReply]) error {
	objs, err := s.st.dump(req.GetKinds(), req.GetVrf())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	for _, o := range objs {
		if err := stream.Send(o); err != nil {
			return err
		}
	}
	return nil
}

// Counters implements the API.
func (s *Server) Counters(ctx context.Context, _ *vrouterv1.CountersRequest) (*vrouterv1.CountersReply, error) {
	c := s.eng.Counters()
	r := &vrouterv1.CountersReply{Drops: c.Drops, TunnelRx: c.TunnelRx, TunnelTx: c.TunnelTx, RuleHits: map[uint32]uint64{}}
	s.st.mu.Lock()
	names := map[uint32]string{}
	for id, p := range s.st.objs.Ports {
		names[id] = p.GetName()
	}
	s.st.mu.Unlock()
	for _, id := range sortedKeys(c.Ports) {
		pc := c.Ports[id]
		k := s.fastPortCounters(id)
		r.Ports = append(r.Ports, &vrouterv1.PortCounters{Port: id, Name: names[id], RxPackets: pc.RxPackets + k.RxPackets, RxBytes: pc.RxBytes + k.RxBytes,
			TxPackets: pc.TxPackets + k.TxPackets, TxBytes: pc.TxBytes + k.TxBytes, Drops: pc.Drops})
	}
	s.addFastTunnelCounters(r)
	fs := s.eng.Flows().Stats()
	for id, n := range fs.RuleHits {
		r.RuleHits[id] = n
	}
	r.PolicyDenied = fs.Denied
	r.FlowTableFull = fs.Full
	r.FlowQuotaHits = map[uint32]uint64{}
	for id, v := range fs.VRFs {
		if v.QuotaHits > 0 {
			r.FlowQuotaHits[id] = v.QuotaHits
		}
	}
	return r, nil
}

// Flows implements the API.
func (s *Server) Flows(ctx context.Context, req *vrouterv1.FlowsRequest) (*vrouterv1.FlowsReply, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 1000
	}
	r := &vrouterv1.FlowsReply{}
	kernel := s.fastFlowPackets()
	s.eng.Flows().All(func(k flow.Key, e *flow.Entry) bool {
		if req.GetVrf() != 0 && k.VRF != req.GetVrf() {
			return true
		}
		r.Total++
		if len(r.Flows) < limit {
			f := flowToAPI(k, e)
			f.KernelPackets = kernel[k]
			r.Flows = append(r.Flows, f)
		}
		return true
	})
	fs := s.eng.Flows().Stats()
	for _, id := range sortedKeys(fs.VRFs) {
		if v := fs.VRFs[id]; req.GetVrf() == 0 || id == req.GetVrf() {
			r.Vrfs = append(r.Vrfs, &vrouterv1.VrfFlows{Vrf: id, Entries: uint64(v.Entries), Quota: uint64(fs.VRFQuota), QuotaHits: v.QuotaHits})
		}
	}
	return r, nil
}

func flowToAPI(k flow.Key, e *flow.Entry) *vrouterv1.Flow {
	f := &vrouterv1.Flow{Vrf: k.VRF, Protocol: uint32(k.Tuple.Proto), SrcPort: uint32(k.Tuple.SrcPort), DstPort: uint32(k.Tuple.DstPort),
		Allowed: e.Allowed(), Rule: e.Rule(), Reverse: e.Reverse(), Packets: e.Packets(), Bytes: e.Bytes(),
		LastSeenUnixMs: e.LastSeen() / int64(time.Millisecond)}
	if k.Tuple.Src.IsValid() {
		f.Src = k.Tuple.Src.String()
	}
	if k.Tuple.Dst.IsValid() {
		f.Dst = k.Tuple.Dst.String()
	}
	return f
}
