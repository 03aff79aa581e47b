package qemu

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts QEMU in its own process group, so that Stop reaches
// whatever it spawned and a terminal's Ctrl-C reaches only us (we stop QEMU
// cleanly), and kills it should this process die without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

// listening reports whether a TCP socket listens on ap (an IPv4 address),
// from /proc/net/tcp: a wildcard listener counts.
func listening(ap netip.AddrPort) (bool, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false, err
	}
	defer f.Close()
	return parseProcNetTCP(bufio.NewScanner(f), ap)
}

// parseProcNetTCP scans /proc/net/tcp lines: "sl local rem st …", local as
// hex "0100007F:9C40" (the address in host byte order, little-endian here),
// st 0A for LISTEN.
func parseProcNetTCP(sc *bufio.Scanner, ap netip.AddrPort) (bool, error) {
	want := ap.Addr().As4()
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		addr, port, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil || uint16(p) != ap.Port() {
			continue
		}
		a, err := strconv.ParseUint(addr, 16, 32)
		if err != nil {
			continue
		}
		got := [4]byte{byte(a), byte(a >> 8), byte(a >> 16), byte(a >> 24)}
		if got == want || got == [4]byte{} {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("/proc/net/tcp: %w", err)
	}
	return false, nil
}
