package pid1

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
	"github.com/weftnet/weft/init/underlay"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/packet"
	"github.com/weftnet/weft/vrouter/server"
)

// TestMain runs the test binary as the node of TestUnderlayMTUFollowsDHCP
// when that test starts it as one (see underlayNode), and the tests
// otherwise.
func TestMain(m *testing.M) {
	if sock := os.Getenv("WEFT_TEST_UNDERLAY_NODE"); sock != "" {
		if err := underlayNode(sock); err != nil {
			fmt.Fprintln(os.Stderr, "underlay node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	mtuSrvAddr = "10.77.0.1"
	mtuCliAddr = "10.77.0.10"
)

// TestUnderlayMTUFollowsDHCP: a node (this binary in its own namespace)
// runs the real underlay DHCP client, a real vRouter with the address and
// MTU the lease gave, and PID 1's watcher; an endpoint's TAP takes the
// MTU derived from the underlay's. When the DHCP server changes option 26,
// the renewal changes the link's MTU, the watcher tells the running
// vRouter, and the endpoint's interface in its namespace follows, down
// and up again.
func TestUnderlayMTUFollowsDHCP(t *testing.T) {
	srv := nettest.New(t, "wpm-srv")
	host := nettest.New(t, "wpm-host")
	ep := nettest.New(t, "wpm-ep")
	nettest.Veth(t, host, "eth0", "", srv, "srv0", mtuSrvAddr+"/24")
	dhcp := startMTUServer(t, srv, "srv0", 1400)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "vrouter.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := host.Command(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "WEFT_TEST_UNDERLAY_NODE="+sock)
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("node output:\n%s", out.String())
		}
	})

	dctx, dcancel := context.WithTimeout(ctx, 40*time.Second)
	defer dcancel()
	vr, err := client.DialRetry(dctx, sock)
	if err != nil {
		t.Fatalf("the node's vRouter did not come up: %v", err)
	}
	defer vr.Close()
	ops := []*vrouterv1.Op{
		{Op: &vrouterv1.Op_PutVrf{PutVrf: &vrouterv1.Vrf{Id: 1, Name: "red", Network: 100}}},
		{Op: &vrouterv1.Op_PutPort{PutPort: &vrouterv1.Port{Id: 1, Name: "red1", Vrf: 1, Kind: vrouterv1.PortKind_PORT_KIND_TAP,
			Ifname: "wpm-tap1", Netns: ep.Name, Addresses: []string{"10.5.0.2/24"}}}},
	}
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	if _, err := vr.Apply(actx, &vrouterv1.ApplyRequest{Ops: ops}); err != nil {
		t.Fatalf("apply: %v", err)
	}

	// The vRouter opens every encapsulation; VXLAN over IPv4 costs most.
	for _, mtu := range []int{1400, 1300, 1500} {
		dhcp.mtu.Store(int32(mtu))
		want := mtu - packet.OverheadVXLAN4
		deadline := time.Now().Add(15 * time.Second) // a renewal every 2 s
		for {
			hostMTU := linkMTU(t, host, "eth0")
			epMTU := linkMTU(t, ep, "eth0")
			info, err := vr.Info(shortCtx(t), &vrouterv1.InfoRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if hostMTU == mtu && epMTU == want && int(info.GetUnderlay().GetMtu()) == mtu {
				t.Logf("option 26 %d: underlay link %d, vRouter %d, endpoint %d", mtu, hostMTU, info.GetUnderlay().GetMtu(), epMTU)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("option 26 %d: underlay link mtu %d (want %d), vRouter's underlay mtu %d (want %d), endpoint's eth0 %d (want %d)",
					mtu, hostMTU, mtu, info.GetUnderlay().GetMtu(), mtu, epMTU, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
		objs, err := vr.DumpAll(shortCtx(t), "ports")
		if err != nil || len(objs) != 1 || int(objs[0].GetPort().GetMtu()) != want {
			t.Fatalf("dump after option 26 %d: %v %v, want the port at mtu %d", mtu, objs, err, want)
		}
	}
	if dhcp.requests.Load() < 3 {
		t.Errorf("%d DHCP requests, want the first and renewals", dhcp.requests.Load())
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func linkMTU(t *testing.T, ns *nettest.NS, name string) int {
	t.Helper()
	l, err := ns.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, ns.Name, err)
	}
	return l.Attrs().MTU
}

// mtuServer leases mtuCliAddr/24 for 4 s with option 26 set to mtu.
type mtuServer struct {
	mtu      atomic.Int32
	requests atomic.Int32
}

func startMTUServer(t *testing.T, ns *nettest.NS, ifname string, mtu int) *mtuServer {
	t.Helper()
	s := &mtuServer{}
	s.mtu.Store(int32(mtu))
	var srv *server4.Server
	if err := ns.Do(func() (err error) {
		srv, err = server4.NewServer(ifname, &net.UDPAddr{Port: dhcpv4.ServerPort}, s.handle)
		return err
	}); err != nil {
		t.Fatalf("dhcp server: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve() }()
	t.Cleanup(func() { srv.Close(); <-done })
	return s
}

func (s *mtuServer) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	typ := dhcpv4.MessageTypeOffer
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
		s.requests.Add(1)
	default:
		return
	}
	var mtu [2]byte
	binary.BigEndian.PutUint16(mtu[:], uint16(s.mtu.Load()))
	resp, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(net.ParseIP(mtuCliAddr)),
		dhcpv4.WithServerIP(net.ParseIP(mtuSrvAddr)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(mtuSrvAddr))),
		dhcpv4.WithLeaseTime(4),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.OptionGeneric{Data: mtu[:]}}),
	)
	if err != nil {
		return
	}
	conn.WriteTo(resp.ToBytes(), peer)
}

// underlayNode is the node: it runs in its own network namespace (the
// test starts it through `ip netns exec`), so the underlay manager works
// on the namespace's eth0 as PID 1's does on a machine's. It gets a lease,
// starts a vRouter on the leased address and the link's MTU (what PID 1
// passes as --underlay and --mtu), PID 1's watcher, and serves until
// SIGTERM.
func underlayNode(sock string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := underlay.New(steps.New(os.Stderr, "", log), log)
	defer m.Close()
	u := config.Underlay{Source: "test", Links: []config.Link{{ID: "uplink", Kind: config.LinkPhy,
		Match: config.LinkMatch{Name: "eth0"}, DHCP4: true}}}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := m.Apply(actx, u)
	cancel()
	if err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	addr, mtu, err := underlayAddr(nil)
	if err != nil {
		return err
	}
	if addr != netip.MustParseAddr(mtuCliAddr) {
		return fmt.Errorf("underlay address %s, want the leased %s", addr, mtuCliAddr)
	}
	s, err := server.New(server.Options{Socket: sock, Underlay: addr, UnderlayMTU: mtu, Log: log})
	if err != nil {
		return err
	}
	go underlay.FollowMTU(ctx, log, addr, sock, underlayMTUResync)
	return s.Serve(ctx)
}

// syncBuf collects a process's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
