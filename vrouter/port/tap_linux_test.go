package port

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	"github.com/weftnet/weft/vrouter/frame"
	"github.com/weftnet/weft/vrouter/packet"
)

// vrouterNS is the namespace the test's "vRouter" runs in: TAPs are
// created there (never in the machine's own namespace) and moved on.
func vrouterNS(t *testing.T, name string) *nettest.NS {
	t.Helper()
	testenv.RequireRoot(t)
	return nettest.New(t, name)
}

// createTAP runs CreateTAP in vr, as the vRouter would in its namespace.
func createTAP(t *testing.T, vr *nettest.NS, cfg TAPConfig) *TAP {
	t.Helper()
	tap, err := createTAPErr(vr, cfg)
	if err != nil {
		t.Fatalf("CreateTAP: %v", err)
	}
	t.Cleanup(func() { tap.Close() })
	return tap
}

func createTAPErr(vr *nettest.NS, cfg TAPConfig) (*TAP, error) {
	var tap *TAP
	err := vr.Do(func() (err error) {
		tap, err = CreateTAP(cfg)
		return err
	})
	return tap, err
}

// endpointTAP is the usual test endpoint: 10.0.100.3/24 and
// 2001:db8:100::3/64 in ep, default gateways 10.0.100.1 and fe80::1, a
// peer serving the port as 10.0.100.1.
func endpointTAP(t *testing.T, vrName, epName string) (*TAP, *nettest.NS, *peer) {
	t.Helper()
	vr := vrouterNS(t, vrName)
	ep := nettest.New(t, epName)
	addrs := []netip.Prefix{ep4Net, ep6Net}
	tap := createTAP(t, vr, TAPConfig{
		Name: epName, Netns: ep.Name, Addresses: addrs, Gateways: DefaultGateways(addrs),
	})
	return tap, ep, startPeer(t, tap, gwMAC, gw4)
}

func TestTAPConfigured(t *testing.T) {
	vr := vrouterNS(t, "wtp-vr")
	named := nettest.New(t, "wtp-named")
	byPID := nettest.New(t, "wtp-pid")
	sleeper := byPID.Start(t, "sleep", "60")
	mac := packet.MAC{0x02, 0x00, 0x5e, 0x10, 0x00, 0x03}

	tests := []struct {
		name, netns, ifname string
		ns                  *nettest.NS
		wantIf              string
		mac                 packet.MAC
		mtu                 int
		addrs               []netip.Prefix
	}{
		{name: "named", netns: named.Name, ns: named, wantIf: "eth0", mac: mac, mtu: 1400,
			addrs: []netip.Prefix{ep4Net, ep6Net}},
		{name: "proc-path", netns: fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid), ifname: "net1", ns: byPID,
			wantIf: "net1", mtu: 9000, addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}},
		{name: "run-path", netns: named.Path(), ifname: "eth1", ns: named, wantIf: "eth1",
			addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.5/30"), netip.MustParsePrefix("2001:db8:5::5/128")}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := fmt.Sprintf("wtp-c%d", i)
			gws := DefaultGateways(tt.addrs)
			tap := createTAP(t, vr, TAPConfig{
				Name: host, Netns: tt.netns, NetnsIfname: tt.ifname, MAC: tt.mac, MTU: tt.mtu,
				Addresses: tt.addrs, Gateways: gws,
			})
			if tap.Name() != host {
				t.Errorf("Name() = %q, want %q", tap.Name(), host)
			}
			if _, err := vr.NL.LinkByName(host); err == nil {
				t.Errorf("%s still in the vRouter's namespace", host)
			}
			l, err := tt.ns.NL.LinkByName(tt.wantIf)
			if err != nil {
				t.Fatalf("%s in %s: %v (links %v)", tt.wantIf, tt.ns.Name, err, linkNames(t, tt.ns))
			}
			a := l.Attrs()
			if l.Type() != "tuntap" {
				t.Errorf("link type %q, want tuntap", l.Type())
			}
			if !tt.mac.IsZero() && a.HardwareAddr.String() != tt.mac.String() {
				t.Errorf("mac %v, want %v", a.HardwareAddr, tt.mac)
			}
			if a.HardwareAddr.String() != tap.MAC().String() {
				t.Errorf("mac %v, MAC() %v", a.HardwareAddr, tap.MAC())
			}
			if m := tap.MAC(); m.IsMulticast() || m[0]&2 == 0 && tt.mac.IsZero() {
				t.Errorf("random mac %v is not locally administered unicast", m)
			}
			wantMTU := tt.mtu
			if wantMTU == 0 {
				wantMTU = 1500
			}
			if a.MTU != wantMTU {
				t.Errorf("mtu %d, want %d", a.MTU, wantMTU)
			}
			if a.Flags&net.FlagUp == 0 {
				t.Errorf("link is not up")
			}
			addrs, err := tt.ns.NL.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			var got []netip.Prefix
			for _, ad := range addrs {
				ip, _ := netip.AddrFromSlice(ad.IP)
				ones, _ := ad.Mask.Size()
				p := netip.PrefixFrom(ip.Unmap(), ones)
				if ip.IsLinkLocalUnicast() {
					continue
				}
				got = append(got, p)
				if p.Addr().Is6() && ad.Flags&unix.IFA_F_NODAD == 0 {
					t.Errorf("%v without nodad (flags %#x)", p, ad.Flags)
				}
			}
			if !sameSet(got, tt.addrs) {
				t.Errorf("addresses %v, want %v", got, tt.addrs)
			}
			routes, err := tt.ns.NL.RouteList(l, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			var defaults []netip.Addr
			for _, r := range routes {
				if r.Dst != nil {
					if ones, _ := r.Dst.Mask.Size(); ones != 0 {
						continue
					}
				}
				gw, _ := netip.AddrFromSlice(r.Gw)
				if r.Flags&int(netlink.FLAG_ONLINK) == 0 {
					t.Errorf("default route via %v is not onlink", gw)
				}
				defaults = append(defaults, gw.Unmap())
			}
			if !sameSet(defaults, gws) {
				t.Errorf("default routes via %v, want %v", defaults, gws)
			}
		})
	}
}

func sameSet[T interface{ Compare(T) int }](a, b []T) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y T) int { return x.Compare(y) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.EqualFunc(a, b, func(x, y T) bool { return x.Compare(y) == 0 })
}

// Without Netns the device stays where the vRouter is, under its name.
func TestTAPInCallerNamespace(t *testing.T) {
	vr := vrouterNS(t, "wtp-vr")
	tap := createTAP(t, vr, TAPConfig{Name: "wtp-local", MTU: 2000, Addresses: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/24")}})
	l, err := vr.NL.LinkByName("wtp-local")
	if err != nil {
		t.Fatalf("wtp-local: %v", err)
	}
	if l.Attrs().MTU != 2000 || l.Attrs().HardwareAddr.String() != tap.MAC().String() {
		t.Errorf("mtu %d mac %v, want 2000 %v", l.Attrs().MTU, l.Attrs().HardwareAddr, tap.MAC())
	}
	tap.Close()
	if _, err := vr.NL.LinkByName("wtp-local"); err == nil {
		t.Errorf("wtp-local still there after Close")
	}
}

// A failure after the device was created leaves nothing behind, wherever
// the device was by then.
func TestTAPCreateFailureLeavesNothing(t *testing.T) {
	vr := vrouterNS(t, "wtp-vr")
	ep := nettest.New(t, "wtp-fail")
	tests := []struct {
		name string
		cfg  TAPConfig
		want string // in the error
	}{
		{"rename onto lo", TAPConfig{NetnsIfname: "lo"}, "rename to lo"},
		{"mtu beyond the device", TAPConfig{MTU: 65535}, "mtu 65535"},
		{"multicast gateway", TAPConfig{Addresses: []netip.Prefix{ep4Net},
			Gateways: []netip.Addr{netip.MustParseAddr("224.0.0.1")}}, "gateways[0]"},
		{"address refused", TAPConfig{Addresses: []netip.Prefix{ep4Net, ep4Net}}, "addresses[1]"},
		{"netns missing", TAPConfig{Netns: "wtp-nonexistent"}, "netns /run/netns/wtp-nonexistent"},
		{"name too long", TAPConfig{Name: "wtp-0123456789abcdef"}, "name:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Name == "" {
				cfg.Name = "wtp-f0"
			}
			if cfg.Netns == "" {
				cfg.Netns = ep.Name
			}
			tap, err := createTAPErr(vr, cfg)
			if err == nil {
				tap.Close()
				t.Fatalf("CreateTAP succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			t.Logf("error: %v", err)
			if got := linkNames(t, ep); !slices.Equal(got, []string{"lo"}) {
				t.Errorf("links left in %s: %v", ep.Name, got)
			}
			if got := linkNames(t, vr); !slices.Equal(got, []string{"lo"}) {
				t.Errorf("links left in %s: %v", vr.Name, got)
			}
		})
	}
}

// A ping from inside: the port delivers its ARP request, the test answers
// it and the echo by writing frames, and ping succeeds.
func TestTAPPing(t *testing.T) {
	testenv.RequireTools(t, "ping")
	tap, ep, pr := endpointTAP(t, "wtp-vr", "wtp-ping")
	out, err := ep.Try(10*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", gw4.String())
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping %v: %v\n%s", gw4, err, out)
	}
	select {
	case f := <-pr.arp:
		eth, _ := packet.ParseEthernet(f.data)
		a, err := packet.ParseARP(eth.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if !eth.Dst().IsBroadcast() || eth.Src() != tap.MAC() || a.SenderMAC() != tap.MAC() ||
			a.SenderIP() != ep4 || a.TargetIP() != gw4 {
			t.Errorf("ARP request %v -> %v: who-has %v tell %v (%v)", eth.Src(), eth.Dst(), a.TargetIP(), a.SenderIP(), a.SenderMAC())
		}
	default:
		t.Errorf("no ARP request seen")
	}
	if n := len(pr.icmp); n != 3 {
		t.Errorf("%d echo requests seen, want 3", n)
	}
	// Replies without headroom for the virtio-net header take writev.
	pr.noHeadroom.Store(true)
	out, err = ep.Try(10*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "2", gw4.String())
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping with replies at offset 0: %v\n%s", err, out)
	}
	st := tap.Stats()
	if st.RxPackets < 4 || st.TxPackets < 4 || st.Dropped() != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Close unblocks a Read, removes the device and makes later calls fail
// with ErrClosed.
func TestTAPClose(t *testing.T) {
	vr := vrouterNS(t, "wtp-vr")
	ep := nettest.New(t, "wtp-close")
	tap := createTAP(t, vr, TAPConfig{Name: "wtp-close", Netns: ep.Name})
	errc := make(chan error, 1)
	go func() {
		fs := frame.Batch(2)
		for { // IPv6 autoconfiguration frames come in meanwhile
			if _, err := tap.Read(fs); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let Read block in the poller
	if err := tap.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if got := linkNames(t, ep); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("links after Close: %v", got)
	}
	if _, err := tap.Write(frame.Batch(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := tap.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// When the endpoint's namespace goes, the kernel deletes the device; the
// port then reports an error, it does not hang or spin.
func TestTAPNamespaceGone(t *testing.T) {
	vr := vrouterNS(t, "wtp-vr")
	ep := nettest.New(t, "wtp-gone")
	tap := createTAP(t, vr, TAPConfig{Name: "wtp-gone", Netns: ep.Name})
	errc := make(chan error, 1)
	go func() {
		fs := frame.Batch(2)
		for {
			if _, err := tap.Read(fs); err != nil {
				errc <- err
				return
			}
		}
	}()
	ep.NL.Close()
	ep.Handle.Close()
	nettest.Delete(ep.Name)
	f := frame.New()
	f.Len = 60
	_, werr := tap.Write([]*frame.Frame{f})
	deadline := time.Now().Add(3 * time.Second)
	for werr == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		_, werr = tap.Write([]*frame.Frame{f})
	}
	if werr == nil || errors.Is(werr, ErrClosed) {
		t.Errorf("Write into a deleted namespace: %v, want an error", werr)
	}
	t.Logf("write: %v", werr)
	select {
	case err := <-errc:
		t.Logf("read: %v", err)
		if err == nil || errors.Is(err, ErrClosed) {
			t.Errorf("Read: %v, want an error", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("Read still blocked on a device that is gone")
		tap.Close()
		<-errc
	}
}

// A large TCP send from inside reaches the port as GSO super-frames with
// the offload the stack asked for, and the stream arrives whole.
func TestTAPReadTCPGSO(t *testing.T) {
	tap, ep, pr := endpointTAP(t, "wtp-vr", "wtp-rgso")
	const total = 2 << 20
	got := tcpReceive(t, pr, ep, tap.MAC(), gw4, total)
	if got.gso == 0 {
		t.Fatalf("no GSO super-frame among %d data frames", got.frames)
	}
	t.Logf("%d data frames, %d GSO, largest %d bytes, pseudo-header field %s", got.frames, got.gso, got.largest, got.csumField)
	if st := tap.Stats(); st.RxGSO == 0 || st.Dropped() != 0 {
		t.Errorf("stats %+v", st)
	}
}

type tcpRx struct {
	frames, gso, largest int
	csumField            string
}

// tcpReceive has a client inside ns connect to server:8000 and send total
// bytes; the test is the server, through pr. Every data frame must be
// either an ordinary segment or a super-frame with exactly the offload a
// Linux TSO frame has.
func tcpReceive(t *testing.T, pr *peer, ns *nettest.NS, clientMAC packet.MAC, server netip.Addr, total int) tcpRx {
	t.Helper()
	data := patterned(total)
	srv := netip.AddrPortFrom(server, 8000)
	sendErr := make(chan error, 1)
	go func() {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", srv.String(), 5*time.Second)
			return err
		})
		if err != nil {
			sendErr <- err
			return
		}
		defer c.Close()
		_, err = c.Write(data)
		sendErr <- err
	}()

	syn := pr.nextTCP(t, 5*time.Second)
	ip, tcp := tcpView(t, syn.data)
	if tcp.Flags()&packet.TCPFlagSYN == 0 {
		t.Fatalf("first TCP frame has flags %#x, want SYN", tcp.Flags())
	}
	cli := netip.AddrPortFrom(ip.Src(), tcp.SrcPort())
	const iss = 1000
	rcvNxt := tcp.Seq() + 1
	peerScale := wscaleOf(tcp)
	_ = peerScale
	out := frame.New()
	reply := func(flags uint8, opts []byte) {
		pr.txMu.Lock()
		defer pr.txMu.Unlock()
		seq := uint32(iss + 1)
		if flags&packet.TCPFlagSYN != 0 {
			seq = iss
		}
		buildTCP4(out, &tcpSeg{srcMAC: pr.mac, dstMAC: clientMAC, src: srv, dst: cli, seq: seq, ack: rcvNxt,
			flags: flags, window: 0xffff, opts: opts})
		pr.write(out)
	}
	reply(packet.TCPFlagSYN|packet.TCPFlagACK, synOpts)

	var res tcpRx
	start := rcvNxt
	for int(rcvNxt-start) < total {
		f := pr.nextTCP(t, 5*time.Second)
		ip, tcp := tcpView(t, f.data)
		if netip.AddrPortFrom(ip.Src(), tcp.SrcPort()) != cli {
			continue
		}
		p := tcp.Payload()
		if len(p) == 0 {
			continue
		}
		o := f.off
		switch {
		case o.GSO == frame.GSOTCPv4:
			res.gso++
			hl := 14 + ip.HeaderLen() + tcp.HeaderLen()
			want := frame.Offload{GSO: frame.GSOTCPv4, GSOSize: o.GSOSize, HdrLen: uint16(hl),
				NeedsCsum: true, CsumStart: uint16(14 + ip.HeaderLen()), CsumOffset: 16}
			if o != want {
				t.Fatalf("super-frame offload %+v, want %+v", o, want)
			}
			if o.GSOSize != 1460 {
				t.Errorf("gso size %d, want the MSS 1460", o.GSOSize)
			}
			if len(p) <= int(o.GSOSize) {
				t.Errorf("super-frame of %d bytes payload, gso size %d", len(p), o.GSOSize)
			}
			if res.csumField == "" {
				field := tcp.Checksum()
				switch field {
				case pseudoSum4(ip.Src(), ip.Dst(), packet.ProtoTCP, len(tcp.Bytes())):
					res.csumField = "includes the super-frame's length"
				case pseudoSum4(ip.Src(), ip.Dst(), packet.ProtoTCP, 0):
					res.csumField = "excludes the length"
				default:
					res.csumField = fmt.Sprintf("%#04x (neither)", field)
				}
			}
		case o.GSO != frame.GSONone:
			t.Fatalf("offload %+v on a TCPv4 frame", o)
		case len(f.data) > 1514:
			t.Fatalf("a %d-byte frame without GSO", len(f.data))
		}
		res.frames++
		res.largest = max(res.largest, len(f.data))
		if tcp.Seq() != rcvNxt {
			reply(packet.TCPFlagACK, nil) // out of order: ask again
			continue
		}
		off := int(rcvNxt - start)
		if !bytes.Equal(p, data[off:off+len(p)]) {
			t.Fatalf("payload at stream offset %d differs", off)
		}
		rcvNxt += uint32(len(p))
		reply(packet.TCPFlagACK, nil)
	}
	if err := <-sendErr; err != nil {
		t.Fatalf("client: %v", err)
	}
	return res
}

// GSO super-frames written into the port reach a listener inside as the
// whole byte stream: the kernel took them as TSO frames.
func TestTAPWriteTCPGSO(t *testing.T) {
	for _, gather := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "gathered"}[gather], func(t *testing.T) {
			tap, ep, pr := endpointTAP(t, "wtp-vr", "wtp-wgso")
			pr.gather.Store(gather)
			s0 := tap.Stats()
			sent := tcpSend(t, pr, ep, tap.MAC(), gw4, ep4, 1<<20)
			st := tap.Stats()
			if st.TxGSO-s0.TxGSO < uint64(sent) || st.Dropped() != 0 || st.TxBytes-s0.TxBytes < 1<<20 {
				t.Errorf("stats %+v after %d super-frames", st, sent)
			}
		})
	}
}

// tcpSend listens on dst:9000 inside ns, connects from src through pr and
// sends total bytes as GSO super-frames of up to 44 segments, one window
// at a time; the listener must read exactly the stream. It returns the
// number of super-frames written.
func tcpSend(t *testing.T, pr *peer, ns *nettest.NS, dstMAC packet.MAC, src, dst netip.Addr, total int) int {
	t.Helper()
	data := patterned(total)
	srv := netip.AddrPortFrom(dst, 9000)
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", srv.String())
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	defer ln.Close()
	recvd := make(chan []byte, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			recvd <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, int64(total)))
		recvd <- b
	}()
	defer wg.Wait()

	cli := netip.AddrPortFrom(src, 40001)
	out := frame.New()
	const iss = 5000
	seg := func(seq, ack uint32, flags uint8, opts, payload []byte, gso int) {
		buildTCP4(out, &tcpSeg{srcMAC: pr.mac, dstMAC: dstMAC, src: cli, dst: srv, seq: seq, ack: ack,
			flags: flags, window: 0xffff, opts: opts, payload: payload, gsoSize: gso})
		pr.write(out)
	}
	seg(iss, 0, packet.TCPFlagSYN, synOpts, nil, 0)
	var synack packet.TCP
	for {
		f := pr.nextTCP(t, 5*time.Second)
		_, tcp := tcpView(t, f.data)
		if tcp.Flags()&(packet.TCPFlagSYN|packet.TCPFlagACK) == packet.TCPFlagSYN|packet.TCPFlagACK {
			synack = tcp
			break
		}
	}
	if synack.Ack() != iss+1 {
		t.Fatalf("SYN-ACK acks %d, want %d", synack.Ack(), iss+1)
	}
	scale := wscaleOf(synack)
	rcvNxt := synack.Seq() + 1
	wnd := uint32(synack.Window()) // unscaled in a SYN
	sndUna := uint32(iss + 1)
	seg(sndUna, rcvNxt, packet.TCPFlagACK, nil, nil, 0)

	const mss = 1460
	frames := 0
	for off := 0; off < total; {
		n := min(total-off, 44*mss, int(wnd))
		n -= n % mss
		if n == 0 {
			n = min(total-off, mss)
		}
		seg(sndUna, rcvNxt, packet.TCPFlagACK|packet.TCPFlagPSH, nil, data[off:off+n], mss)
		frames++
		want := sndUna + uint32(n)
		deadline := time.After(10 * time.Second)
		// A frame lost on a loaded machine is retransmitted, as a real
		// sender would, from what is not acknowledged yet.
		rto := time.NewTicker(500 * time.Millisecond)
		progress := false
		for sndUna != want {
			select {
			case f := <-pr.tcp:
				_, tcp := tcpView(t, f.data)
				if tcp.Flags()&packet.TCPFlagACK == 0 || int32(tcp.Ack()-sndUna) < 0 {
					continue
				}
				progress = progress || tcp.Ack() != sndUna
				sndUna = tcp.Ack()
				wnd = uint32(tcp.Window()) << scale
			case <-rto.C:
				if !progress {
					from := int(sndUna - iss - 1)
					seg(sndUna, rcvNxt, packet.TCPFlagACK|packet.TCPFlagPSH, nil, data[from:off+n], mss)
				}
				progress = false
			case <-deadline:
				t.Fatalf("no ACK for bytes up to %d (acked %d)", off+n, sndUna-iss-1)
			}
		}
		rto.Stop()
		off += n
	}
	select {
	case b := <-recvd:
		if !bytes.Equal(b, data) {
			t.Fatalf("listener read %d bytes, want the %d sent (equal: %v)", len(b), len(data), bytes.Equal(b, data[:min(len(b), len(data))]))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not get the stream")
	}
	return frames
}

// UDP segmentation: a UDP_SEGMENT send from inside arrives as one GSOUDPL4
// super-frame, and one written into the port arrives as datagrams.
func TestTAPUDPGSO(t *testing.T) {
	tap, ep, pr := endpointTAP(t, "wtp-vr", "wtp-uso")
	if !tap.USO() {
		testenv.Unavailable(t, "a kernel with TUN_F_USO4/6 (Linux 6.2 or later)")
	}
	const segSize, n = 1000, 10
	data := patterned(segSize * n)

	// Inside to the port.
	var c *net.UDPConn
	if err := ep.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw4, 7000)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, _ := c.SyscallConn()
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, segSize) })
	if serr != nil {
		t.Fatalf("UDP_SEGMENT: %v", serr)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case f := <-pr.udp:
		want := frame.Offload{GSO: frame.GSOUDPL4, GSOSize: segSize, HdrLen: 42, NeedsCsum: true, CsumStart: 34, CsumOffset: 6}
		if f.off != want {
			t.Errorf("offload %+v, want %+v", f.off, want)
		}
		if len(f.data) != 42+len(data) || !bytes.Equal(f.data[42:], data) {
			t.Errorf("super-frame of %d bytes, want %d with the payload", len(f.data), 42+len(data))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no UDP frame")
	}

	// The port to inside.
	var l *net.UDPConn
	if err := ep.Do(func() (err error) {
		l, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ep4, 7001)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f := frame.New()
	b := f.Buf[f.Off:]
	packet.PutEthernet(b, tap.MAC(), gwMAC, packet.EtherTypeIPv4)
	packet.PutIPv4Header(b[14:], &packet.IPv4Header{Protocol: packet.ProtoUDP, Src: gw4, Dst: ep4}, 8+len(data))
	packet.PutUDP(b[34:], 7002, 7001, len(data))
	copy(b[42:], data)
	f.Len = 42 + len(data)
	f.Offload = frame.Offload{GSO: frame.GSOUDPL4, GSOSize: segSize, HdrLen: 42, NeedsCsum: true, CsumStart: 34, CsumOffset: 6}
	binary.BigEndian.PutUint16(b[40:42], pseudoSum4(gw4, ep4, packet.ProtoUDP, 8+len(data)))
	pr.write(f)
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	for i := 0; i < n; i++ {
		m, err := l.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:m], data[i*segSize:(i+1)*segSize]) {
			t.Fatalf("datagram %d: %d bytes, not segment %d", i, m, i)
		}
	}
}

// Malformed frames and offloads given to Write are dropped and counted
// under their reason, whether caught before the system call or refused by
// the kernel; Write goes on with the rest and the port keeps working.
func TestTAPWriteMalformed(t *testing.T) {
	tap, ep, pr := endpointTAP(t, "wtp-vr", "wtp-bad")
	testWriteMalformed(t, tap, func() Stats { return tap.Stats() }, func() {
		// Still working: a ping goes through.
		out, err := ep.Try(5*time.Second, "ping", "-c", "1", "-W", "2", gw4.String())
		if err != nil {
			t.Errorf("ping after malformed writes: %v\n%s", err, out)
		}
	}, pr, tap.MAC())
}

func testWriteMalformed(t *testing.T, p Port, stats func() Stats, stillWorks func(), pr *peer, dstMAC packet.MAC) {
	t.Helper()
	good := func() *frame.Frame {
		f := frame.New()
		buildTCP4(f, &tcpSeg{srcMAC: gwMAC, dstMAC: dstMAC,
			src: netip.AddrPortFrom(gw4, 1), dst: netip.AddrPortFrom(ep4, 2), seq: 1, flags: packet.TCPFlagACK,
			payload: patterned(4 * 1000), gsoSize: 1000})
		return f
	}
	tests := []struct {
		name   string
		mangle func(f *frame.Frame)
		want   DropReason
	}{
		{"nil frame", nil, DropTxBadFrame},
		{"off past the buffer", func(f *frame.Frame) { f.Off = len(f.Buf) + 10 }, DropTxBadFrame},
		{"negative off", func(f *frame.Frame) { f.Off = -1 }, DropTxBadFrame},
		{"len past the buffer", func(f *frame.Frame) { f.Len = len(f.Buf) }, DropTxBadFrame},
		{"negative len", func(f *frame.Frame) { f.Len = -5 }, DropTxBadFrame},
		{"shorter than ethernet", func(f *frame.Frame) { f.Len = 10; f.Offload = frame.Offload{} }, DropTxBadFrame},
		{"unknown gso type", func(f *frame.Frame) { f.GSO = 9 }, DropTxBadOffload},
		{"gso size 0", func(f *frame.Frame) { f.GSOSize = 0 }, DropTxBadOffload},
		{"gso without partial checksum", func(f *frame.Frame) { f.NeedsCsum = false }, DropTxBadOffload},
		{"csum offset past the end", func(f *frame.Frame) { f.CsumOffset = uint16(f.Len) }, DropTxBadOffload},
		{"hdr len past the end", func(f *frame.Frame) { f.HdrLen = uint16(f.Len + 1) }, DropTxBadOffload},
		{"tcp gso with udp csum offset (kernel)", func(f *frame.Frame) { f.CsumOffset = 6 }, DropTxRefused},
		{"udp gso on tcp (kernel)", func(f *frame.Frame) { f.GSO = frame.GSOUDPL4 }, DropTxRefused},
		{"tcpv6 gso on ipv4 (kernel)", func(f *frame.Frame) { f.GSO = frame.GSOTCPv6 }, DropTxRefused},
	}
	var frames []*frame.Frame
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *frame.Frame
			if tt.mangle != nil {
				f = good()
				tt.mangle(f)
			}
			s0, w0 := stats(), pr.writes.Load()
			n, err := p.Write([]*frame.Frame{f})
			if n != 1 || err != nil {
				t.Fatalf("Write = %d, %v; want 1, nil", n, err)
			}
			s1, w1 := stats(), pr.writes.Load()
			if d := s1.Drops[tt.want] - s0.Drops[tt.want]; d != 1 {
				t.Errorf("%v drops went up by %d, want 1 (before %v after %v)", tt.want, d, s0.Drops, s1.Drops)
			}
			if s1.TxPackets-s0.TxPackets != w1-w0 {
				t.Errorf("counted as sent")
			}
		})
		if tt.mangle != nil {
			f := good()
			tt.mangle(f)
			frames = append(frames, f)
		}
	}
	// All of them in one batch, between good frames.
	batch := []*frame.Frame{good()}
	for _, f := range frames {
		batch = append(batch, f, good())
	}
	s0, w0 := stats(), pr.writes.Load()
	n, err := p.Write(batch)
	if n != len(batch) || err != nil {
		t.Fatalf("batch Write = %d, %v; want %d, nil", n, err, len(batch))
	}
	// The peer may answer the endpoint (ARP) meanwhile, through the port.
	s1, w1 := stats(), pr.writes.Load()
	if sent := s1.TxPackets - s0.TxPackets - (w1 - w0); sent != uint64(len(frames)+1) {
		t.Errorf("batch: %d sent, want the %d good ones", sent, len(frames)+1)
	}
	if d := s1.Dropped() - s0.Dropped(); d != uint64(len(frames)) {
		t.Errorf("batch: %d dropped, want %d", d, len(frames))
	}
	stillWorks()
}
