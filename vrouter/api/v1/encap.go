package vrouterv1

import "github.com/weftnet/weft/vrouter/packet"

// This file is hand-written: the one place where the API's encapsulation
// enum and the wire vocabulary's (packet.Encap) meet, so that the vRouter's
// server and its clients convert the same way.

// EncapFromPacket names e in the API; ENCAP_UNSPECIFIED for
// packet.EncapNone or a value the API does not know.
func EncapFromPacket(e packet.Encap) Encap {
	switch e {
	case packet.EncapMPLSoUDP:
		return Encap_ENCAP_MPLSOUDP
	case packet.EncapMPLSoGRE:
		return Encap_ENCAP_MPLSOGRE
	case packet.EncapVXLAN:
		return Encap_ENCAP_VXLAN
	}
	return Encap_ENCAP_UNSPECIFIED
}

// Packet is the encapsulation e names; packet.EncapNone for
// ENCAP_UNSPECIFIED or a value this build does not know.
func (e Encap) Packet() packet.Encap {
	switch e {
	case Encap_ENCAP_MPLSOUDP:
		return packet.EncapMPLSoUDP
	case Encap_ENCAP_MPLSOGRE:
		return packet.EncapMPLSoGRE
	case Encap_ENCAP_VXLAN:
		return packet.EncapVXLAN
	}
	return packet.EncapNone
}
