package server_test

// Helpers for the vRouter integration tests: two or more hosts (network
// namespaces on one fabric bridge), each running the real `weft vrouter`
// process, programmed through its control API the way the agent does it,
// with endpoints in namespaces of their own.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

func apply(t testing.TB, h *lab.Host, ops ...*vrouterv1.Op) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.Client.Apply(ctx, &vrouterv1.ApplyRequest{Ops: ops}); err != nil {
		t.Fatalf("%s: apply: %v", h.Name, err)
	}
}

func putVRF(id, network uint32, name string) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutVrf{PutVrf: &vrouterv1.Vrf{Id: id, Name: name, Network: network}}}
}

func putPort(p *vrouterv1.Port) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutPort{PutPort: p}}
}

func putNH(nh *vrouterv1.NextHop) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutNextHop{PutNextHop: nh}}
}

func portNH(id, port, network uint32) *vrouterv1.Op {
	return putNH(&vrouterv1.NextHop{Id: id, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT, Port: port, Network: network})
}

// tunnelNH is a tunnel to remote with the label (MPLS) or VNI (VXLAN) key.
func tunnelNH(id uint32, enc vrouterv1.Encap, remote netip.Addr, key, network uint32) *vrouterv1.Op {
	nh := &vrouterv1.NextHop{Id: id, Kind: vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL, Encap: enc, Underlay: remote.String(), Network: network}
	if enc == vrouterv1.Encap_ENCAP_VXLAN {
		nh.Vni = key
	} else {
		nh.Label = key
	}
	return putNH(nh)
}

func putRoute(vrf uint32, prefix string, nh uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutRoute{PutRoute: &vrouterv1.Route{Vrf: vrf, Prefix: prefix, NextHop: nh}}}
}

func putLabel(label, nh uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutLabel{PutLabel: &vrouterv1.Label{Label: label, NextHop: nh}}}
}

func putVNI(vni, vrf uint32) *vrouterv1.Op {
	return &vrouterv1.Op{Op: &vrouterv1.Op_PutVni{PutVni: &vrouterv1.Vni{Vni: vni, Vrf: vrf}}}
}

func tap(id, vrf uint32, name, netns, addr string) *vrouterv1.Port {
	return &vrouterv1.Port{Id: id, Name: name, Kind: vrouterv1.PortKind_PORT_KIND_TAP, Vrf: vrf,
		Ifname: fmt.Sprintf("wtv%d", id), Netns: netns, Addresses: []string{addr}}
}

// keyFor is the label or VNI a tenant's remote endpoint is reached with.
func keyFor(enc vrouterv1.Encap, label, vni uint32) uint32 {
	if enc == vrouterv1.Encap_ENCAP_VXLAN {
		return vni
	}
	return label
}

// ping runs ping in ns and reports whether every echo came back.
func ping(ns *nettest.NS, dst string, args ...string) (bool, string) {
	a := append([]string{"-c", "3", "-i", "0.2", "-W", "2"}, args...)
	out, err := ns.Try(15*time.Second, "ping", append(a, dst)...)
	return err == nil && strings.Contains(out, " 0% packet loss"), out
}

func mustPing(t testing.TB, ns *nettest.NS, dst string) {
	t.Helper()
	if ok, out := ping(ns, dst); !ok {
		t.Fatalf("ping %s from %s failed:\n%s", dst, ns.Name, out)
	}
}

func mustNotPing(t testing.TB, ns *nettest.NS, dst string) {
	t.Helper()
	if ok, out := ping(ns, dst, "-c", "2"); ok {
		t.Fatalf("ping %s from %s passed, must not:\n%s", dst, ns.Name, out)
	}
}

// listenTCP listens inside ns; the listener works from any goroutine.
func listenTCP(t testing.TB, ns *nettest.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dialTCP(ns *nettest.NS, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return })
	return c, err
}

// echoServer echoes every connection on ln back to its sender.
func echoServer(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

// transfer sends n random bytes through an echo server at addr from ns
// and checks that exactly those bytes come back; it returns the time.
func transfer(t testing.TB, ns *nettest.NS, addr string, n int) time.Duration {
	t.Helper()
	c, err := dialTCP(ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s from %s: %v", addr, ns.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, n)
	rand.Read(data)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("transfer to %s: read after %d bytes: %v", addr, len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("transfer to %s: write: %v", addr, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("transfer to %s: %d bytes came back, content differs (sent %d)", addr, len(got), n)
	}
	return time.Since(start)
}

// udpEcho answers every datagram on addr inside ns with its payload.
func udpEcho(t testing.TB, ns *nettest.NS, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
		t.Fatalf("udp listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// udpRoundTrip sends one datagram from ns to addr and waits for the echo.
func udpRoundTrip(ns *nettest.NS, addr string) error {
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial("udp", addr); return }); err != nil {
		return err
	}
	defer c.Close()
	msg := []byte("weft udp " + addr)
	buf := make([]byte, 256)
	for range 5 {
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if !bytes.Equal(buf[:n], msg) {
				return fmt.Errorf("udp echo: got %q", buf[:n])
			}
			return nil
		}
	}
	return errors.New("udp: no echo")
}

// counters reads a vRouter's counters.
func counters(t testing.TB, h *lab.Host) *vrouterv1.CountersReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.Client.Counters(ctx, &vrouterv1.CountersRequest{})
	if err != nil {
		t.Fatalf("%s: counters: %v", h.Name, err)
	}
	return c
}

func portCounters(c *vrouterv1.CountersReply, port uint32) *vrouterv1.PortCounters {
	for _, p := range c.GetPorts() {
		if p.GetPort() == port {
			return p
		}
	}
	return &vrouterv1.PortCounters{}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
