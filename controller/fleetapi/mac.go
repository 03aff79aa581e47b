package fleetapi

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
)

// MACHeader is the request header a node names its NICs' MACs in, so the
// controller recognises it wherever its requests come from (NAT, a relay):
//
//	X-Weft-MAC: 52:54:00:00:00:01,52:54:00:00:00:02
//
// Every MAC of the node's NICs, comma-separated (white space around each
// is ignored), in any notation net.ParseMAC reads; the header may also be
// repeated. At most 64 MACs. A request without it is recognised by its
// source address.
const MACHeader = "X-Weft-MAC"

// maxHeaderMACs bounds the MACs one request may name.
const maxHeaderMACs = 64

// ParseMACHeader reads the MACs of a request's X-Weft-MAC headers.
func ParseMACHeader(h http.Header) ([]net.HardwareAddr, error) {
	var out []net.HardwareAddr
	for _, v := range h.Values(MACHeader) {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			mac, err := net.ParseMAC(f)
			if err != nil || len(mac) != 6 {
				return nil, fmt.Errorf("header %s: %q is not a MAC address (like 52:54:00:12:34:56)", MACHeader, f)
			}
			if !slices.ContainsFunc(out, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
				out = append(out, mac)
			}
			if len(out) > maxHeaderMACs {
				return nil, fmt.Errorf("header %s: more than %d MACs", MACHeader, maxHeaderMACs)
			}
		}
	}
	return out, nil
}

// FormatMACHeader writes macs as the X-Weft-MAC header's value.
func FormatMACHeader(macs []net.HardwareAddr) string {
	s := make([]string, len(macs))
	for i, m := range macs {
		s[i] = m.String()
	}
	return strings.Join(s, ",")
}
