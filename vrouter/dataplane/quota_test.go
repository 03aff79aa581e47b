package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/vrouter/flow"
	"github.com/weftnet/weft/vrouter/packet"
)

// TestFlowQuotaIsolatesTenants: a tenant that opens a million flows
// (driven straight into the engine's flow table, in a VRF of its own, each
// allowed by policy so that each takes two entries) cannot stop another
// tenant's new flow: port A's query to port C (network 100 to 200, UDP 53)
// crosses the real forwarding path, is cached, and C's reply reaches A.
// Before per-VRF quotas the noisy tenant filled the table, the query was
// not cached and its reply was denied.
func TestFlowQuotaIsolatesTenants(t *testing.T) {
	b := newBed(t, false)
	psC := b.twoNetworks(t)
	b.pa.keep = true
	pc := psC.io.(*memPort)
	tab := b.e.Flows()

	const noisyVRF, flows = 7, 1 << 20
	now := time.Now().UnixNano()
	src := netip.MustParseAddr("10.1.0.50").As4()
	for i := range flows {
		s := src
		s[2], s[3] = byte(i>>16), byte(i>>8)
		ft := packet.FiveTuple{Src: netip.AddrFrom4(s), Dst: addrC, Proto: packet.ProtoUDP, SrcPort: uint16(i), DstPort: 53}
		if ok, _ := tab.Decide(flow.Key{VRF: noisyVRF, Tuple: ft}, net1, net2, 0, 64, now); !ok {
			t.Fatalf("noisy flow %d denied: the policy allows it", i)
		}
	}
	st := tab.Stats()
	noisy := st.VRFs[noisyVRF]
	t.Logf("after %d noisy flows: %d entries, the noisy VRF %d (quota %d), %d quota hits, %d full",
		flows, st.Entries, noisy.Entries, st.VRFQuota, noisy.QuotaHits, st.Full)
	if noisy.Entries > st.VRFQuota || noisy.QuotaHits == 0 {
		t.Errorf("the noisy VRF holds %d entries, quota %d, %d quota hits", noisy.Entries, st.VRFQuota, noisy.QuotaHits)
	}

	// The other tenant's new flow, through the ports.
	query := udpTo(addrA, addrC, 40000, 53)
	b.send(b.psA, ipFrame(macA, query))
	if got := pc.written(); len(got) != 1 {
		t.Fatalf("the query A → C: port C got %d frames, drops %v", len(got), b.e.Counters().Drops)
	}
	b.send(psC, ipFrame(macC, udpTo(addrC, addrA, 53, 40000)))
	if got := b.pa.written(); len(got) != 1 {
		t.Fatalf("the reply C → A: port A got %d frames, drops %v", len(got), b.e.Counters().Drops)
	}
	st = tab.Stats()
	for _, vrf := range []uint32{vrf1, vrf2} {
		if v := st.VRFs[vrf]; v.Entries != 2 || v.QuotaHits != 0 {
			t.Errorf("VRF %d: %+v, want its flow and reverse cached and no quota hit", vrf, v)
		}
	}
	if st.VRFs[noisyVRF].Entries != noisy.Entries {
		t.Errorf("the noisy VRF went from %d to %d entries", noisy.Entries, st.VRFs[noisyVRF].Entries)
	}
}
