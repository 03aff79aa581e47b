package packet

import "testing"

func TestParseEncap(t *testing.T) {
	for _, e := range []Encap{EncapMPLSoUDP, EncapMPLSoGRE, EncapVXLAN} {
		if got, err := ParseEncap(e.String()); err != nil || got != e {
			t.Errorf("%v: %v %v", e, got, err)
		}
	}
	if _, err := ParseEncap("none"); err == nil {
		t.Error("none accepted")
	}
	if Encap(9).String() != "encap(9)" || Encap(9).Overhead(false) != 0 {
		t.Error("unknown encap")
	}
}
