// Go 1.24+ listeners use MPTCP, on which the kernel refuses TCP MD5 keys:
// the test binary needs the same setting as cmd/weft.
//go:debug multipathtcp=0

package controller

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// As root, the test binary runs itself again in a network namespace of its
// own (CLONE_NEWNET): the reflector test adds addresses freely (GoBGP opens
// its sockets on goroutines no test can pin to a namespace), and the
// browser test's chromium can reach nothing but the test's loopback
// server. The namespace vanishes with the process.
const envInNetns = "WEFT_CONTROLLER_TEST_NETNS"

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(envInNetns) == "" {
		os.Exit(reexecInNetns())
	}
	if os.Getenv(envInNetns) != "" {
		if lo, err := netlink.LinkByName("lo"); err == nil {
			netlink.LinkSetUp(lo)
		}
	}
	os.Exit(m.Run())
}

func reexecInNetns() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInNetns+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: unix.SIGKILL}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "controller tests: re-running in a network namespace: %v\n", err)
		return 1
	}
	return 0
}

// baseConfig is a valid fleet weft.yaml, inline (indented under config:).
const baseConfig = `config:
  bgp:
    asn: 64512
    controllers:
      - {address: 10.0.2.2}
`

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
