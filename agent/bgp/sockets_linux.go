package bgp

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// md5Counters are the kernel's TCP MD5 drop counters (TcpExt in
// /proc/net/netstat) of the network namespace: a wrong password shows
// nowhere else, since the kernel silently drops the segments.
type md5Counters struct {
	notFound   uint64 // we have a key, the segment was unsigned
	unexpected uint64 // we have no key, the segment was signed
	failure    uint64 // both have keys, the signature does not match
}

func readMD5Counters() (md5Counters, bool) {
	f, err := os.Open("/proc/net/netstat")
	if err != nil {
		return md5Counters{}, false
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		var c md5Counters
		for i := 1; i < len(fields) && i < len(names); i++ {
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				continue
			}
			switch names[i] {
			case "TCPMD5NotFound":
				c.notFound = v
			case "TCPMD5Unexpected":
				c.unexpected = v
			case "TCPMD5Failure":
				c.failure = v
			}
		}
		return c, true
	}
	return md5Counters{}, false
}

// setMD5 sets the TCP MD5 key (RFC 2385) for peer a on socket fd; an
// empty password removes it. On a listener the key applies to the
// connections a will open.
func setMD5(fd int, a netip.Addr, password string) error {
	if len(password) > unix.TCP_MD5SIG_MAXKEYLEN {
		return fmt.Errorf("TCP MD5 password longer than %d bytes", unix.TCP_MD5SIG_MAXKEYLEN)
	}
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
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		return fmt.Errorf("setsockopt TCP_MD5SIG: %w", err)
	}
	return nil
}

// setTTL sets the unicast TTL (hop limit) of socket fd, connected or to
// connect to a.
func setTTL(fd int, a netip.Addr, ttl int) error {
	if a.Is4() {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
}
