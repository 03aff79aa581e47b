package server_test

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testrig/nettest"
)

// capture counts the IPv4 frames an interface inside ns receives from src
// while it runs: the independent check (beside the vRouter's counters)
// that another tenant's traffic never reaches an endpoint.
type capture struct {
	fd     int
	n      atomic.Int64
	done   chan struct{}
	once   sync.Once
	stopCh chan struct{}
}

func startCapture(t testing.TB, ns *nettest.NS, ifname string, src netip.Addr) *capture {
	t.Helper()
	c := &capture{done: make(chan struct{}), stopCh: make(chan struct{})}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		idx, err := ifIndex(fd, ifname)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", ifname, ns.Name, err)
	}
	want := src.As4()
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					select {
					case <-c.stopped():
						return
					default:
						continue
					}
				}
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if n >= 34 && binary.BigEndian.Uint16(buf[12:14]) == 0x0800 && [4]byte(buf[26:30]) == want {
				c.n.Add(1)
			}
		}
	}()
	t.Cleanup(func() { c.Stop() })
	return c
}

func (c *capture) stopped() <-chan struct{} { return c.stopCh }

// Stop ends the capture and returns how many frames matched.
func (c *capture) Stop() int64 {
	c.once.Do(func() {
		close(c.stopCh)
		<-c.done
		unix.Close(c.fd)
	})
	return c.n.Load()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ifIndex(fd int, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}
