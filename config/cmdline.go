package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Cmdline is what Weft reads from the kernel command line.
type Cmdline struct {
	ConfigURL string // weft.config=<url>
	CA        string // weft.ca=sha256:<hex>, the controller's CA pin (fleetapi.ParsePin reads it)
	Debug     bool   // weft.debug (bare or =1/true)
	// FastPath starts the vRouter with its in-kernel fast path
	// (--fastpath): weft.fastpath (bare or =1/true).
	FastPath  bool
	IPAAPIURL string           // ipa-api-url= (Ironic)
	BootIF    net.HardwareAddr // BOOTIF=01-aa-bb-cc-dd-ee-ff (PXE; leading "01-" = ARP hw type)
	// Params holds every key=value / bare key seen (bare keys map to ""),
	// the last occurrence winning, as the kernel does.
	Params map[string]string
}

// ParseCmdline reads the contents of /proc/cmdline. Parameters are separated
// by white space; double quotes group white space into a value
// (`weft.config="http://h/a b"`) and are removed, as the kernel does. The
// returned Cmdline holds everything that parsed even when err is non-nil:
// one bad parameter must not cost the node the others.
func ParseCmdline(s string) (Cmdline, error) {
	c := Cmdline{Params: map[string]string{}}
	var errs []error
	for _, tok := range splitCmdline(s) {
		key, val, hasVal := strings.Cut(tok, "=")
		if key == "" {
			continue
		}
		c.Params[key] = val
		// The kernel treats '-' and '_' in parameter names alike.
		switch strings.ReplaceAll(key, "_", "-") {
		case "weft.config":
			u, err := parseConfigURL(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("weft.config: %w", err))
				continue
			}
			c.ConfigURL = u
		case "weft.ca":
			c.CA = val
		case "weft.debug", "weft.fastpath":
			b := &c.Debug
			if key == "weft.fastpath" {
				b = &c.FastPath
			}
			if !hasVal {
				*b = true
				continue
			}
			switch strings.ToLower(val) {
			case "1", "true", "yes", "on", "":
				*b = true
			case "0", "false", "no", "off":
				*b = false
			default:
				errs = append(errs, fmt.Errorf("%s: %q is not 1/true/yes/on or 0/false/no/off", key, val))
			}
		case "ipa-api-url":
			// Ironic may pass several comma-separated URLs; keep the
			// text as given, the Ironic client splits it.
			c.IPAAPIURL = val
		case "BOOTIF":
			mac, err := ParseBootIF(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("BOOTIF: %w", err))
				continue
			}
			c.BootIF = mac
		}
	}
	return c, errors.Join(errs...)
}

// splitCmdline splits at white space outside double quotes and drops the
// quotes. An unterminated quote runs to the end, like the kernel's
// next_arg.
func splitCmdline(s string) []string {
	var out []string
	var b strings.Builder
	inQuote, inTok := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"':
			inQuote = !inQuote
			inTok = true
		case !inQuote && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == 0):
			if inTok {
				out = append(out, b.String())
				b.Reset()
				inTok = false
			}
		default:
			b.WriteByte(ch)
			inTok = true
		}
	}
	if inTok {
		out = append(out, b.String())
	}
	return out
}

func parseConfigURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return "", fmt.Errorf("%q has no host", s)
		}
	case "file":
		if u.Path == "" {
			return "", fmt.Errorf("%q has no path", s)
		}
	default:
		return "", fmt.Errorf("%q: want an http://, https:// or file:// URL", s)
	}
	return s, nil
}

// ParseBootIF reads PXELINUX's BOOTIF value: the ARP hardware type ("01" for
// Ethernet) and the MAC separated by dashes, "01-52-54-00-12-34-56". iPXE
// scripts also pass a plain MAC with colons or dashes; both are accepted.
func ParseBootIF(s string) (net.HardwareAddr, error) {
	s = strings.TrimSpace(s)
	if len(s) == 20 && s[2] == '-' {
		if s[:2] != "01" {
			return nil, fmt.Errorf("%q: hardware type %s is not Ethernet (01)", s, s[:2])
		}
		s = s[3:]
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not 01-aa-bb-cc-dd-ee-ff or a MAC address", s)
	}
	return mac, nil
}
