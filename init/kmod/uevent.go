package kmod

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Uevent is one kernel uevent as broadcast on NETLINK_KOBJECT_UEVENT:
// "ACTION@DEVPATH\0KEY=VALUE\0...".
type Uevent struct {
	Action  string            // "add", "remove", "change", "bind", ...
	DevPath string            // "/devices/pci0000:00/0000:00:03.0"
	Env     map[string]string // every KEY=VALUE, including ACTION and DEVPATH
}

// Modalias is the MODALIAS= of the event, empty when the device has none.
func (e Uevent) Modalias() string { return e.Env["MODALIAS"] }

// ParseUevent parses a kernel uevent message. Messages that udev
// rebroadcasts ("libudev" header) are rejected: PID 1 listens to the
// kernel only.
func ParseUevent(b []byte) (Uevent, error) {
	if bytes.HasPrefix(b, []byte("libudev\x00")) {
		return Uevent{}, errors.New("uevent: udev message, not from the kernel")
	}
	fields := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	head := string(fields[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok || action == "" || devpath == "" {
		return Uevent{}, fmt.Errorf("uevent: header %q is not ACTION@DEVPATH", truncate(fields[0]))
	}
	ev := Uevent{Action: action, DevPath: devpath, Env: make(map[string]string, len(fields))}
	for i, f := range fields[1:] {
		if len(f) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(f, []byte{'='})
		if !ok || len(k) == 0 {
			return Uevent{}, fmt.Errorf("uevent %s: field %d %q is not KEY=VALUE", head, i+1, truncate(f))
		}
		ev.Env[string(k)] = string(v)
	}
	// The environment is authoritative when present; the header is a
	// summary of it.
	if a := ev.Env["ACTION"]; a != "" {
		ev.Action = a
	}
	if d := ev.Env["DEVPATH"]; d != "" {
		ev.DevPath = d
	}
	return ev, nil
}
