// Package fastpath is the vRouter's in-kernel fast path: BPF programs on
// each fast-path endpoint's host-side veth, its punt TAP and the underlay
// device (bpf/fastpath.c), and the maps they read, which only this
// package writes, from the engine's own tables (Sync). The Go engine
// stays the reference and the only place policy is decided: the programs
// carry what the maps can judge (IPv4 TCP and UDP of established flows,
// MPLSoUDP and VXLAN) and hand everything else to the engine unchanged.
package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/vrouter/packet"
)

// Config is what the programs need of the vRouter.
type Config struct {
	Underlay     netip.Addr // IPv4: the outer source, and what decap accepts
	UnderlayMTU  int
	GatewayMAC   packet.MAC
	RouterMAC    packet.MAC
	MPLSoUDPPort uint16
	VXLANPort    uint16
	// SourcePorts are the engine's send sockets' ports by encapsulation
	// (tunnel.UDPConn.SourcePorts), which the kernel picks from by the
	// flow's hash as the engine does: a flow keeps its outer source port,
	// so its fabric path, when the kernel takes it over.
	SourcePorts map[packet.Encap][]uint16
	// PinDir is where the links and maps are pinned (PinDir(instance)),
	// so that forwarding goes on while the vRouter restarts and the next
	// one adopts them; "" or a directory not on a bpffs: not pinned
	// (Datapath.Pinned says why).
	PinDir string
	Log    *slog.Logger
}

// Datapath is the loaded programs and maps. Its methods are safe for
// concurrent use.
type Datapath struct {
	cfg  Config
	objs fpObjects
	log  *slog.Logger

	mu       sync.Mutex
	underlay hook
	ports    map[uint32]attached // by port ID
	synced   syncState
	// notPinned is why the maps and links are not pinned; "" when they are.
	notPinned string
	adopt     adoption
}

type attached struct {
	veth, tap int
	links     [2]hook
}

// Open loads the programs, writes the configuration and attaches the
// decapsulation program to the device holding cfg.Underlay. An error says
// what the kernel lacks (see Probe); the vRouter then runs TAP-only.
func Open(cfg Config) (*Datapath, error) {
	if !cfg.Underlay.Is4() {
		return nil, fmt.Errorf("fastpath: underlay %v: an IPv4 underlay address is needed", cfg.Underlay)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("fastpath: memlock: %w", err)
	}
	d := &Datapath{cfg: cfg, log: cfg.Log, ports: map[uint32]attached{}}
	if d.cfg.PinDir == "" {
		d.notPinned = "no pin directory"
	} else if err := onBPFFS(d.cfg.PinDir); err != nil {
		d.notPinned, d.cfg.PinDir = err.Error(), ""
	}
	adopted, err := d.loadPinned(d.cfg.PinDir)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("fastpath: the kernel refused the programs (a helper it lacks?): %w", err)
		}
		return nil, fmt.Errorf("fastpath: load: %w", err)
	}
	if adopted {
		d.startAdoption()
	}
	if err := d.writeConfig(cfg.UnderlayMTU); err != nil {
		d.objs.Close()
		return nil, err
	}
	ifindex, err := underlayDevice(cfg.Underlay)
	if err != nil {
		d.objs.Close()
		return nil, err
	}
	d.underlay, err = attachPinned(d.pin("underlay"), ifindex, d.objs.UnderlayIngress)
	if err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("fastpath: attach to the underlay device (ifindex %d): %w", ifindex, err)
	}
	return d, nil
}

func (d *Datapath) writeConfig(mtu int) error {
	c := fpConfig{
		Underlay: be32(d.cfg.Underlay), UnderlayMtu: uint32(mtu),
		GwMac: d.cfg.GatewayMAC, RouterMac: d.cfg.RouterMAC,
		MplsudpPort: be16(d.cfg.MPLSoUDPPort), VxlanPort: be16(d.cfg.VXLANPort),
	}
	for i, enc := range []packet.Encap{packet.EncapMPLSoUDP, packet.EncapVXLAN} {
		ports := d.cfg.SourcePorts[enc]
		if len(ports) > len(c.Sports[i]) {
			ports = nil // more than the programs hold: the engine sends
		}
		c.Nsports[i] = uint8(copy(c.Sports[i][:], ports))
	}
	if err := d.objs.Cfg.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("fastpath: config map: %w", err)
	}
	return nil
}

// UnderlayIfindex is the ifindex of the device holding addr, 0 if none.
func UnderlayIfindex(addr netip.Addr) int {
	i, _ := underlayDevice(addr)
	return i
}

// underlayDevice is the ifindex of the device that holds addr.
func underlayDevice(addr netip.Addr) (int, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("fastpath: list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			return a.LinkIndex, nil
		}
	}
	return 0, fmt.Errorf("fastpath: no device holds the underlay address %v", addr)
}

// AttachPort puts the fast path on port id: its host-side veth and its
// punt TAP (port.VethTAP). Sync fills in what the programs need to know
// of the port; until then every packet is punted.
func (d *Datapath) AttachPort(id uint32, veth, tap int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.objs.Taps.Put(uint32(tap), uint32(veth)); err != nil {
		return fmt.Errorf("fastpath: port %d: taps map: %w", id, err)
	}
	// Until Sync knows the port, its packets go to the engine; a port
	// adopted from the vRouter before keeps what it had, with its new
	// TAP, so that its flows stay in the kernel.
	if err := d.punt(id, uint32(veth), uint32(tap)); err != nil {
		return fmt.Errorf("fastpath: port %d: ports map: %w", id, err)
	}
	a := attached{veth: veth, tap: tap}
	dir := d.portPins(id)
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("fastpath: port %d: %w", id, err)
		}
	}
	var err error
	if a.links[0], err = attachPinned(pinIn(dir, "tap"), tap, d.objs.PuntIngress); err != nil {
		return fmt.Errorf("fastpath: port %d: attach to the TAP: %w", id, err)
	}
	if a.links[1], err = attachPinned(pinIn(dir, "veth"), veth, d.objs.PortIngress); err != nil {
		a.links[0].detach()
		return fmt.Errorf("fastpath: port %d: attach to the veth: %w", id, err)
	}
	d.ports[id] = a
	return nil
}

// DetachPort takes port id off the fast path (before its devices go).
func (d *Datapath) DetachPort(id uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.ports[id]
	if !ok {
		return
	}
	delete(d.ports, id)
	for _, l := range a.links {
		l.detach()
	}
	if dir := d.portPins(id); dir != "" {
		os.RemoveAll(dir)
	}
	d.objs.Taps.Delete(uint32(a.tap))
	d.objs.PortsByIfindex.Delete(uint32(a.veth))
	d.objs.PortsById.Delete(id)
	d.objs.PortStats.Put(id, make([]fpPortCounters, ebpf.MustPossibleCPU()))
}

// Close detaches every program, frees the maps and removes the pins: a
// clean stop, after the vRouter removed its ports. A vRouter that dies
// instead leaves all of it for the next one (see DESIGN.md).
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for id, a := range d.ports {
		for _, l := range a.links {
			errs = append(errs, l.detach())
		}
		delete(d.ports, id)
	}
	errs = append(errs, d.underlay.detach(), d.objs.Close())
	if d.cfg.PinDir != "" {
		errs = append(errs, os.RemoveAll(d.cfg.PinDir))
	}
	return errors.Join(errs...)
}

// Notes are what the fast path found at Open: how it attaches, and
// whether its programs and maps outlive this process.
func (d *Datapath) Notes() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n []string
	if d.underlay.tc != nil {
		n = append(n, "attach: tc (no TCX: Linux < 6.6); the filters stay attached when the vRouter dies")
	} else {
		n = append(n, "attach: TCX")
	}
	if d.notPinned != "" {
		n = append(n, "not pinned: "+d.notPinned+"; forwarding stops while the vRouter restarts")
	} else {
		n = append(n, "pinned in "+d.cfg.PinDir+": the kernel forwards established flows while the vRouter restarts")
	}
	if d.adopt.on {
		n = append(n, "adopting the pinned maps of the vRouter before, until its client has programmed this one")
	}
	return n
}

// Pinned is "" when the programs and maps are pinned (they outlive this
// process), else why not.
func (d *Datapath) Pinned() string { return d.notPinned }

// pin is the path of the pin called name, "" when not pinning.
func (d *Datapath) pin(name string) string { return pinIn(d.cfg.PinDir, name) }

func pinIn(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name)
}

// punt points port id's veth at its punt TAP, keeping what an earlier
// vRouter wrote for it.
func (d *Datapath) punt(id, veth, tap uint32) error {
	var pi fpPortInfo
	if err := d.objs.PortsByIfindex.Lookup(veth, &pi); err != nil || pi.Id != id {
		pi = fpPortInfo{Id: id}
	}
	pi.TapIfindex = tap
	if err := d.objs.PortsByIfindex.Put(veth, &pi); err != nil {
		return err
	}
	if pi.VethIfindex == veth {
		return d.objs.PortsById.Put(id, &pi)
	}
	return nil
}

// Counters are the fast path's packet counts since its maps were made
// (they outlive a vRouter restart, as the maps do).
type Counters struct {
	Encap, Local, Decap uint64 // carried in the kernel
	Punted              uint64 // from endpoints to the engine
	PuntedTx            uint64 // from the engine into endpoints
	Errors              uint64
	// By encapsulation, what Encap and Decap count: the engine's
	// TunnelTx and TunnelRx for what the kernel carried.
	EncapBy, DecapBy map[packet.Encap]uint64
}

// Counters sums the per-CPU counters.
func (d *Datapath) Counters() Counters {
	var out [8]uint64
	for i := range out {
		var per []uint64
		if err := d.objs.Stats.Lookup(uint32(i), &per); err == nil {
			for _, v := range per {
				out[i] += v
			}
		}
	}
	return Counters{Encap: out[0] + out[6], Local: out[1], Decap: out[2] + out[7], Punted: out[3], PuntedTx: out[4], Errors: out[5],
		EncapBy: map[packet.Encap]uint64{packet.EncapMPLSoUDP: out[0], packet.EncapVXLAN: out[6]},
		DecapBy: map[packet.Encap]uint64{packet.EncapMPLSoUDP: out[2], packet.EncapVXLAN: out[7]}}
}

// PortCounters are what the kernel carried for one port: from the
// endpoint (rx) and into it (tx), packets and bytes.
type PortCounters struct{ RxPackets, RxBytes, TxPackets, TxBytes uint64 }

// PortCounters sums port id's per-CPU counters.
func (d *Datapath) PortCounters(id uint32) PortCounters {
	var per []fpPortCounters
	var c PortCounters
	if err := d.objs.PortStats.Lookup(id, &per); err != nil {
		return c
	}
	for _, p := range per {
		c.RxPackets += p.RxPackets
		c.RxBytes += p.RxBytes
		c.TxPackets += p.TxPackets
		c.TxBytes += p.TxBytes
	}
	return c
}

// be32 is an IPv4 address as the programs read a __be32 on this host.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// be16 is a port number in network order as a __be16 reads on this host.
func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// routeTo is the oif and the neighbour toward remote: the remote itself
// on a connected network, else its gateway.
func routeTo(remote netip.Addr) (oif int, nh netip.Addr, err error) {
	rs, err := netlink.RouteGet(net.IP(remote.AsSlice()))
	if err != nil || len(rs) == 0 {
		return 0, nh, fmt.Errorf("route to %v: %w", remote, err)
	}
	nh = remote
	if g, ok := netip.AddrFromSlice(rs[0].Gw.To4()); ok && rs[0].Gw != nil {
		nh = g
	}
	return rs[0].LinkIndex, nh, nil
}

// attach puts prog on ifindex's ingress: with TCX where the kernel has it
// (Linux 6.6), a link (attachPinned pins it); else with tc, a clsact
// qdisc and a direct-action filter (netlink), as the image's 6.1 kernel
// needs. A tc filter outlives the process: the next vRouter replaces it
// (same priority and handle, an atomic swap), and detach removes it.
func attach(ifindex int, prog *ebpf.Program) (hook, error) {
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		return hook{l: l}, nil
	}
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return hook{}, fmt.Errorf("TCX: %w", err)
	}
	return attachTC(ifindex, prog)
}

// tcFilterName names the fast path's tc filters (RemovePins finds them).
const tcFilterName = "weft-fastpath"

func attachTC(ifindex int, prog *ebpf.Program) (hook, error) {
	q := &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := netlink.QdiscReplace(q); err != nil {
		return hook{}, fmt.Errorf("tc: clsact on ifindex %d: %w", ifindex, err)
	}
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: netlink.MakeHandle(0, 1), Protocol: unix.ETH_P_ALL, Priority: 1},
		Fd: prog.FD(), Name: tcFilterName, DirectAction: true}
	if err := netlink.FilterReplace(f); err != nil {
		return hook{}, fmt.Errorf("tc: bpf filter on ifindex %d: %w", ifindex, err)
	}
	return hook{tc: f}, nil
}
