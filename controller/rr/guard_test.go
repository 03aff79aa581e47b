// Go 1.24+ listeners use MPTCP, on which the kernel refuses TCP MD5 keys
// (the hop's and the nodes'): the test binary needs cmd/weft's setting.
//go:debug multipathtcp=0

package rr

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/weftnet/weft/agent/bgp"
	"github.com/weftnet/weft/internal/routetarget"
	"github.com/weftnet/weft/vrouter/packet"
)

// panicCorpus is every message of the guard's corpus: the UPDATEs on
// which GoBGP v3.37.0 panics (type, body).
func panicCorpus(t *testing.T) (out [][]byte) {
	f, err := os.Open("../../internal/bgpguard/testdata/gobgp-panics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		var typ uint8
		var mode, h string
		if _, err := fmt.Sscan(l, &typ, &mode, &h); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		body, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		msg := make([]byte, 19, 19+len(body))
		for i := range 16 {
			msg[i] = 0xff
		}
		binary.BigEndian.PutUint16(msg[16:], uint16(19+len(body)))
		msg[18] = typ
		out = append(out, append(msg, body...))
	}
	if len(out) == 0 {
		t.Fatal("empty corpus")
	}
	return out
}

// rawSession opens a BGP session from local to the reflector as a raw
// socket: OPEN (the reflector's families), KEEPALIVE, until Established.
func rawSession(t *testing.T, local netip.Addr, to netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
	c, err := d.Dial("tcp4", to.String())
	if err != nil {
		return nil, err
	}
	var caps []gobgp.ParameterCapabilityInterface
	for _, rf := range []gobgp.RouteFamily{gobgp.RF_IPv4_VPN, gobgp.RF_IPv6_VPN, gobgp.RF_EVPN, gobgp.RF_IPv4_UC, gobgp.RF_IPv6_UC} {
		caps = append(caps, gobgp.NewCapMultiProtocol(rf))
	}
	caps = append(caps, gobgp.NewCapFourOctetASNumber(64512))
	open, _ := gobgp.NewBGPOpenMessage(64512, 90, local.String(), []gobgp.OptionParameterInterface{gobgp.NewOptionParameterCapability(caps)}).Serialize()
	ka, _ := gobgp.NewBGPKeepAliveMessage().Serialize()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(open, ka...)); err != nil {
		c.Close()
		return nil, err
	}
	// The reflector's OPEN, then its KEEPALIVE: Established.
	for _, want := range []uint8{gobgp.BGP_MSG_OPEN, gobgp.BGP_MSG_KEEPALIVE} {
		h := make([]byte, 19)
		if _, err := io.ReadFull(c, h); err != nil {
			c.Close()
			return nil, fmt.Errorf("reading message %d: %w", want, err)
		}
		body := make([]byte, int(binary.BigEndian.Uint16(h[16:]))-19)
		if _, err := io.ReadFull(c, body); err != nil || h[18] != want {
			c.Close()
			return nil, fmt.Errorf("message type %d (%x), want %d: %v", h[18], body, want, err)
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// TestReflectorSurvivesGoBGPPanics (issue 9, bar 3): every message of
// the guard's panic corpus, each on a session of its own from an
// accepted client, sent to the reflector over TCP; the process (this
// test's: GoBGP runs in it) stays up, and two legitimate clients still
// exchange a route through it. And nothing but the guard reaches
// GoBGP: a connection straight to its loopback hop never completes.
func TestReflectorSurvivesGoBGPPanics(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("WEFT_CONTROLLER_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := probe.Addr().(*net.TCPAddr).AddrPort()
	probe.Close()
	set := Settings{Listen: listen, ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.1"),
		Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	r, err := Start(context.Background(), set, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)

	corpus := panicCorpus(t)
	var wg sync.WaitGroup
	results := make([]string, len(corpus))
	for i, msg := range corpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := netip.AddrFrom4([4]byte{127, 0, 1 + byte(i/250), 1 + byte(i%250)})
			c, err := rawSession(t, local, listen)
			if err != nil {
				results[i] = "no session: " + err.Error()
				return
			}
			defer c.Close()
			c.Write(msg)
			// The reflector's answer: a NOTIFICATION (reset) or
			// nothing (RFC 7606 handling, session kept).
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			h := make([]byte, 19)
			for {
				if _, err := io.ReadFull(c, h); err != nil {
					results[i] = "kept"
					return
				}
				body := make([]byte, int(binary.BigEndian.Uint16(h[16:]))-19)
				io.ReadFull(c, body)
				if h[18] == gobgp.BGP_MSG_NOTIFICATION {
					results[i] = fmt.Sprintf("reset %x", body[:min(2, len(body))])
					return
				}
			}
		}()
	}
	wg.Wait()
	counts := map[string]int{}
	for i, res := range results {
		if strings.HasPrefix(res, "no session") {
			t.Errorf("corpus message %d: %s", i, res)
		}
		counts[strings.Fields(res)[0]]++
	}
	t.Logf("%d messages of the panic corpus sent to the reflector; outcomes %v", len(corpus), counts)

	// Straight to GoBGP's hop, past the guard: no handshake.
	var hopWG sync.WaitGroup
	for i, src := range []string{"127.0.0.1", "127.66.0.2", "127.66.200.1"} {
		hopWG.Add(1)
		go func() {
			defer hopWG.Done()
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err := d.Dial("tcp4", r.hop.Addr.String())
			if err == nil {
				c.Write(corpus[i])
				c.Close()
				t.Errorf("a connection from %s straight to GoBGP's hop %v was accepted", src, r.hop.Addr)
			}
		}()
	}
	hopWG.Wait()

	// Still serving: a route from one client reaches another.
	start := func(a netip.Addr) *bgp.Speaker {
		sp, err := bgp.Start(context.Background(), bgp.Config{
			RouterID: a, ASN: 64512, ListenPort: -1,
			Peers:  []bgp.Peer{{Address: listen.Addr(), Port: int(listen.Port()), LocalAddress: a, ConnectRetry: time.Second}},
			Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sp.Stop)
		return sp
	}
	a, b := netip.MustParseAddr("127.0.3.1"), netip.MustParseAddr("127.0.3.2")
	A, B := start(a), start(b)
	route := bgp.Route{Family: bgp.VPNv4, RD: bgp.NewRD(a, 1), Prefix: netip.MustParsePrefix("10.0.10.5/32"),
		Label: 1001, NextHop: netip.MustParseAddr("198.18.0.11"), RouteTargets: []bgp.RouteTarget{{Type: routetarget.AS2, ASN: 64512, Local: 100}},
		Encaps: []packet.Encap{packet.EncapMPLSoUDP}, OriginVN: 100}
	if err := A.Announce(route); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := false
		for _, rt := range B.Received(bgp.VPNv4) {
			got = got || rt.Key() == route.Key()
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the route did not reach the other client within 30s: A %v, B %v, reflector %+v", A.Peers(), B.Peers(), r.Sessions())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
