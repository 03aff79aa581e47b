package config

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"strings"
	"testing"
)

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestClassifyUserData(t *testing.T) {
	weft, err := os.ReadFile("testdata/weft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want UserDataKind
	}{
		{"nil", nil, UserDataNone},
		{"blank", []byte(" \n\t\n"), UserDataNone},
		{"weft", weft, UserDataWeft},
		{"weft gzip", gz(t, weft), UserDataWeft},
		{"weft flow style", []byte(`{"bgp": {"asn": 1}}`), UserDataWeft},
		{"weft with typo elsewhere", []byte("networks: []\nnodee: {}\n"), UserDataWeft},
		{"weft with syntax error", []byte("bgp:\n  asn: [\n"), UserDataWeft},
		{"weft with BOM", append([]byte("\xef\xbb\xbf"), weft...), UserDataWeft},
		{"cloud-config", []byte("#cloud-config\npackages: [nginx]\n"), UserDataCloudConfig},
		{"cloud-config with keys like ours", []byte("#cloud-config\nnode: {}\n"), UserDataCloudConfig},
		{"cloud-config upper, indented", []byte("\n  #Cloud-Config\n"), UserDataCloudConfig},
		{"cloud-config gzip", gz(t, []byte("#cloud-config\n{}")), UserDataCloudConfig},
		{"include", []byte("#include\nhttp://x/y\n"), UserDataCloudConfig},
		{"boothook", []byte("#cloud-boothook\necho hi\n"), UserDataCloudConfig},
		{"script", []byte("#!/bin/sh\necho hi\n"), UserDataScript},
		{"mime", []byte("Content-Type: multipart/mixed; boundary=\"==x==\"\nMIME-Version: 1.0\n\n--==x==\n"), UserDataUnknown},
		{"mime version first", []byte("MIME-Version: 1.0\n"), UserDataUnknown},
		{"other yaml", []byte("foo: bar\n"), UserDataUnknown},
		{"ignition json", []byte(`{"ignition": {"version": "3.0.0"}}`), UserDataUnknown},
		{"binary", []byte{0, 1, 2, 3}, UserDataUnknown},
		{"broken gzip", []byte{0x1f, 0x8b, 8, 0, 0}, UserDataUnknown},
		{"indented key is not top level", []byte("x:\n  node: 1\n"), UserDataUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyUserData(tc.in); got != tc.want {
				t.Errorf("ClassifyUserData = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeUserDataBomb(t *testing.T) {
	big := gz(t, make([]byte, MaxUserData+1))
	if _, err := DecodeUserData(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("gzip bomb: %v", err)
	}
}

func TestBundleConfig(t *testing.T) {
	weft, _ := os.ReadFile("testdata/weft.yaml")
	tests := []struct {
		name    string
		b       *Bundle
		is      error
		wantErr string
	}{
		{"weft", &Bundle{Source: "s", UserData: weft}, nil, ""},
		{"weft gzip", &Bundle{Source: "s", UserData: gz(t, weft)}, nil, ""},
		{"nil bundle", nil, ErrNotFound, "no bundle"},
		{"no user_data", &Bundle{Source: "config-drive /dev/vda"}, ErrNotFound, "config-drive /dev/vda: no user_data"},
		{"cloud-config", &Bundle{Source: "s", UserData: []byte("#cloud-config\n")}, ErrNotWeft, "s: user_data is #cloud-config, not weft.yaml"},
		{"script", &Bundle{Source: "s", UserData: []byte("#!/bin/sh\n")}, ErrNotWeft, "script"},
		{"mime", &Bundle{Source: "s", UserData: []byte("Content-Type: multipart/mixed\n")}, ErrNotWeft, "not weft.yaml"},
		{"invalid weft", &Bundle{Source: "s", UserData: []byte("bgp: {asn: 0}\n")}, nil, "s: user_data: bgp.asn (line 1): 0 is out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.b.Config()
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("Config: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			var fe *FieldError
			if tc.name == "invalid weft" && !errors.As(err, &fe) {
				t.Errorf("no FieldError in %v", err)
			}
		})
	}
}

func TestUserDataKindString(t *testing.T) {
	for k, want := range map[UserDataKind]string{UserDataNone: "none", UserDataWeft: "weft.yaml", UserDataCloudConfig: "cloud-init", UserDataScript: "script", UserDataUnknown: "unknown", 9: "UserDataKind(9)"} {
		if k.String() != want {
			t.Errorf("%d: %q", int(k), k.String())
		}
	}
}
