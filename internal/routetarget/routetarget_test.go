package routetarget

import "testing"

// TestRouteTargetRoundTrip: every notation Parse takes comes back from
// String unchanged; malformed ones are refused.
func TestRouteTargetRoundTrip(t *testing.T) {
	for _, s := range []string{"1:0", "65535:4294967295", "65536:65535", "4294967295:1", "10.0.0.1:0", "1L:1", "target:7:7"} {
		rt, err := Parse(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		back, err := Parse(rt.String())
		if err != nil || back != rt {
			t.Errorf("%s -> %s -> %+v, %v", s, rt, back, err)
		}
	}
	for _, s := range []string{"", ":", "1:", ":1", "65536:65536", "4294967296:1", "1.2.3:1", "::1:5", "+1:1", "1:+1", "1.65536:1", "0.0.0.0:1", "x.y:1"} {
		if rt, err := Parse(s); err == nil {
			t.Errorf("%q parsed as %+v", s, rt)
		}
	}
}

// FuzzParse: whatever Parse accepts, String writes back in a form Parse
// reads as the same route target, and the assigned number fits the form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"64512:100", "4200000000:5", "64512L:9", "1.10:100", "192.0.2.1:7", "target:7:7", "0.0.0.0:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rt, err := Parse(s)
		if err != nil {
			return
		}
		if rt.Type != AS2 && rt.Local > 0xffff {
			t.Fatalf("%q: %+v: a 16-bit number in this form", s, rt)
		}
		back, err := Parse(rt.String())
		if err != nil || back != rt {
			t.Fatalf("%q -> %s -> %+v, %v", s, rt, back, err)
		}
	})
}
