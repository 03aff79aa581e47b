package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/server"
)

// TestPathMTU: an endpoint told its MTU is the underlay's (1500) sends
// packets the tunnel cannot carry. A DF packet over the path gets ICMP
// fragmentation-needed with the MTU that fits, and a TCP transfer still
// completes with a smaller MSS. A port left at its default MTU gets the
// underlay MTU minus the largest encapsulation overhead.
func TestPathMTU(t *testing.T) { lab.Modes(t, pathMTU) }

func pathMTU(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtvm", m)
	tn.remote(t, vrouterv1.Encap_ENCAP_MPLSOUDP)
	dump := dumpPorts(t, tn.a)
	if got, want := dump[portRed].GetMtu(), uint32(1500-packet.OverheadVXLAN4); got != want {
		t.Errorf("default endpoint MTU %d, want %d (1500 minus VXLAN's %d bytes)", got, want, packet.OverheadVXLAN4)
	}
	// Give red-a an MTU the tunnel cannot carry.
	p := proto.CloneOf(dump[portRed])
	p.Mtu = 1500
	p.Mac = nil
	apply(t, tn.a, putPort(p))
	apply(t, tn.a, portNH(1, portRed, netRed)) // the port's MAC may have changed
	waitFor(t, "red-a's eth0 at MTU 1500", 5*time.Second, func() bool {
		out, _ := tn.redA.Try(2*time.Second, "ip", "link", "show", "eth0")
		return strings.Contains(out, "mtu 1500")
	})

	out, _ := tn.redA.Try(10*time.Second, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1472", "10.1.0.3")
	fits := 1500 - packet.OverheadMPLSoUDP4
	if !strings.Contains(out, "mtu = 1468") && !strings.Contains(out, "mtu=1468") {
		t.Errorf("DF ping of 1500 bytes over MPLSoUDP: want ICMP frag-needed with mtu %d, got:\n%s", fits, out)
	}
	echoServer(listenTCP(t, tn.redB, "10.1.0.3:7100"))
	took := transfer(t, tn.redA, "10.1.0.3:7100", 8<<20)
	t.Logf("8 MiB through a 1468-byte path from a 1500-byte endpoint in %v", took.Round(time.Millisecond))
	if n := counters(t, tn.a).GetDrops()["too-big"]; n == 0 {
		t.Error("no too-big drop counted")
	}
}

func dumpPorts(t *testing.T, h *lab.Host) map[uint32]*vrouterv1.Port {
	t.Helper()
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	objs, err := h.Client.DumpAll(ctx, "ports")
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]*vrouterv1.Port{}
	for _, o := range objs {
		out[o.GetPort().GetId()] = o.GetPort()
	}
	return out
}

// TestBadInputIsDroppedAndCounted: spoofed source MAC and IP, truncated
// and malformed frames from an endpoint, unknown labels and VNIs and
// garbage on every tunnel port: each is dropped and counted, and the
// vRouters keep forwarding.
func TestBadInputIsDroppedAndCounted(t *testing.T) { lab.Modes(t, badInputIsDroppedAndCounted) }

func badInputIsDroppedAndCounted(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtvb", m)
	tn.remote(t, vrouterv1.Encap_ENCAP_MPLSOUDP)
	mustPing(t, tn.redA, "10.1.0.3")
	ports := dumpPorts(t, tn.a)
	epMAC := packet.MAC(ports[portRed].GetMac())
	gw := server.DefaultGatewayMAC

	good := func(srcMAC packet.MAC, src string) []byte {
		b := make([]byte, 14+28)
		packet.PutEthernet(b, gw, srcMAC, packet.EtherTypeIPv4)
		h := &packet.IPv4Header{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("10.1.0.3"), Protocol: packet.ProtoUDP, TTL: 64}
		n, _ := packet.PutIPv4Header(b[14:], h, 8)
		packet.PutUDP(b[14+n:], 1, 2, 0)
		return b
	}
	spoofMAC := good(packet.MAC{0x02, 0xde, 0xad, 0, 0, 1}, "10.1.0.2")
	spoofIP := good(epMAC, "10.1.0.99")
	truncated := good(epMAC, "10.1.0.2")[:20]
	badIHL := good(epMAC, "10.1.0.2")
	badIHL[14] = 0x4f // IHL 60 bytes in a 28-byte packet
	notGW := good(epMAC, "10.1.0.2")
	copy(notGW[0:6], []byte{0x02, 0, 0, 0, 0, 0x77})
	inject(t, tn.redA, "eth0", spoofMAC, spoofIP, truncated, badIHL, notGW)

	// The tunnels: garbage, an unknown label, an unknown VNI, bad GRE.
	inner := good(epMAC, "10.1.0.2")[14:]
	unknownLabel := append(binary.BigEndian.AppendUint32(nil, 999<<12|1<<8|64), inner...)
	unknownVNI := append([]byte{0x08, 0, 0, 0, 0, 0x03, 0xe7, 0}, good(gw, "10.1.0.2")...)
	sendUDP(t, tn.a.NS, "192.0.2.2:6635", []byte{0xff}, []byte("garbage garbage garbage"), unknownLabel)
	sendUDP(t, tn.a.NS, "192.0.2.2:4789", []byte{1, 2, 3}, unknownVNI)
	sendGRE(t, tn.a.NS, "192.0.2.2", []byte{0, 0}, []byte{0, 0, 0x88, 0x47, 0xff})

	wantDrops := map[*lab.Host][]string{
		tn.a: {"spoofed-mac", "spoofed-ip", "malformed", "not-to-gateway"},
		tn.b: {"tunnel-malformed", "unknown-label", "unknown-vni"},
	}
	for h, reasons := range wantDrops {
		waitFor(t, h.Name+" drop counters", 5*time.Second, func() bool {
			d := counters(t, h).GetDrops()
			for _, r := range reasons {
				if d[r] == 0 {
					return false
				}
			}
			return true
		})
		t.Logf("%s drops: %v", h.Name, counters(t, h).GetDrops())
	}
	if tn.a.VRouter.Exited() || tn.b.VRouter.Exited() {
		t.Fatal("a vRouter exited on bad input")
	}
	mustPing(t, tn.redA, "10.1.0.3")
	echoServer(listenTCP(t, tn.redB, "10.1.0.3:7200"))
	transfer(t, tn.redA, "10.1.0.3:7200", 1<<20)
}

// inject writes raw frames out of ifname inside ns.
func inject(t *testing.T, ns *nettest.NS, ifname string, frames ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		idx, err := ifIndex(fd, ifname)
		if err != nil {
			return err
		}
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("inject in %s: %v", ns.Name, err)
	}
}

func sendUDP(t *testing.T, ns *nettest.NS, dst string, payloads ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.Dial("udp", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			c.Write(p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("udp to %s: %v", dst, err)
	}
}

func sendGRE(t *testing.T, ns *nettest.NS, dst string, payloads ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_GRE)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{}
		copy(sa.Addr[:], net.ParseIP(dst).To4())
		for _, p := range payloads {
			unix.Sendto(fd, p, 0, sa)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("gre to %s: %v", dst, err)
	}
}

// TestClientKilledMidSession: a separate process programs the vRouter,
// changing a route with every request (put the next, delete the last),
// and streams a dump when it is killed with SIGKILL. Its changes arrive
// while it runs; forwarding goes on throughout; afterwards the state is
// what it was plus exactly the child's last route: the one whose request
// it saw answered, or the next if that request was applied as the child
// died. A request is applied whole or not at all.
func TestClientKilledMidSession(t *testing.T) { lab.Modes(t, clientKilledMidSession) }

func clientKilledMidSession(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtvk", m)
	tn.remote(t, vrouterv1.Encap_ENCAP_MPLSOUDP)
	before := dumpAll(t, tn.a)

	stop := make(chan struct{})
	lost := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				lost <- n
				return
			default:
			}
			if ok, _ := ping(tn.redA, "10.1.0.3", "-c", "1", "-W", "1"); !ok {
				n++
			}
		}
	}()

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "WEFT_TEST_CHILD_SOCKET="+tn.a.Socket)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stdout, child.Stderr = outW, outW
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	var lastAcked atomic.Int64 // the child's last answered request
	var out strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			var i int
			if _, err := fmt.Sscanf(sc.Text(), "child: applied %d", &i); err == nil {
				lastAcked.Store(int64(i))
			}
		}
	}()
	// The child's changes arrive: its route moves on while it runs.
	seen := map[netip.Prefix]bool{}
	waitFor(t, "three of the child's routes in the vRouter's dump", 20*time.Second, func() bool {
		for _, p := range childRoutes(dumpAll(t, tn.a)) {
			seen[p] = true
		}
		return len(seen) >= 3
	})
	child.Process.Signal(unix.SIGKILL)
	child.Wait()
	<-readDone
	last := int(lastAcked.Load())
	if last == 0 {
		t.Fatalf("the child never saw a request answered:\n%s", out.String())
	}
	time.Sleep(time.Second)
	close(stop)
	if n := <-lost; n > 0 {
		t.Errorf("%d pings lost while the client was killed", n)
	}
	mustPing(t, tn.redA, "10.1.0.3")
	// A new client reads the state back: as before, plus the child's
	// last route.
	after := dumpAll(t, tn.a)
	got := childRoutes(after)
	if len(got) != 1 || (got[0] != childRoute(last) && got[0] != childRoute(last+1)) {
		t.Fatalf("the child's routes after the kill: %v; want %v (its last answered request) or %v (the one in flight)", got, childRoute(last), childRoute(last+1))
	}
	after = slices.DeleteFunc(after, func(o *vrouterv1.DumpReply) bool { return o.GetRoute().GetPrefix() == got[0].String() })
	if len(after) != len(before) {
		t.Fatalf("state after the kill: %d objects besides the child's route, before %d", len(after), len(before))
	}
	for i := range before {
		if !proto.Equal(before[i], after[i]) {
			t.Errorf("object %d changed: %v -> %v", i, before[i], after[i])
		}
	}
}

// childRoute is the route the child puts with its i-th request.
func childRoute(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)}), 32)
}

// childRoutes lists the child's routes in a dump (red's, in 10.99/16).
func childRoutes(objs []*vrouterv1.DumpReply) []netip.Prefix {
	var out []netip.Prefix
	for _, o := range objs {
		r := o.GetRoute()
		if r == nil || r.GetVrf() != vrfRed {
			continue
		}
		if p, err := netip.ParsePrefix(r.GetPrefix()); err == nil && netip.MustParsePrefix("10.99.0.0/16").Contains(p.Addr()) {
			out = append(out, p)
		}
	}
	return out
}

// clientChild is the killed client of TestClientKilledMidSession, run by
// TestMain in a child of the test binary: it connects to the vRouter at
// sock and, until it is killed, moves a route on with each request (puts
// the next, deletes the last, in one request), saying which it saw
// answered, and dumps.
func clientChild(sock string) error {
	ctx := context.Background()
	c, err := client.Dial(ctx, sock)
	if err != nil {
		return err
	}
	os.Stdout.WriteString("child: connected\n")
	for i := 1; ; i++ {
		ops := []*vrouterv1.Op{putRoute(vrfRed, childRoute(i).String(), 3)}
		if i > 1 {
			ops = append(ops, &vrouterv1.Op{Op: &vrouterv1.Op_DeleteRoute{DeleteRoute: &vrouterv1.Route{Vrf: vrfRed, Prefix: childRoute(i - 1).String()}}})
		}
		if _, err := c.Apply(ctx, &vrouterv1.ApplyRequest{Ops: ops}); err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "child: applied %d\n", i)
		st, err := c.Dump(ctx, &vrouterv1.DumpRequest{})
		if err != nil {
			return err
		}
		st.Recv() // read one object and leave the stream open
		if i == 1<<16-1 {
			return errors.New("ran out of routes before it was killed")
		}
	}
}

func dumpAll(t *testing.T, h *lab.Host) []*vrouterv1.DumpReply {
	t.Helper()
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	objs, err := h.Client.DumpAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
