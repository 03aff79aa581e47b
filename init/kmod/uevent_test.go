package kmod

import (
	"strings"
	"testing"
)

func TestParseUevent(t *testing.T) {
	tests := []struct {
		name, msg              string
		action, devpath, alias string
		wantErr                string
	}{
		{
			name:   "pci add",
			msg:    "add@/devices/pci0000:00/0000:00:03.0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:03.0\x00SUBSYSTEM=pci\x00MODALIAS=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\x00SEQNUM=1234\x00",
			action: "add", devpath: "/devices/pci0000:00/0000:00:03.0", alias: "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		},
		{
			name:   "header only",
			msg:    "remove@/devices/virtual/net/x",
			action: "remove", devpath: "/devices/virtual/net/x",
		},
		{
			name:   "value with =",
			msg:    "change@/d\x00ACTION=change\x00X=a=b\x00",
			action: "change", devpath: "/d",
		},
		{name: "udev", msg: "libudev\x00\xfe\xed\xca\xfe", wantErr: "udev message"},
		{name: "no @", msg: "add\x00ACTION=add", wantErr: "not ACTION@DEVPATH"},
		{name: "empty", msg: "", wantErr: "not ACTION@DEVPATH"},
		{name: "bad field", msg: "add@/d\x00garbage\x00", wantErr: `field 1 "garbage"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseUevent([]byte(tt.msg))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Action != tt.action || ev.DevPath != tt.devpath || ev.Modalias() != tt.alias {
				t.Errorf("got %+v", ev)
			}
		})
	}
}

func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00ACTION=add\x00MODALIAS=pci:v1\x00"))
	f.Add([]byte("libudev\x00"))
	f.Add([]byte("@\x00=\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseUevent(b)
		if err == nil && (ev.Action == "" || ev.DevPath == "") {
			t.Fatalf("accepted %q with empty action or devpath: %+v", b, ev)
		}
	})
}
