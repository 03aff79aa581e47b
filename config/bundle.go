package config

import (
	"fmt"
	"strings"
)

// Bundle is what one source (package config/source) delivered, in the
// OpenStack layout.
type Bundle struct {
	Source      string       // "config-drive /dev/vda", "metadata http://169.254.169.254/", "url http://..."
	MetaData    *MetaData    // nil when absent or broken
	NetworkData *NetworkData // nil when absent or broken
	UserData    []byte       // raw (possibly gzip-compressed); nil when absent or broken
	// VendorData2 is vendor_data2.json as read (ParseVendorData2 reads
	// the node's join.openstack credential from it); nil when absent.
	VendorData2 []byte
	// Broken are the files that were there but could not be read or
	// parsed: each file stands or falls on its own, and the bundle holds
	// the others.
	Broken []FileError
}

// FileError is one file of a bundle that could not be read or parsed.
type FileError struct {
	File string // "network_data.json"
	Err  error
}

func (e FileError) Error() string {
	s := e.Err.Error()
	if strings.HasPrefix(s, e.File+":") {
		return s // the parsers name their file already
	}
	return e.File + ": " + s
}

func (e FileError) Unwrap() error { return e.Err }

// Config parses the bundle's user_data as weft.yaml. Absent or empty
// user_data is an error wrapping ErrNotFound; user_data of another kind
// (#cloud-config, a script, MIME multipart) wraps ErrNotWeft.
func (b *Bundle) Config() (*Config, error) {
	if b == nil {
		return nil, fmt.Errorf("no bundle: %w", ErrNotFound)
	}
	data, err := DecodeUserData(b.UserData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Source, err)
	}
	switch k := ClassifyUserData(data); k {
	case UserDataNone:
		return nil, fmt.Errorf("%s: no user_data: %w", b.Source, ErrNotFound)
	case UserDataCloudConfig:
		return nil, fmt.Errorf("%s: user_data is #cloud-config, not weft.yaml: %w", b.Source, ErrNotWeft)
	case UserDataScript:
		return nil, fmt.Errorf("%s: user_data is a script (#!), not weft.yaml: %w", b.Source, ErrNotWeft)
	case UserDataUnknown:
		return nil, fmt.Errorf("%s: user_data is not weft.yaml (no top-level node, underlay, bgp, overlay, networks, policies, endpoints or join key): %w", b.Source, ErrNotWeft)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: user_data: %w", b.Source, err)
	}
	return c, nil
}

// Summary is one line for operators.
func (c *Config) Summary() string {
	s := fmt.Sprintf("%s, %s, %s, %s",
		plural(len(c.Networks), "network"), plural(len(c.Policies), "policy"),
		plural(len(c.Endpoints), "endpoint"), encapList(c.Overlay.Encapsulations()))
	if c.BGP != nil {
		s += fmt.Sprintf(", bgp asn %d with %s", c.BGP.ASN, plural(len(c.BGP.Controllers), "controller"))
	}
	if c.UnderlaySpec != nil {
		s += ", underlay " + plural(len(c.UnderlaySpec.Links), "link")
	}
	if c.Join.Kubernetes != nil {
		s += ", joins kubernetes"
	}
	if c.Join.OpenStack != nil {
		s += ", joins openstack"
	}
	return s
}

func plural(n int, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case what == "policy":
		return fmt.Sprintf("%d policies", n)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func encapList(es []Encapsulation) string {
	s := "encapsulation "
	for i, e := range es {
		if i > 0 {
			s += ">"
		}
		s += string(e)
	}
	return s
}
