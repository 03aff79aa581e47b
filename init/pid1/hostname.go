package pid1

import (
	"fmt"
	"net"
	"strings"

	"github.com/weftnet/weft/config"
)

// chooseHostname picks the node's hostname: the config's node.hostname
// unless empty or "auto", else the metadata's hostname (its first label: Nova
// hands out "name.novalocal") or instance name, else "weft-" and the last
// three bytes of the first NIC's MAC, so that nodes booted from the same
// image still differ. source says which one won; a candidate that is not a
// valid hostname is passed over and named in notes.
func chooseHostname(fromConfig string, md *config.MetaData, mac net.HardwareAddr) (name, source string, notes []string) {
	try := func(candidate, src string) bool {
		if candidate == "" {
			return false
		}
		if err := validHostname(candidate); err != nil {
			notes = append(notes, fmt.Sprintf("%s %q: %v", src, candidate, err))
			return false
		}
		name, source = candidate, src
		return true
	}
	if fromConfig != "auto" && try(fromConfig, "config node.hostname") {
		return name, source, notes
	}
	if md != nil {
		if try(strings.ToLower(strings.SplitN(md.Hostname, ".", 2)[0]), "meta_data hostname") {
			return name, source, notes
		}
		if try(sanitizeLabel(md.Name), "meta_data name") {
			return name, source, notes
		}
	}
	if len(mac) >= 3 {
		return fmt.Sprintf("weft-%02x%02x%02x", mac[len(mac)-3], mac[len(mac)-2], mac[len(mac)-1]), "mac " + mac.String(), notes
	}
	return "weft", "default", notes
}

// validHostname accepts RFC 1123 names of at most 64 bytes (the kernel's limit).
func validHostname(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("longer than 64 bytes")
	}
	for i, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %d: empty or longer than 63 bytes", i)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %d: starts or ends with '-'", i)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %d: byte %d (%q) is not a letter, digit or '-'", i, j, c)
			}
		}
	}
	return nil
}

// sanitizeLabel turns an instance display name ("DB Node 1") into a label
// ("db-node-1"); empty when nothing usable remains.
func sanitizeLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	return out
}
