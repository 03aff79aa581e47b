package port

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// afpTopology is a veth pair: wtp-pa's end carries the AF_PACKET port (no
// address: the port is the only user), wtp-pb's end is the workload, at
// 10.0.100.3/24, with the gateway's MAC (a foreign MAC for the netdev
// under the port) as a permanent neighbour.
func afpTopology(t *testing.T) (*AFPacket, *nettest.NS, *nettest.NS, *peer, packet.MAC) {
	t.Helper()
	testenv.RequireRoot(t)
	pa := nettest.New(t, "wtp-pa")
	pb := nettest.New(t, "wtp-pb")
	nettest.Veth(t, pa, "wtp-pa0", "", pb, "wtp-pb0", ep4Net.String())
	link, err := pb.NL.LinkByName("wtp-pb0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pb.NL.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: gw4.AsSlice(), HardwareAddr: hw(gwMAC)}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	var p *AFPacket
	if err := pa.Do(func() (err error) {
		p, err = OpenAFPacket("wtp-pa0")
		return err
	}); err != nil {
		t.Fatalf("OpenAFPacket: %v", err)
	}
	pr := startPeer(t, p, gwMAC, gw4)
	return p, pa, pb, pr, packet.MAC(link.Attrs().HardwareAddr)
}

func promiscuity(t *testing.T, ns *nettest.NS, name string) int {
	t.Helper()
	l, err := ns.NL.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Promisc
}

// The port sees frames sent to a MAC that is not the netdev's, and what it
// writes arrives on the peer: a ping through it succeeds.
func TestAFPacketPing(t *testing.T) {
	testenv.RequireTools(t, "ping")
	p, pa, pb, pr, pbMAC := afpTopology(t)
	if got := promiscuity(t, pa, "wtp-pa0"); got != 1 {
		t.Errorf("promiscuity %d while open, want 1", got)
	}
	paLink, _ := pa.NL.LinkByName("wtp-pa0")
	out, err := pb.Try(10*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", gw4.String())
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping %v: %v\n%s", gw4, err, out)
	}
	f := <-pr.icmp
	eth, _ := packet.ParseEthernet(f.data)
	if eth.Dst() != gwMAC || eth.Dst().String() == paLink.Attrs().HardwareAddr.String() || eth.Src() != pbMAC {
		t.Errorf("echo request %v -> %v; want %v -> %v (not the netdev's %v)", eth.Src(), eth.Dst(), pbMAC, gwMAC, paLink.Attrs().HardwareAddr)
	}
	pr.noHeadroom.Store(true) // two iovecs in sendmmsg
	out, err = pb.Try(10*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "2", gw4.String())
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping with replies at offset 0: %v\n%s", err, out)
	}
	if st := p.Stats(); st.RxPackets < 5 || st.TxPackets < 5 || st.Dropped() != 0 {
		t.Errorf("stats %+v", st)
	}
	p.Close()
	if got := promiscuity(t, pa, "wtp-pa0"); got != 0 {
		t.Errorf("promiscuity %d after Close, want 0", got)
	}
}

// GSO both ways through a veth: the peer stack's TSO frames arrive whole,
// and super-frames written reach a listener as the full stream.
func TestAFPacketTCPGSO(t *testing.T) {
	p, _, pb, pr, pbMAC := afpTopology(t)
	got := tcpReceive(t, pr, pb, pbMAC, gw4, 2<<20)
	if got.gso == 0 {
		t.Errorf("no GSO super-frame among %d data frames", got.frames)
	}
	t.Logf("received: %d data frames, %d GSO, largest %d bytes, pseudo-header field %s", got.frames, got.gso, got.largest, got.csumField)
	sent := tcpSend(t, pr, pb, pbMAC, gw4, ep4, 1<<20)
	if st := p.Stats(); st.TxGSO < uint64(sent) || st.RxGSO == 0 || st.Dropped() != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Super-frames written with their tail in Frags reach the listener as the
// full stream too.
func TestAFPacketWriteGathered(t *testing.T) {
	p, _, pb, pr, pbMAC := afpTopology(t)
	pr.gather.Store(true)
	sent := tcpSend(t, pr, pb, pbMAC, gw4, ep4, 1<<20)
	if st := p.Stats(); st.TxGSO < uint64(sent) || st.Dropped() != 0 || st.TxBytes < 1<<20 {
		t.Errorf("stats %+v", st)
	}
}

func TestAFPacketWriteMalformed(t *testing.T) {
	p, _, pb, pr, pbMAC := afpTopology(t)
	testWriteMalformed(t, p, p.Stats, func() {
		out, err := pb.Try(5*time.Second, "ping", "-c", "1", "-W", "2", gw4.String())
		if err != nil {
			t.Errorf("ping after malformed writes: %v\n%s", err, out)
		}
	}, pr, pbMAC)

	// Longer than the MTU without GSO: EMSGSIZE.
	f := frame.New()
	buildTCP4(f, &tcpSeg{srcMAC: gwMAC, dstMAC: pbMAC, src: netip.AddrPortFrom(gw4, 1), dst: netip.AddrPortFrom(ep4, 2),
		flags: packet.TCPFlagACK, payload: make([]byte, 3000)})
	s0 := p.Stats()
	if n, err := p.Write([]*frame.Frame{f}); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if d := p.Stats().Drops[DropTxTooBig] - s0.Drops[DropTxTooBig]; d != 1 {
		t.Errorf("too big: %d drops, want 1", d)
	}
}

// When the netdev goes, Read ends with an error instead of waiting for
// frames that cannot come; a link merely going down does not end it.
func TestAFPacketLinkDownAndGone(t *testing.T) {
	testenv.RequireRoot(t)
	pa := nettest.New(t, "wtp-pa")
	pb := nettest.New(t, "wtp-pb")
	nettest.Veth(t, pa, "wtp-pa0", "", pb, "wtp-pb0", "")
	var p *AFPacket
	if err := pa.Do(func() (err error) {
		p, err = OpenAFPacket("wtp-pa0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	errc := make(chan error, 1)
	go func() {
		fs := frame.Batch(4)
		for {
			if _, err := p.Read(fs); err != nil {
				errc <- err
				return
			}
		}
	}()
	l, _ := pa.NL.LinkByName("wtp-pa0")
	pa.NL.LinkSetDown(l)
	select {
	case err := <-errc:
		t.Fatalf("Read ended on link down: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	pa.NL.LinkSetUp(l)
	if err := pa.NL.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, ErrClosed) {
			t.Errorf("Read: %v", err)
		}
		t.Logf("read after the netdev went: %v", err)
	case <-time.After(3 * time.Second):
		t.Fatal("Read still blocked after the netdev went")
	}
	f := frame.New()
	f.Len = 60
	if _, err := p.Write([]*frame.Frame{f}); err == nil {
		t.Error("Write on a port whose netdev is gone succeeded")
	} else {
		t.Logf("write: %v", err)
	}
}
