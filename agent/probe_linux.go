package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
// kind, or a probe beyond the bounds (agentapi.MaxProbeDuration,
// MaxProbeCount) are errors, and so is a probe over MaxRunningProbes (429);
// an unreachable target is a result with OK false. The probe ends when ctx
// does (its client gone), its socket closed at once: an abandoned probe
// leaves nothing open.
func (s *apiServer) probe(ctx context.Context, req agentapi.ProbeRequest) (agentapi.ProbeResult, error) {
	dst, err := netip.ParseAddr(req.To)
	if err != nil {
		return agentapi.ProbeResult{}, badRequest(fmt.Errorf("to: %w", err))
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
		return agentapi.ProbeResult{}, badRequest(fmt.Errorf("endpoint: %q is not an endpoint of this node", req.Endpoint))
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	n := req.Count
	if n <= 0 {
		n = 3
	}
	switch req.Kind {
	case "", "icmp":
		if n > agentapi.MaxProbeCount {
			return agentapi.ProbeResult{}, badRequest(fmt.Errorf("count: %d is more than the %d echoes a probe may send", n, agentapi.MaxProbeCount))
		}
	case "tcp":
		if req.Port <= 0 || req.Port > 65535 {
			return agentapi.ProbeResult{}, badRequest(fmt.Errorf("port: %d out of range 1..65535", req.Port))
		}
		n = 1 // one connection
	default:
		return agentapi.ProbeResult{}, badRequest(fmt.Errorf("kind: %q, want icmp or tcp", req.Kind))
	}
	if d := time.Duration(n) * timeout; d > agentapi.MaxProbeDuration {
		return agentapi.ProbeResult{}, badRequest(fmt.Errorf("count × timeout: %d × %v = %v, more than the %v a probe may run", n, timeout, d, agentapi.MaxProbeDuration))
	}
	select {
	case s.probes <- struct{}{}:
		defer func() { <-s.probes }()
	default:
		return agentapi.ProbeResult{}, &httpError{http.StatusTooManyRequests,
			fmt.Errorf("%d probes are running, the most an agent runs at once: try again when one has ended", cap(s.probes))}
	}
	if req.Kind == "tcp" {
		return connectFrom(ctx, ep.Netns, netip.AddrPortFrom(dst, uint16(req.Port)), timeout)
	}
	return pingFrom(ctx, ep.Netns, dst, n, timeout)
}

// inNetns runs f inside the endpoint's namespace; sockets f opens stay in it.
func inNetns(ns string, f func() error) error { return nsexec.Do(ns, f) }

// abandoned is a probe's error when its caller went away first.
func abandoned(ctx context.Context) error {
	return fmt.Errorf("probe abandoned by its caller: %w", context.Cause(ctx))
}

func pingFrom(ctx context.Context, ns string, dst netip.Addr, count int, timeout time.Duration) (agentapi.ProbeResult, error) {
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
	// Closing the socket is what wakes a read blocked on it: the probe
	// ends when its caller does, not when its echoes time out.
	defer context.AfterFunc(ctx, func() { c.Close() })()
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
			if ctx.Err() != nil {
				return agentapi.ProbeResult{}, abandoned(ctx)
			}
			return agentapi.ProbeResult{OK: false, Detail: fmt.Sprintf("sending to %s: %v", dst, err)}, nil
		}
		deadline := start.Add(timeout)
		for {
			c.SetReadDeadline(deadline)
			n, from, err := c.ReadFrom(buf)
			if ctx.Err() != nil {
				return agentapi.ProbeResult{}, abandoned(ctx)
			}
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

func connectFrom(ctx context.Context, ns string, dst netip.AddrPort, timeout time.Duration) (agentapi.ProbeResult, error) {
	var c net.Conn
	start := time.Now()
	dialer := net.Dialer{Timeout: timeout}
	err := inNetns(ns, func() (err error) { c, err = dialer.DialContext(ctx, "tcp", dst.String()); return })
	if ctx.Err() != nil {
		if err == nil {
			c.Close()
		}
		return agentapi.ProbeResult{}, abandoned(ctx)
	}
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
