package fleetapi

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

var labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// CheckNodeName checks a node's name (its hostname, as the inventory
// writes it): config's rule for hostnames, without a trailing dot (the
// name is also a URL path segment).
func CheckNodeName(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("hostname is %d characters, more than 253", len(h))
	}
	for l := range strings.SplitSeq(h, ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("%q is not a valid hostname (labels of letters, digits and inner hyphens, up to 63 each)", h)
		}
	}
	return nil
}

// checkEndpointName accepts what names an endpoint: config's names, and
// a pod's (namespace/name) as CNI endpoints may be named.
func checkEndpointName(s string) error {
	switch {
	case s == "":
		return errors.New("required (the endpoint to probe from, as the node reports it)")
	case len(s) > 253:
		return fmt.Errorf("%d characters, more than 253", len(s))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("%q: no white space or control characters in an endpoint name", s)
	}
	return nil
}
