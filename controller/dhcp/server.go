package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/inventory"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Deps are what the server answers from besides its Config, read for
// each datagram.
type Deps struct {
	Inv func() *inventory.Inventory
	// BootURL returns option 67 for an iPXE client of the server at
	// addr; nil (or a nil result) when no boot files are served.
	BootURL func() func(server netip.Addr) string
	State   *fleet.State // leases are recorded here
	// Arm, if set, is told of each lease granted to a boot (the ACK that
	// ends a DISCOVER or an INIT-REBOOT, not a renewal): it arms the
	// node's identity claim from that address.
	Arm func(node string, addr netip.Addr)
	Log *slog.Logger
	Now func() time.Time
}

// Server answers on one interface's socket.
type Server struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	conn  net.PacketConn
	ifc   atomic.Pointer[[]netip.Prefix]
	ifcAt atomic.Int64 // unix nanoseconds of the last read of ifc

	answered, unknown atomic.Uint64

	mu    sync.Mutex
	quiet map[string]time.Time // "why|MAC": when that line was last logged at Warn
}

// ifcRefresh is how long the interface's addresses are trusted: an
// operator adding an address should not need a restart.
const ifcRefresh = 5 * time.Second

// interfaceAddrs reads the interface's IPv4 addresses.
func interfaceAddrs(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: no such interface", name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		ones, bits := ipn.Mask.Size()
		if !ok || !ip.Unmap().Is4() || bits == 0 {
			continue
		}
		if bits == 128 {
			ones -= 96
		}
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// Open opens the server's socket on the interface, as server4 makes it:
// bound to the device, port 67, broadcasts allowed.
func Open(cfg Config, deps Deps) (*Server, error) {
	addrs, err := interfaceAddrs(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %w", err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("dhcp: interface %s has no IPv4 address: the server needs one, as its identifier and the nodes' subnet", cfg.Interface)
	}
	conn, err := server4.NewIPv4UDPConn(cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return nil, fmt.Errorf("dhcp: interface %s: %w", cfg.Interface, err)
	}
	d := &Server{cfg: cfg, deps: deps, log: deps.Log.With("dhcp", cfg.Interface), conn: conn, quiet: map[string]time.Time{}}
	d.ifc.Store(&addrs)
	d.ifcAt.Store(time.Now().UnixNano())
	return d, nil
}

// env is what the server answers from now.
func (d *Server) env() *env {
	var bootURL func(netip.Addr) string
	if d.deps.BootURL != nil {
		bootURL = d.deps.BootURL()
	}
	return &env{cfg: d.cfg, inv: d.deps.Inv(), ifc: d.addrs(), bootURL: bootURL}
}

func (d *Server) addrs() []netip.Prefix {
	if time.Since(time.Unix(0, d.ifcAt.Load())) > ifcRefresh {
		if a, err := interfaceAddrs(d.cfg.Interface); err == nil {
			d.ifc.Store(&a)
		} else {
			d.log.Warn("dhcp: reading the interface's addresses", "err", err)
		}
		d.ifcAt.Store(time.Now().UnixNano())
	}
	return *d.ifc.Load()
}

// Serve answers until the socket is closed. Not server4.Server.Serve: it
// hands every datagram to a goroutine of its own, and a panic while
// parsing would end the controller; here datagrams are answered in turn
// and a panic is logged and survived.
func (d *Server) Serve() {
	buf := make([]byte, 65536)
	for {
		n, peer, err := d.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.log.Error("dhcp: reading", "err", err)
			}
			return
		}
		d.handle(buf[:n], peer)
	}
}

func (d *Server) handle(pkt []byte, peer net.Addr) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("dhcp: a datagram made the server panic; it is dropped", "peer", fmt.Sprint(peer), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		d.log.Debug("dhcp: not a DHCP message", "peer", fmt.Sprint(peer), "bytes", len(pkt), "err", err)
		return
	}
	rep, ev := answer(d.env(), req)
	d.note(ev, req)
	if rep == nil {
		return
	}
	if _, err := d.conn.WriteTo(rep.msg.ToBytes(), net.UDPAddrFromAddrPort(rep.to)); err != nil {
		d.log.Error("dhcp: sending", "node", ev.node.Name, "mac", ev.mac.String(), "to", rep.to.String(), "err", err)
		return
	}
	d.answered.Add(1)
}

// quietFor is how often a repeated warning about one MAC is logged at
// Warn (clients retry every few seconds); repeats go to Debug.
const quietFor = time.Minute

// loud reports whether the warning key should be logged at Warn now.
func (d *Server) loud(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if t, ok := d.quiet[key]; ok && now.Sub(t) < quietFor {
		return false
	}
	if len(d.quiet) > 4096 {
		clear(d.quiet) // bounded: a flood of made-up MACs must not grow it
	}
	d.quiet[key] = now
	return true
}

func (d *Server) warn(key, msg string, args ...any) {
	level := slog.LevelWarn
	if !d.loud(key) {
		level = slog.LevelDebug
	}
	d.log.Log(context.Background(), level, msg, args...)
}

// note logs what answer did and records leases in the fleet view.
func (d *Server) note(ev event, req *dhcpv4.DHCPv4) {
	mac := ev.mac.String()
	switch ev.kind {
	case "ignored":
		d.log.Debug("dhcp: ignored", "mac", mac, "type", req.MessageType().String(), "why", ev.why)
		return
	case "unknown":
		d.unknown.Add(1)
		d.warn("unknown|"+mac, "dhcp: no answer to a MAC the inventory lacks: add it to a node's macs in the inventory to give that node its address",
			"mac", mac, "type", req.MessageType().String(), "inventory", d.deps.Inv().Path)
		return
	case "unservable":
		d.warn("unservable|"+mac, "dhcp: no answer: "+ev.why, "node", ev.node.Name, "mac", mac)
		return
	}
	node := ev.node.Name
	switch ev.kind {
	case "offer":
		d.log.Info("dhcp: offer", "node", node, "mac", mac, "addr", ev.addr.String(), "client", ev.client, "boot_file", ev.boot)
	case "ack":
		d.deps.State.Leased(node, d.deps.Now())
		if ev.fresh && d.deps.Arm != nil {
			d.deps.Arm(node, ev.addr)
		}
		d.log.Info("dhcp: lease", "node", node, "mac", mac, "addr", ev.addr.String(), "client", ev.client, "boot_file", ev.boot, "claim_armed", ev.fresh && d.deps.Arm != nil)
	case "inform":
		d.log.Info("dhcp: inform answered", "node", node, "mac", mac)
	case "nak":
		d.log.Warn("dhcp: request refused (NAK): "+ev.why, "node", node, "mac", mac)
	case "release":
		d.log.Info("dhcp: released", "node", node, "mac", mac, "addr", ev.addr.String())
		return
	case "decline":
		d.log.Warn("dhcp: the node declined its address: another host on the segment answers for it (an address conflict)", "node", node, "mac", mac, "addr", ev.addr.String())
		return
	}
	switch {
	case ev.client == "pxe":
		d.warn("pxe|"+mac, "dhcp: a PXE ROM without iPXE: it gets its address but no boot file, as this controller serves boot files over HTTP only; give the machine an iPXE ROM (QEMU's are), or chain-load iPXE (undionly.kpxe, ipxe.efi) from a TFTP server",
			"node", node, "mac", mac, "vendor_class", req.ClassIdentifier())
	case ev.client == "ipxe" && ev.boot == "":
		d.warn("noboot|"+mac, "dhcp: iPXE asks for a boot file, but the controller serves none: start it with --image DIR", "node", node, "mac", mac)
	}
}

// Close closes the socket: Serve returns.
func (d *Server) Close() { d.conn.Close() }

// Info describes the server for the fleet view.
func (d *Server) Info() *fleetapi.DHCPInfo {
	var bootURL func(netip.Addr) string
	if d.deps.BootURL != nil {
		bootURL = d.deps.BootURL()
	}
	addrs := *d.ifc.Load()
	in := &fleetapi.DHCPInfo{Interface: d.cfg.Interface, Addresses: slices.Clone(addrs), Router: d.cfg.Router, MTU: d.cfg.MTU,
		Answered: d.answered.Load(), Unknown: d.unknown.Load()}
	lease := d.cfg.LeaseTime
	if lease == 0 {
		lease = DefaultLeaseTime
	}
	in.LeaseSeconds = int(lease / time.Second)
	if bootURL != nil && len(addrs) > 0 {
		in.BootFile = bootURL(addrs[0].Addr())
	}
	return in
}

// Warnings logs what keeps the DHCP server from serving a node of the
// inventory, once at start and after each reload: better now than when
// the node's firmware times out.
func (d *Server) Warnings() {
	env := d.env()
	ifMTU := 0
	if ifi, err := net.InterfaceByName(d.cfg.Interface); err == nil {
		ifMTU = ifi.MTU
	}
	for i := range env.inv.Nodes {
		n := &env.inv.Nodes[i]
		if len(n.MACs) == 0 {
			d.log.Warn("dhcp: node has no macs in the inventory: DHCP cannot recognise it", "node", n.Name)
			continue
		}
		if _, _, why := env.subnet(n); why != "" {
			d.log.Warn("dhcp: "+why, "node", n.Name)
			continue
		}
		mtu := d.cfg.MTU
		if mtu == 0 {
			mtu = OfferMTU(env.inv, n, n.MACs[0])
		}
		if mtu > 0 && ifMTU > 0 && mtu > ifMTU {
			d.log.Warn("dhcp: the node's MTU is larger than the DHCP interface's: the segment must carry it, or the node's large packets are lost", "node", n.Name, "mtu", mtu, "interface_mtu", ifMTU)
		}
	}
	if r := d.cfg.Router; r.IsValid() && !slices.ContainsFunc(env.ifc, func(p netip.Prefix) bool { return p.Masked().Contains(r) }) {
		d.log.Warn("dhcp: the router is in no subnet of the interface", "router", r.String(), "addresses", prefixList(env.ifc))
	}
}

// Start opens the DHCP server's socket and answers on it until stop.
func Start(cfg Config, deps Deps) (d *Server, stop func(), err error) {
	d, err = Open(cfg, deps)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Serve()
	}()
	in := d.Info()
	attrs := []any{"interface", in.Interface, "addresses", prefixList(in.Addresses), "lease", time.Duration(in.LeaseSeconds) * time.Second, "boot_file", in.BootFile}
	if in.Router.IsValid() {
		attrs = append(attrs, "router", in.Router.String())
	} else {
		attrs = append(attrs, "router", "none")
	}
	switch in.MTU {
	case 0:
		attrs = append(attrs, "mtu", "each node's underlay MTU")
	case -1:
		attrs = append(attrs, "mtu", "none")
	default:
		attrs = append(attrs, "mtu", in.MTU)
	}
	deps.Log.Info("DHCP server answering the inventory's nodes", attrs...)
	return d, func() {
		d.Close()
		<-done
	}, nil
}
