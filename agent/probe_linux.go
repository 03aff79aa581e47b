package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/internal/nsexec"
)

// probe runs req. An endpoint this agent does not have, a bad address or
// kind are errors; an unreachable target is a result with OK false.
func (s *apiServer) probe(ctx context.Context, req agentapi.ProbeRequest) (agentapi.ProbeResult, error) {
	dst, err := netip.ParseAddr(req.To)
	if err != nil {
		return agentapi.ProbeResult{}, fmt.Errorf("to: %w", err)
	}
	eps, _ := s.decl.endpoints()
	var ep *LocalEndpoint
	for _, e := range eps {
		if e.Name == req.Endpoint {
			ep = &e
			break
		}
	}
	if ep == nil {
		return agentapi.ProbeResult{}, fmt.Errorf("endpoint: %q is not an endpoint of this node", req.Endpoint)
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	switch req.Kind {
	case "", "icmp":
		n := req.Count
		if n <= 0 {
			n = 3
		}
		return pingFrom(ep.Netns, dst, n, timeout)
	case "tcp":
		if req.Port <= 0 || req.Port > 65535 {
			return agentapi.ProbeResult{}, fmt.Errorf("port: %d out of range 1..65535", req.Port)
		}
		return connectFrom(ep.Netns, netip.AddrPortFrom(dst, uint16(req.Port)), timeout)
	}
	return agentapi.ProbeResult{}, fmt.Errorf("kind: %q, want icmp or tcp", req.Kind)
}

// inNetns runs f inside the endpoint's namespace; sockets f opens stay in it.
func inNetns(ns string, f func() error) error { return nsexec.Do(ns, f) }

func pingFrom(ns string, dst netip.Addr, count int, timeout time.Duration) (agentapi.ProbeResult, error) {
	network, proto := "ip4:icmp", 1
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if dst.Is6() {
		network, proto, typ = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest
	}
	var c *icmp.PacketConn
	if err := inNetns(ns, func() (err error) { c, err = icmp.ListenPacket(network, ""); return }); err != nil {
		return agentapi.ProbeResult{}, fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	got := 0
	var rtt time.Duration
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("weft probe")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return agentapi.ProbeResult{}, err
		}
		start := time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return agentapi.ProbeResult{OK: false, Detail: fmt.Sprintf("sending to %s: %v", dst, err)}, nil
		}
		deadline := start.Add(timeout)
		for {
			c.SetReadDeadline(deadline)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // this echo is lost
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != id || e.Seq != seq || from.String() != dst.String() ||
				(m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
				continue
			}
			got++
			rtt += time.Since(start)
			break
		}
	}
	r := agentapi.ProbeResult{OK: got == count, Detail: fmt.Sprintf("%d/%d echo replies from %s", got, count, dst)}
	if got > 0 {
		r.RTTMicros = (rtt / time.Duration(got)).Microseconds()
		r.Detail += fmt.Sprintf(", rtt %.2f ms", float64(r.RTTMicros)/1000)
	}
	return r, nil
}

func connectFrom(ns string, dst netip.AddrPort, timeout time.Duration) (agentapi.ProbeResult, error) {
	var c net.Conn
	start := time.Now()
	err := inNetns(ns, func() (err error) { c, err = net.DialTimeout("tcp", dst.String(), timeout); return })
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return agentapi.ProbeResult{Detail: fmt.Sprintf("tcp %s: no answer in %v", dst, timeout)}, nil
		}
		if strings.Contains(err.Error(), "netns") {
			return agentapi.ProbeResult{}, err
		}
		return agentapi.ProbeResult{Detail: fmt.Sprintf("tcp %s: %v", dst, err)}, nil
	}
	c.Close()
	d := time.Since(start)
	return agentapi.ProbeResult{OK: true, RTTMicros: d.Microseconds(), Detail: fmt.Sprintf("tcp %s connected in %.2f ms", dst, float64(d.Microseconds())/1000)}, nil
}
