package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/weftnet/weft/internal/testrig/lab"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
)

// TestSetUnderlay: a new underlay MTU in a running vRouter. Ports that
// derive their MTU from it (red) follow, in the endpoint's namespace and
// in Dump; a port with its own (blue, 1400) keeps it; the path-MTU
// threshold is the new MTU at once; an MTU out of 576..65535 is refused.
func TestSetUnderlay(t *testing.T) { lab.Modes(t, setUnderlay) }

func setUnderlay(t *testing.T, m lab.Mode) {
	tn := newTenants(t, "wtsu", m)
	tn.remote(t, vrouterv1.Encap_ENCAP_MPLSOUDP)
	p := proto.CloneOf(dumpPorts(t, tn.a)[portBlue])
	p.Mtu, p.Mac = 1400, nil
	apply(t, tn.a, putPort(p))
	apply(t, tn.a, portNH(2, portBlue, netBlue)) // the port's MAC may have changed

	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	for _, bad := range []int{575, 65536} {
		if _, err := tn.a.Client.SetUnderlayMTU(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("underlay mtu %d: %v, want InvalidArgument", bad, err)
		}
	}
	const mtu = 1300
	endpoint, err := tn.a.Client.SetUnderlayMTU(ctx, mtu)
	if want := mtu - packet.OverheadVXLAN4; err != nil || endpoint != want {
		t.Fatalf("SetUnderlayMTU(%d): endpoint mtu %d, %v; want %d", mtu, endpoint, err, want)
	}
	info, err := tn.a.Client.Info(ctx, &vrouterv1.InfoRequest{})
	if err != nil || info.GetUnderlay().GetMtu() != mtu {
		t.Fatalf("info: %v %v, want underlay mtu %d", info, err, mtu)
	}
	ports := dumpPorts(t, tn.a)
	for id, want := range map[uint32]int{portRed: endpoint, portBlue: 1400} {
		if got := int(ports[id].GetMtu()); got != want {
			t.Errorf("port %d: dump says mtu %d, want %d", id, got, want)
		}
	}
	if out, _ := tn.redA.Try(2*time.Second, "ip", "link", "show", "eth0"); !strings.Contains(out, "mtu 1250 ") {
		t.Errorf("red-a's eth0 after the underlay went to %d:\n%s", mtu, out)
	}
	if out, _ := tn.bluA.Try(2*time.Second, "ip", "link", "show", "eth0"); !strings.Contains(out, "mtu 1400 ") {
		t.Errorf("blue-a's eth0 (its own mtu 1400) after the underlay went to %d:\n%s", mtu, out)
	}
	// 1328 bytes fit blue-a's 1400 and the old 1500-byte path, not 1300.
	out, _ := tn.bluA.Try(10*time.Second, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1300", "10.1.0.3")
	if fits := mtu - packet.OverheadMPLSoUDP4; !strings.Contains(out, "mtu = 1268") && !strings.Contains(out, "mtu=1268") {
		t.Errorf("DF ping of 1328 bytes over MPLSoUDP at underlay mtu %d: want ICMP frag-needed with mtu %d, got:\n%s", mtu, fits, out)
	}
}
