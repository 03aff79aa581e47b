package bgpguard

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Socket options every relay needs, on its real sockets and on the hop.

// SetMD5 sets the TCP MD5 key (RFC 2385) for peer a on socket fd; an
// empty password removes it. On a listener the key applies to the
// connections a will open.
func SetMD5(fd int, a netip.Addr, password string) error {
	return setMD5(fd, netip.PrefixFrom(a, a.BitLen()), password)
}

func setMD5(fd int, p netip.Prefix, password string) error {
	if len(password) > unix.TCP_MD5SIG_MAXKEYLEN {
		return fmt.Errorf("TCP MD5 password longer than %d bytes", unix.TCP_MD5SIG_MAXKEYLEN)
	}
	a := p.Addr()
	var sig unix.TCPMD5Sig
	if a.Is4() {
		sig.Addr.Family = unix.AF_INET
		b := a.As4()
		copy(sig.Addr.Data[2:6], b[:]) // after the port, as in sockaddr_in
	} else {
		sig.Addr.Family = unix.AF_INET6
		b := a.As16()
		copy(sig.Addr.Data[6:22], b[:]) // after port and flow info, as in sockaddr_in6
	}
	sig.Keylen = uint16(len(password))
	copy(sig.Key[:], password)
	opt := unix.TCP_MD5SIG
	if p.Bits() != a.BitLen() {
		opt = unix.TCP_MD5SIG_EXT
		sig.Flags = unix.TCP_MD5SIG_FLAG_PREFIX
		sig.Prefixlen = uint8(p.Bits())
	}
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, opt, &sig); err != nil {
		return fmt.Errorf("setsockopt TCP_MD5SIG: %w", err)
	}
	return nil
}

// SetTTL sets the unicast TTL (hop limit) of socket fd, connected or to
// connect to a.
func SetTTL(fd int, a netip.Addr, ttl int) error {
	if a.Is4() {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
}

// Listen opens a relay's listener on addr, IPv4 or IPv6 only, so that
// 0.0.0.0 and :: can both be had and each takes the MD5 keys of its
// family. It is plain TCP unless GODEBUG says otherwise: Go's MPTCP
// default for listeners since 1.24 takes no MD5 keys.
func Listen(addr netip.Addr, port int) (*net.TCPListener, error) {
	network := "tcp6"
	if addr.Unmap().Is4() {
		network, addr = "tcp4", addr.Unmap()
	}
	ln, err := net.Listen(network, netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// ListenerMD5 sets (or, with an empty password, removes) the key for a
// prefix of peers on ln, when ln is of the prefix's family.
func ListenerMD5(ln *net.TCPListener, p netip.Prefix, password string) error {
	la, ok := ln.Addr().(*net.TCPAddr)
	if !ok || la.AddrPort().Addr().Unmap().Is4() != p.Addr().Is4() {
		return nil
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setMD5(int(fd), p, password) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("listener %v: %w", ln.Addr(), serr)
	}
	return nil
}
