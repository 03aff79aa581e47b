package config

import (
	"strings"
	"testing"
)

func TestParseVendorData2(t *testing.T) {
	v, err := ParseVendorData2([]byte(`{"other": {"x": 1}, "weft": {"openstack": {"applicationCredential": {"id": "i", "secret": "s"}}}}`))
	if err != nil || v.ApplicationCredential != (ApplicationCredential{ID: "i", Secret: "s"}) || v.Password != nil {
		t.Fatalf("application credential: %+v, %v", v, err)
	}
	j := OpenStackJoin{AuthURL: "http://k/v3", VendorData2: true, MatchVNI: true}
	if got := j.WithVendorData2(v); got.ApplicationCredential.ID != "i" || got.VendorData2 || !got.MatchVNI || got.AuthURL != j.AuthURL {
		t.Errorf("WithVendorData2: %+v", got)
	}
	v, err = ParseVendorData2([]byte(`{"weft": {"openstack": {"password": {"username": "u", "password": "p", "project": "x"}}}}`))
	if err != nil || v.Password == nil || v.Password.Username != "u" || v.Password.Project != "x" {
		t.Fatalf("password: %+v, %v", v, err)
	}
	for doc, want := range map[string]string{
		`{"other": {}}`: `no "weft"`,
		`{"weft": {"openstack": {"password": {"username": "u"}}}}`: "want applicationCredential",
		`{"weft": `: "vendor_data2.json: line 1 column 10",
	} {
		if _, err := ParseVendorData2([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", doc, err, want)
		}
	}
}
