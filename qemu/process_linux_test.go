package qemu

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParseProcNetTCP(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C41 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
`
	for ap, want := range map[string]bool{
		"127.0.0.1:40000": true,  // listening on loopback
		"127.0.0.1:40001": false, // established, not listening
		"127.0.0.1:22":    true,  // wildcard listener
		"127.0.0.1:40002": false,
	} {
		got, err := parseProcNetTCP(bufio.NewScanner(strings.NewReader(table)), netip.MustParseAddrPort(ap))
		if err != nil || got != want {
			t.Errorf("%s: listening = %v, %v; want %v", ap, got, err, want)
		}
	}
}

func TestListeningLive(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	if ok, err := listening(ap); !ok || err != nil {
		t.Fatalf("listening(%s) = %v, %v while listening", ap, ok, err)
	}
	l.Close()
	if ok, err := listening(ap); ok || err != nil {
		t.Fatalf("listening(%s) = %v, %v after close", ap, ok, err)
	}
}
