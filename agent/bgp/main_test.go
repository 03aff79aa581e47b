// Go 1.24+ listeners use MPTCP, on which the kernel refuses TCP MD5 keys:
// test binaries need the same setting as cmd/weft.
//go:debug multipathtcp=0

package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"golang.org/x/sys/unix"
)

// The integration tests need speakers with addresses of their own, and
// GoBGP opens its sockets on goroutines that no test can pin to a network
// namespace. So, as root, the test binary runs itself again in a fresh
// network namespace (CLONE_NEWNET) where it may add addresses freely; the
// reflectors and the child speakers get named namespaces of their own,
// bridged to it. The namespace vanishes with the process.
const (
	envInNetns = "WEFT_BGP_TEST_NETNS" // set in the re-executed binary
	envChild   = "WEFT_BGP_TEST_CHILD" // a childSpec: run one speaker, no tests
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envChild); spec != "" {
		os.Exit(runChild(spec))
	}
	if os.Geteuid() == 0 && os.Getenv(envInNetns) == "" {
		os.Exit(reexecInNetns())
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
		fmt.Fprintf(os.Stderr, "agent/bgp tests: re-running in a network namespace: %v\n", err)
		return 1
	}
	return 0
}

// childSpec is a speaker for a child process: the graceful restart test
// kills it with SIGKILL, the benchmark measures the receiver without the
// sender's heap.
type childSpec struct {
	Config Config
	// Generate more routes after the sessions are up: N VPNv4 (or IPv4
	// unicast) routes from generatedRoute.
	Generate       int
	GenerateFamily Family
	// RawGoBGP runs GoBGP itself, without this package's guard, peering
	// with Config.Peers[0] as the speaker did before it had one: how
	// TestGoBGPPanicsOnShortVPNPrefix shows what the guard is for.
	RawGoBGP bool
}

// runChild runs a speaker and reports on stdout: "READY" once started,
// "UP" once every peer is established, "ANNOUNCED n seconds" after
// Generate; then it waits to be killed.
func runChild(spec string) int {
	var c childSpec
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	c.Config.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("speaker", "child "+c.Config.RouterID.String())
	if c.RawGoBGP {
		return runRawGoBGP(c.Config)
	}
	s, err := Start(context.Background(), c.Config)
	if err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	fmt.Println("READY")
	for {
		up := 0
		ps := s.Peers()
		for _, p := range ps {
			if p.State == StateEstablished {
				up++
			}
		}
		if up == len(ps) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("UP")
	if c.Generate > 0 {
		t0 := time.Now()
		for i := range c.Generate {
			if err := s.Announce(generatedRoute(c.Config.RouterID, c.GenerateFamily, i)); err != nil {
				fmt.Println("ERROR", err)
				return 2
			}
		}
		fmt.Println("ANNOUNCED", c.Generate, time.Since(t0).Seconds())
	}
	// Until SIGKILL, or the parent closing stdin.
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// runRawGoBGP is GoBGP with the first peer of c configured on it
// directly (it dials the peer itself), and nothing of this package in
// between; it reports like runChild.
func runRawGoBGP(c Config) int {
	c, err := c.normalize()
	if err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	srv := server.NewBgpServer(server.LoggerOption(speakerLog(c.Logger, newDiagnostics(), nil)))
	go srv.Serve()
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: c.ASN, RouterId: c.RouterID.String(), ListenPort: -1}}); err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	p := c.Peers[0]
	ap := c.apiPeer(p, p.Address, false)
	ap.Transport = &api.Transport{RemotePort: uint32(p.Port), LocalAddress: p.LocalAddress.String()}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	fmt.Println("READY")
	// Until killed (stdin may be /dev/null here), or the test ends.
	time.Sleep(10 * time.Minute)
	return 0
}
