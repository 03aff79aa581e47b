package routetarget

import (
	"net/netip"
	"testing"
)

// TestFRRDisplayPrefix: FRR shows route targets as "RT:65000:100" (issue
// 15, finding 10); pasted into weft.yaml, that reads as "target:" does.
func TestFRRDisplayPrefix(t *testing.T) {
	for in, want := range map[string]RouteTarget{
		"RT:65000:100":     {Type: AS2, ASN: 65000, Local: 100},
		"rt:4200000000:5":  {Type: AS4, ASN: 4200000000, Local: 5},
		"RT:192.0.2.1:7":   {Type: IPv4, Addr: mustAddr(t, "192.0.2.1"), Local: 7},
		"target:65000:100": {Type: AS2, ASN: 65000, Local: 100},
		"TARGET:65000L:9":  {Type: AS4, ASN: 65000, Local: 9},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"RT:", "RT:target:1:1", "target:RT:1:1", "RTX:1:1"} {
		if rt, err := Parse(bad); err == nil {
			t.Errorf("%q parsed as %+v", bad, rt)
		}
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
