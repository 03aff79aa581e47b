package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
)

// helpers are the BPF helpers bpf/fastpath.c calls, with the Linux
// release that brought each to tc programs (what a kernel without one
// lacks).
var helpers = []struct {
	fn    asm.BuiltinFunc
	name  string
	since string
}{
	{asm.FnMapLookupElem, "bpf_map_lookup_elem", "3.19"},
	{asm.FnKtimeGetNs, "bpf_ktime_get_ns", "4.1"},
	{asm.FnRedirect, "bpf_redirect", "4.4"},
	{asm.FnSkbAdjustRoom, "bpf_skb_adjust_room", "4.13"},
	{asm.FnRedirectNeigh, "bpf_redirect_neigh", "5.10"},
	{asm.FnRedirectPeer, "bpf_redirect_peer", "5.10"},
}

// The bpf_skb_adjust_room flags the programs pass (include/uapi/linux/bpf.h).
const (
	adjRoomMAC      = 1 // BPF_ADJ_ROOM_MAC
	adjFixedGSO     = 1 << 0
	adjEncapL3IPv4  = 1 << 1
	adjEncapL4UDP   = 1 << 3
	adjEncapL2Eth   = 1 << 6 // Linux 5.11
	adjEncapL2Shift = 56
)

// Probe checks what the fast path needs of the kernel before anything is
// loaded: the program type, each helper, and that bpf_skb_adjust_room
// takes the flags the programs pass (a helper's flags are only judged
// when it runs, so a test run of a probe program proves them). It
// returns one note per finding; the error names what is missing, and
// why the vRouter then runs TAP-only.
func Probe() (notes []string, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("memlock: %w", err)
	}
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		return nil, fmt.Errorf("no tc BPF programs (sched_cls): %w", err)
	}
	var missing []error
	for _, h := range helpers {
		if err := features.HaveProgramHelper(ebpf.SchedCLS, h.fn); err != nil {
			missing = append(missing, fmt.Errorf("no %s (Linux %s): %w", h.name, h.since, err))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return nil, err
	}
	notes = append(notes, "helpers: all present (bpf_redirect_peer, bpf_redirect_neigh, bpf_skb_adjust_room, ...)")
	for _, p := range []struct {
		what  string
		diff  int32
		flags uint64
	}{
		{"MPLSoUDP encapsulation", 32, adjEncapL3IPv4 | adjEncapL4UDP | adjFixedGSO | 4<<adjEncapL2Shift},
		{"VXLAN encapsulation", 50, adjEncapL3IPv4 | adjEncapL4UDP | adjFixedGSO | adjEncapL2Eth | 14<<adjEncapL2Shift},
		{"decapsulation", -32, adjFixedGSO},
	} {
		if err := probeAdjustRoom(p.diff, p.flags); err != nil {
			return notes, fmt.Errorf("bpf_skb_adjust_room refuses the flags of %s (%#x): %w", p.what, p.flags, err)
		}
	}
	notes = append(notes, "bpf_skb_adjust_room: takes the encap flags (ENCAP_L2_ETH, FIXED_GSO) and the decap ones")
	if _, err := btf.LoadKernelSpec(); err != nil {
		notes = append(notes, "kernel BTF: none (not needed: the programs use no CO-RE)")
	} else {
		notes = append(notes, "kernel BTF: present")
	}
	return notes, nil
}

// probeAdjustRoom runs bpf_skb_adjust_room(skb, diff, BPF_ADJ_ROOM_MAC,
// flags) on a test packet (BPF_PROG_TEST_RUN) and returns its error.
func probeAdjustRoom(diff int32, flags uint64) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R2, diff),
			asm.Mov.Imm(asm.R3, adjRoomMAC),
			asm.LoadImm(asm.R4, int64(flags), asm.DWord),
			asm.FnSkbAdjustRoom.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load the probe: %w", err)
	}
	defer prog.Close()
	ret, err := prog.Run(&ebpf.RunOptions{Data: probePacket()})
	if err != nil {
		return fmt.Errorf("test run: %w", err)
	}
	if r := int32(ret); r != 0 {
		return fmt.Errorf("errno %d", -r)
	}
	return nil
}

// probePacket is an Ethernet frame with an IPv4 UDP datagram of 64 bytes,
// room enough for a decapsulation to shrink.
func probePacket() []byte {
	b := make([]byte, 14+20+8+64)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], []byte{192, 0, 2, 1, 192, 0, 2, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(ip[20:], 4000)
	binary.BigEndian.PutUint16(ip[22:], 6635)
	binary.BigEndian.PutUint16(ip[24:], 8+64)
	return b
}
