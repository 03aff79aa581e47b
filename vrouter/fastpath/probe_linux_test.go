package fastpath

import (
	"testing"

	"github.com/weftnet/weft/internal/testrig/testenv"
)

// TestProbe: on this kernel the probe finds everything the programs need,
// and its test run of bpf_skb_adjust_room tells a flag the kernel refuses
// (BPF_F_ADJ_ROOM_DECAP_L4_UDP, 1<<10, newer than any released Linux when
// this was written; trap 2 of the feasibility study) from those it takes.
func TestProbe(t *testing.T) {
	testenv.RequireRoot(t)
	notes, err := Probe()
	for _, n := range notes {
		t.Log(n)
	}
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if err := probeAdjustRoom(-32, adjFixedGSO|1<<10); err == nil {
		t.Log("this kernel takes BPF_F_ADJ_ROOM_DECAP_L4_UDP: no refused flag left to probe with")
	} else {
		t.Logf("a refused flag: %v", err)
	}
}
