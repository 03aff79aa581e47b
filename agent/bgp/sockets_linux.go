package bgp

import (
	"bufio"
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

// sessionSocket is a BGP session's TCP connection seen from this end.
type sessionSocket struct {
	local, remote netip.Addr
}

// shutdownSessions shuts down (FIN, both directions) every TCP socket of
// this process connecting one of the given address pairs, and returns how
// many it found. It is how Abandon makes a session end the way it would if
// the process died: with no NOTIFICATION, which GoBGP would otherwise send
// on the way out. shutdown(2) leaves the descriptor to its owner, so Go's
// poller is not confused; GoBGP's next read and write simply fail.
func shutdownSessions(want []sessionSocket) int {
	if len(want) == 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
			continue
		}
		la, ok1 := sockaddrAddr(unix.Getsockname(fd))
		ra, ok2 := sockaddrAddr(unix.Getpeername(fd))
		if !ok1 || !ok2 {
			continue // a listener, or not connected
		}
		for _, w := range want {
			if w.remote == ra && w.local == la {
				if unix.Shutdown(fd, unix.SHUT_RDWR) == nil {
					n++
				}
				break
			}
		}
	}
	return n
}

func sockaddrAddr(sa unix.Sockaddr, err error) (netip.Addr, bool) {
	if err != nil {
		return netip.Addr{}, false
	}
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(v.Addr), true
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(v.Addr).Unmap(), true
	}
	return netip.Addr{}, false
}
