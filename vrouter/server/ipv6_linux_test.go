package server_test

import (
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// TestIPv6Overlay: dual-stack endpoints on two vRouters; ping and TCP with
// content check over IPv6 inside MPLSoUDP and VXLAN (an IPv4 underlay).
// The fast path does not parse IPv6 (DESIGN.md): with it on, every IPv6
// packet is punted to the Go engine at both ends, and must still arrive.
func TestIPv6Overlay(t *testing.T) { lab.Modes(t, ipv6Overlay) }

func ipv6Overlay(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtv6", m)
	// Red's ports again, dual-stack now.
	for _, x := range []struct {
		h          *lab.Host
		ns, v4, v6 string
	}{{tn.a, tn.redA.Name, "10.1.0.2/24", "fd00:1::2"}, {tn.b, tn.redB.Name, "10.1.0.3/24", "fd00:1::3"}} {
		p := tap(portRed, vrfRed, "red-"+x.h.Name, x.ns, x.v4)
		p.Addresses = append(p.Addresses, x.v6+"/64")
		apply(t, x.h, putPort(p), portNH(1, portRed, netRed), putRoute(vrfRed, x.v6+"/128", 1))
	}
	echoServer(listenTCP(t, tn.redB, "[fd00:1::3]:7000"))
	for _, enc := range []vrouterv1.Encap{vrouterv1.Encap_ENCAP_MPLSOUDP, vrouterv1.Encap_ENCAP_VXLAN} {
		t.Run(enc.String(), func(t *testing.T) {
			tn.remote(t, enc)
			apply(t, tn.a, putRoute(vrfRed, "fd00:1::3/128", 3))
			apply(t, tn.b, putRoute(vrfRed, "fd00:1::2/128", 3))
			waitFor(t, "IPv6 ping a->b", 15*time.Second, func() bool { ok, _ := ping(tn.redA, "fd00:1::3", "-c", "1"); return ok })
			mustPing(t, tn.redA, "fd00:1::3")
			took := transfer(t, tn.redA, "[fd00:1::3]:7000", 4<<20)
			t.Logf("%s %s: 4 MiB echoed over IPv6 in %v", m, enc, took.Round(time.Millisecond))
		})
	}
}
