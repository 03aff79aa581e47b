package server_test

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/weftnet/weft/internal/testrig/nettest"
)

// The 64-byte packet-rate figure: a generator that sends with sendmmsg
// (ipv4.PacketConn.WriteBatch, 64 datagrams a call) from several sockets,
// each in a goroutine of its own (the syscalls give each a thread; no
// LockOSThread: a locked goroutine's exit ends its thread, and a process
// the lab forked from that thread with Pdeathsig dies with it), so that
// it offers more than any of the paths can carry, and a sink that counts with recvmmsg (ReadBatch) on
// as many sockets. iperf3 -l 64 measured iperf3's own per-packet cost.
const (
	genFlows   = 4  // sockets and flows (distinct source ports)
	genBatch   = 64 // datagrams per sendmmsg / recvmmsg
	genPayload = 64 // UDP payload bytes
	genWarmup  = 500 * time.Millisecond
)

type udpRate struct {
	sent, received float64 // per second, over the same window
}

// udpFlood sends 64-byte datagrams from src to dst ports port..port+
// genFlows-1 for d and returns what was sent and what the sink received
// per second, both counted over the window after genWarmup (the first
// packets of each flow set it up in the Go engine).
func udpFlood(t testing.TB, src, dst *nettest.NS, dstAddr string, port int, d time.Duration) udpRate {
	t.Helper()
	var sinks, gens []*ipv4.PacketConn
	for i := range genFlows {
		var c net.PacketConn
		if err := dst.Do(func() (err error) {
			c, err = net.ListenPacket("udp4", net.JoinHostPort(dstAddr, strconv.Itoa(port+i)))
			return
		}); err != nil {
			t.Fatalf("sink: %v", err)
		}
		uc := c.(*net.UDPConn)
		uc.SetReadBuffer(4 << 20)
		sinks = append(sinks, ipv4.NewPacketConn(c))
		var g net.Conn
		if err := src.Do(func() (err error) { g, err = net.Dial("udp4", net.JoinHostPort(dstAddr, strconv.Itoa(port+i))); return }); err != nil {
			t.Fatalf("generator: %v", err)
		}
		gens = append(gens, ipv4.NewPacketConn(g.(*net.UDPConn)))
	}
	defer func() {
		for i := range genFlows {
			sinks[i].Close()
			gens[i].Close()
		}
	}()
	var received, sent atomic.Int64
	var counting atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range genFlows {
		wg.Add(2)
		go func() {
			defer wg.Done()
			msgs := make([]ipv4.Message, genBatch)
			for j := range msgs {
				msgs[j].Buffers = [][]byte{make([]byte, 2048)}
			}
			for {
				sinks[i].SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				n, err := sinks[i].ReadBatch(msgs, 0)
				if counting.Load() {
					received.Add(int64(n))
				}
				if err != nil {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			msgs := make([]ipv4.Message, genBatch)
			for j := range msgs {
				msgs[j].Buffers = [][]byte{make([]byte, genPayload)}
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, _ := gens[i].WriteBatch(msgs, 0) // ECONNREFUSED and ENOBUFS: go on
				if counting.Load() {
					sent.Add(int64(n))
				}
			}
		}()
	}
	time.Sleep(genWarmup)
	counting.Store(true)
	start := time.Now()
	time.Sleep(d)
	counting.Store(false)
	window := time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	return udpRate{sent: float64(sent.Load()) / window, received: float64(received.Load()) / window}
}
