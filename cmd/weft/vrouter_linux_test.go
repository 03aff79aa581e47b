package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/lab"
	"github.com/weftnet/weft/internal/testrig/nettest"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
)

// TestVRouterFollowsDeviceMTU: on an ordinary host, `weft vrouter
// --underlay-dev` follows its interface's MTU as it changes (what a DHCP
// client's renewal with option 26 does), through its control API, as PID 1
// makes it on the appliance; with --mtu the MTU stays fixed.
func TestVRouterFollowsDeviceMTU(t *testing.T) {
	bin := lab.Binary(t)
	host := nettest.New(t, "wft-mtuh")
	peer := nettest.New(t, "wft-mtup")
	nettest.Veth(t, host, "eth0", "192.0.2.10/24", peer, "eth0", "192.0.2.11/24")
	dir := t.TempDir()

	for _, c := range []struct {
		name   string
		args   []string
		follow bool
	}{
		{"follows", nil, true},
		{"fixed", []string{"--mtu", "1500"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			host.SetMTU(t, "eth0", 1500)
			sock := filepath.Join(dir, c.name+".sock")
			host.Start(t, bin, append([]string{"vrouter", "--underlay-dev", "eth0", "--socket", sock, "--encap", "mplsoudp"}, c.args...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			vr, err := client.DialRetry(ctx, sock)
			if err != nil {
				t.Fatalf("vrouter: %v", err)
			}
			defer vr.Close()
			mtu := func() int {
				info, err := vr.Info(ctx, &vrouterv1.InfoRequest{})
				if err != nil {
					t.Fatalf("info: %v", err)
				}
				return int(info.GetUnderlay().GetMtu())
			}
			if got := mtu(); got != 1500 {
				t.Fatalf("underlay mtu %d at start, want eth0's 1500", got)
			}
			host.SetMTU(t, "eth0", 1400)
			// A follower hears the link event at once; 20 s also covers its
			// 10 s resync on a loaded machine. A pinned vRouter is given 3 s
			// to (wrongly) follow the event.
			wait := 20 * time.Second
			if !c.follow {
				wait = 3 * time.Second
			}
			deadline := time.Now().Add(wait)
			for mtu() != 1400 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			got := mtu()
			switch {
			case c.follow && got != 1400:
				t.Fatalf("underlay mtu %d after eth0 went to 1400: the vRouter did not follow", got)
			case !c.follow && got != 1500:
				t.Fatalf("underlay mtu %d with --mtu 1500: the vRouter followed eth0 though pinned", got)
			}
		})
	}
}
