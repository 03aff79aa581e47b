package bgp

import (
	"bufio"
	"os"
	"strconv"
	"strings"
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
