package config

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	tests := []struct {
		name    string
		in      string
		want    Cmdline
		params  map[string]string // subset that must be present
		wantErr string
	}{
		{name: "empty", in: "", want: Cmdline{}},
		{name: "typical", in: "BOOT_IMAGE=/vmlinuz console=ttyS0,115200 panic=-1 weft.config=http://10.0.2.2:8080/node1/ weft.debug quiet\n",
			want:   Cmdline{ConfigURL: "http://10.0.2.2:8080/node1/", Debug: true},
			params: map[string]string{"console": "ttyS0,115200", "quiet": "", "panic": "-1"}},
		{name: "ironic", in: "ipa-api-url=http://192.0.2.5:6385 BOOTIF=01-52-54-00-AB-CD-EF ipa-inspection-callback-url=http://x/v1/continue",
			want: Cmdline{IPAAPIURL: "http://192.0.2.5:6385", BootIF: mac("52:54:00:ab:cd:ef")}},
		{name: "underscore spelling", in: "ipa_api_url=https://ironic:6385", want: Cmdline{IPAAPIURL: "https://ironic:6385"}},
		{name: "bootif colons", in: "BOOTIF=52:54:00:12:34:56", want: Cmdline{BootIF: mac("52:54:00:12:34:56")}},
		{name: "quotes", in: `weft.config="http://h/a b/" dyndbg="file x.c +p" "weft.debug=1"`,
			want: Cmdline{ConfigURL: "http://h/a b/", Debug: true}, params: map[string]string{"dyndbg": "file x.c +p"}},
		{name: "unterminated quote", in: `a="b c`, params: map[string]string{"a": "b c"}},
		{name: "last wins", in: "weft.debug=1 weft.debug=0 x=1 x=2", want: Cmdline{Debug: false}, params: map[string]string{"x": "2"}},
		{name: "debug words", in: "weft.debug=on", want: Cmdline{Debug: true}},
		{name: "fastpath", in: "weft.fastpath weft.debug=0", want: Cmdline{FastPath: true}},
		{name: "fastpath off", in: "weft.fastpath=1 weft.fastpath=off", want: Cmdline{}},
		{name: "tabs and newlines", in: "a=1\tb=2\n", params: map[string]string{"a": "1", "b": "2"}},
		{name: "init args", in: "ro -- weft.debug", want: Cmdline{Debug: true}, params: map[string]string{"--": "", "ro": ""}},
		{name: "file url", in: "weft.config=file:///etc/weft.yaml", want: Cmdline{ConfigURL: "file:///etc/weft.yaml"}},
		{name: "ca pin", in: "weft.config=https://10.0.2.2:80/ weft.ca=sha256:00ff", want: Cmdline{ConfigURL: "https://10.0.2.2:80/", CA: "sha256:00ff"}},
		{name: "bad bootif type", in: "BOOTIF=20-52-54-00-12-34-56 weft.debug", want: Cmdline{Debug: true}, wantErr: "BOOTIF: \"20-52-54-00-12-34-56\": hardware type 20 is not Ethernet"},
		{name: "bad bootif", in: "BOOTIF=01-zz", wantErr: "BOOTIF:"},
		{name: "bad url scheme", in: "weft.config=tftp://x/y", wantErr: "weft.config: \"tftp://x/y\": want an http://, https:// or file:// URL"},
		{name: "bad url", in: "weft.config=http://", wantErr: "has no host"},
		{name: "bad debug", in: "weft.debug=maybe", wantErr: "weft.debug: \"maybe\""},
		{name: "several errors keep the rest", in: "weft.debug=maybe BOOTIF=x ipa-api-url=http://i",
			want: Cmdline{IPAAPIURL: "http://i"}, wantErr: "BOOTIF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCmdline(tc.in)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			params := got.Params
			got.Params = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			for k, v := range tc.params {
				if pv, ok := params[k]; !ok || pv != v {
					t.Errorf("Params[%q] = %q, %v; want %q", k, pv, ok, v)
				}
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 weft.config=http://10.0.2.2/ weft.debug BOOTIF=01-52-54-00-12-34-56")
	f.Add(`a="b c" "d=e f" ipa-api-url=http://x`)
	f.Add(`"`)
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := ParseCmdline(s)
		if c.Params == nil {
			t.Fatal("nil Params")
		}
		if c.BootIF != nil && len(c.BootIF) != 6 {
			t.Fatalf("BootIF %v", c.BootIF)
		}
		for k := range c.Params {
			// Quotes can put white space into a key, as in the
			// kernel; they never remain in it.
			if k == "" || strings.Contains(k, `"`) {
				t.Fatalf("bad key %q", k)
			}
		}
	})
}
