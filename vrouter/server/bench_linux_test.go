package server_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// BenchmarkOverlay measures, on one two-host topology and in one run, the
// Linux kernel's own VXLAN (the baseline) and Weft's MPLSoUDP and VXLAN
// paths between the same endpoint namespaces, userspace and then on the
// in-kernel fast path (--fastpath): TCP throughput with iperf3, 64-byte
// UDP packets per second with a sendmmsg generator and a recvmmsg sink
// (udpFlood), and ping RTT percentiles. Each Weft case reports its ratio
// to the kernel, and the parent logs the comparison as a table. `make
// bench` runs it; alone: go test -run '^$' -bench Overlay -benchtime 1x
// ./vrouter/server.
//
// The kernel path is the usual one of kernel overlays: in each host a
// bridge joins a vxlan device and a veth into the endpoint namespace, which
// thus has a second interface (kv0, 10.8.0.0/24) beside Weft's (eth0,
// 10.1.0.0/24). Both cross the same fabric veths.
func BenchmarkOverlay(b *testing.B) {
	testenv.RequireTools(b, "iperf3", "ping")
	tn := newTenants(b, "wtbo", lab.Userspace)
	kernelVXLAN(b, tn)
	var base overlayFigures
	var rows []string
	row := func(name string, f overlayFigures) {
		r := fmt.Sprintf("%-20s %6.2f Gbit/s %9.0f pps (of %9.0f sent) %5.0f/%5.0f µs", name, f.tcpGbps, f.udpPps, f.udpOffered, us(f.p50), us(f.p99))
		if name != "kernel-vxlan" {
			r += fmt.Sprintf("   tcp %.2fx  pps %.2fx  p50 %.2fx  p99 %.2fx kernel", f.tcpGbps/base.tcpGbps, f.udpPps/base.udpPps,
				us(f.p50)/us(base.p50), us(f.p99)/us(base.p99))
		}
		rows = append(rows, r)
	}
	b.Run("kernel-vxlan", func(b *testing.B) {
		base = measure(b, tn.redA, tn.redB, "10.8.0.3")
		report(b, base, overlayFigures{})
		row("kernel-vxlan", base)
	})
	encs := []vrouterv1.Encap{vrouterv1.Encap_ENCAP_MPLSOUDP, vrouterv1.Encap_ENCAP_VXLAN}
	for _, m := range []lab.Mode{lab.Userspace, lab.FastPath} {
		if m != lab.Userspace {
			// The same vRouters restarted in the next mode.
			tn.restart(b, m)
		}
		for _, enc := range encs {
			name := string(m) + "-" + encName(enc)
			b.Run(name, func(b *testing.B) {
				tn.remote(b, enc)
				f := measure(b, tn.redA, tn.redB, "10.1.0.3")
				report(b, f, base)
				row(name, f)
			})
		}
	}
	// Printed, not logged: a parent benchmark's log is not shown.
	fmt.Printf("BenchmarkOverlay, one topology, one run (TCP, 64-byte UDP received, RTT p50/p99):\n%s\n", strings.Join(rows, "\n"))
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// restart stops both vRouters (their endpoints' devices go with them) and
// starts them again in mode m, with the endpoints, labels and VNIs.
func (tn *tenants) restart(b *testing.B, m lab.Mode) {
	tn.l.Mode = m
	for _, x := range []struct {
		h         *lab.Host
		red, blue *nettest.NS
		addr      string
	}{{tn.a, tn.redA, tn.bluA, "10.1.0.2"}, {tn.b, tn.redB, tn.bluB, "10.1.0.3"}} {
		x.h.VRouter.Kill(unix.SIGTERM)
		x.h.StartVRouter(b)
		tn.local(b, x.h, x.red, x.blue, x.addr)
	}
}

type overlayFigures struct {
	tcpGbps, udpPps float64
	udpOffered      float64 // what the generator sent: more than udpPps, or the generator is the limit
	p50, p99        time.Duration
}

func report(b *testing.B, f, base overlayFigures) {
	b.ReportMetric(f.tcpGbps, "tcp-Gbit/s")
	b.ReportMetric(f.udpPps, "udp64-pps")
	b.ReportMetric(f.udpOffered, "udp64-offered-pps")
	b.ReportMetric(us(f.p50), "rtt-p50-µs")
	b.ReportMetric(us(f.p99), "rtt-p99-µs")
	if base.tcpGbps > 0 && base.udpPps > 0 {
		b.ReportMetric(f.tcpGbps/base.tcpGbps, "tcp-x-kernel")
		b.ReportMetric(f.udpPps/base.udpPps, "udp-x-kernel")
		b.ReportMetric(us(f.p50)/us(base.p50), "p50-x-kernel")
	}
}

// kernelVXLAN builds the baseline path next to Weft's.
func kernelVXLAN(b *testing.B, tn *tenants) {
	for _, x := range []struct {
		host       *nettest.NS
		ep         *nettest.NS
		local, rem string
		addr       string
	}{{tn.a.NS, tn.redA, "192.0.2.1", "192.0.2.2", "10.8.0.2/24"}, {tn.b.NS, tn.redB, "192.0.2.2", "192.0.2.1", "10.8.0.3/24"}} {
		// Port 4790: Weft's vRouter has 4789.
		x.host.Run(b, "ip", "link", "add", "kvx", "type", "vxlan", "id", "42", "dstport", "4790", "local", x.local, "remote", x.rem)
		x.host.Bridge(b, "kbr")
		x.host.Attach(b, "kbr", "kvx")
		x.host.Up(b, "kvx", "")
		nettest.Veth(b, x.host, "kve", "", x.ep, "kv0", x.addr)
		x.host.Attach(b, "kbr", "kve")
		// The same MTU Weft gives its endpoints.
		x.ep.SetMTU(b, "kv0", 1450)
	}
}

// measure runs iperf3 TCP, the 64-byte UDP flood and a ping series from
// src to dst.
func measure(b *testing.B, src, srv *nettest.NS, dst string) overlayFigures {
	var f overlayFigures
	srv.Start(b, "iperf3", "-s", "-B", dst)
	time.Sleep(500 * time.Millisecond)
	out, err := src.Try(60*time.Second, "iperf3", "-J", "-c", dst, "-t", "5")
	if err != nil {
		b.Fatalf("iperf3 tcp to %s: %v\n%s", dst, err, out)
	}
	var tcp struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &tcp); err != nil {
		b.Fatalf("iperf3 tcp json: %v", err)
	}
	f.tcpGbps = tcp.End.SumReceived.BitsPerSecond / 1e9
	r := udpFlood(b, src, srv, dst, 9100, 3*time.Second)
	f.udpPps, f.udpOffered = r.received, r.sent
	out, err = src.Try(60*time.Second, "ping", "-c", "1000", "-i", "0.002", dst)
	if err != nil {
		b.Fatalf("ping %s: %v\n%s", dst, err, out)
	}
	var rtts []time.Duration
	for _, m := range rttRE.FindAllStringSubmatch(out, -1) {
		ms, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
	}
	if len(rtts) == 0 {
		b.Fatalf("ping %s: no replies:\n%s", dst, out)
	}
	slices.Sort(rtts)
	f.p50, f.p99 = rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	return f
}

var rttRE = regexp.MustCompile(`time=([0-9.]+) ms`)
