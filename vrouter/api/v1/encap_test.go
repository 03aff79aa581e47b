package vrouterv1

import (
	"testing"

	"github.com/weftnet/weft/vrouter/packet"
)

// TestEncapPacket: every encapsulation the vRouter speaks has an API name
// and back; the API's zero value and unknown values name none.
func TestEncapPacket(t *testing.T) {
	for e, api := range map[packet.Encap]Encap{
		packet.EncapMPLSoUDP: Encap_ENCAP_MPLSOUDP, packet.EncapMPLSoGRE: Encap_ENCAP_MPLSOGRE, packet.EncapVXLAN: Encap_ENCAP_VXLAN,
	} {
		if got := EncapFromPacket(e); got != api {
			t.Errorf("EncapFromPacket(%v) = %v, want %v", e, got, api)
		}
		if got := api.Packet(); got != e {
			t.Errorf("%v.Packet() = %v, want %v", api, got, e)
		}
	}
	if got := EncapFromPacket(packet.EncapNone); got != Encap_ENCAP_UNSPECIFIED {
		t.Errorf("EncapFromPacket(none) = %v", got)
	}
	for _, api := range []Encap{Encap_ENCAP_UNSPECIFIED, 99} {
		if got := api.Packet(); got != packet.EncapNone {
			t.Errorf("%v.Packet() = %v, want none", api, got)
		}
	}
}
