package bgpguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"golang.org/x/sys/unix"
)

// The hop is the loopback leg between the relays and a GoBGP that
// listens on loopback only. Any process of the host could reach a
// loopback port, claim to be a peer and talk to GoBGP past the guard;
// so each GoBGP's listening socket takes a TCP MD5 key (RFC 2385) for
// every IPv4 source, random and per process, that only the relays know
// (Lock): a connection without it never completes its handshake (the
// kernel drops the SYN), whatever its source address.

// HopListen is where every GoBGP behind a guard listens; HopAddr(n)
// are the loopback addresses GoBGP knows the peers by. 127.66/16 is
// arbitrary: any 127/8 address is local on Linux, and the port is
// probed per GoBGP (ProbeHop), so two in one process (or another daemon
// on 127.0.0.1) never meet.
var HopListen = netip.AddrFrom4([4]byte{127, 66, 0, 1})

// HopAddr is the n-th loopback address for a peer, from 127.66.0.2 (n
// = 1) on.
func HopAddr(n uint32) netip.Addr {
	n++
	return netip.AddrFrom4([4]byte{127, 66, byte(n >> 8), byte(n)})
}

const (
	// relayBuf holds at least one message of the largest size plus what
	// a read brings.
	relayBuf = 2 * bgpMaxExtendedLen
	// drainTimeout bounds how long a refusal waits for GoBGP to read
	// the NOTIFICATION.
	drainTimeout = 2 * time.Second
	// hopDialTimeout: a loopback connect either works at once or not.
	hopDialTimeout = 2 * time.Second
)

// Hop is one GoBGP's loopback listener and its key.
type Hop struct {
	Addr netip.AddrPort // GoBGP's listener
	key  string
}

// ProbeHop finds a free port on HopListen, for GoBGP to listen on
// (StartBgp may find it taken: probe again), and draws the hop's key.
func ProbeHop() (*Hop, error) {
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(HopListen, 0).String())
	if err != nil {
		return nil, fmt.Errorf("loopback %v: %w (is lo up?)", HopListen, err)
	}
	defer ln.Close()
	var k [24]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("hop key: %w", err)
	}
	return &Hop{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), key: hex.EncodeToString(k[:])}, nil
}

// Lock puts the hop's key on GoBGP's listening socket, for every IPv4
// source: call it once GoBGP listens on h.Addr (after StartBgp). GoBGP
// has no option for it, so the socket is found among the process's
// file descriptors: the one listening on h.Addr.
func (h *Hop) Lock() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("hop %v: finding GoBGP's listener: %w", h.Addr, err)
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		in4, ok := sa.(*unix.SockaddrInet4)
		if !ok || in4.Port != int(h.Addr.Port()) || netip.AddrFrom4(in4.Addr) != h.Addr.Addr() {
			continue
		}
		if err := setMD5(fd, netip.PrefixFrom(netip.IPv4Unspecified(), 0), h.key); err != nil {
			return fmt.Errorf("hop %v: GoBGP's listener: %w (Go >= 1.24 listens with MPTCP, which has no TCP MD5: build with //go:debug multipathtcp=0)", h.Addr, err)
		}
		return nil
	}
	return fmt.Errorf("hop %v: GoBGP does not listen there", h.Addr)
}

// Dial connects to GoBGP over the hop from local (a HopAddr), signed
// with the hop's key.
func (h *Hop) Dial(local netip.Addr) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   hopDialTimeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)),
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setMD5(int(fd), netip.PrefixFrom(h.Addr.Addr(), 32), h.key) }); err != nil {
				return err
			}
			return serr
		},
	}
	c, err := d.Dial("tcp4", h.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("GoBGP on the hop %v: %w", h.Addr, err)
	}
	return c, nil
}

// StartGoBGP starts srv listening on the hop only (g's ListenPort and
// ListenAddresses are set here) and locks the hop.
func StartGoBGP(ctx context.Context, srv *server.BgpServer, g *api.Global) (*Hop, error) {
	for attempt := 1; ; attempt++ {
		h, err := ProbeHop()
		if err != nil {
			return nil, err
		}
		g.ListenPort, g.ListenAddresses = int32(h.Addr.Port()), []string{HopListen.String()}
		err = srv.StartBgp(ctx, &api.StartBgpRequest{Global: g})
		if err == nil {
			if err := h.Lock(); err != nil {
				srv.StopBgp(context.Background(), &api.StopBgpRequest{})
				return nil, err
			}
			return h, nil
		}
		// The probed port may have been taken meanwhile.
		if attempt == 3 || ctx.Err() != nil {
			return nil, fmt.Errorf("GoBGP on %v: %w", h.Addr, err)
		}
	}
}
