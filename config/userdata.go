package config

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/internal/strictyaml"
)

// UserDataKind is what an OpenStack user_data blob holds.
type UserDataKind int

const (
	UserDataNone        UserDataKind = iota // absent or only white space
	UserDataWeft                            // a weft.yaml document
	UserDataCloudConfig                     // cloud-init's (#cloud-config, #include, #cloud-boothook, ...)
	UserDataScript                          // "#!" script
	UserDataUnknown                         // anything else (MIME multipart, other YAML, binary)
)

func (k UserDataKind) String() string {
	switch k {
	case UserDataNone:
		return "none"
	case UserDataWeft:
		return "weft.yaml"
	case UserDataCloudConfig:
		return "cloud-init"
	case UserDataScript:
		return "script"
	case UserDataUnknown:
		return "unknown"
	}
	return fmt.Sprintf("UserDataKind(%d)", int(k))
}

var (
	// ErrNotFound marks a source that is simply absent: no config drive,
	// a 404 from the metadata service, no user_data. Test with errors.Is.
	ErrNotFound = errors.New("not found")
	// ErrNotWeft marks user_data that is present but not weft.yaml, such as
	// cloud-init's #cloud-config: not ours to parse.
	ErrNotWeft = errors.New("not weft.yaml")
)

// MaxUserData bounds user_data after decompression (Nova allows 64 KiB
// before base64; a gzip bomb must not exhaust a 192 MB node).
const MaxUserData = 16 << 20

// DecodeUserData returns user_data with gzip compression removed (cloud-init
// accepts gzip-compressed user_data, so operators use it).
func DecodeUserData(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gzip-compressed user_data: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxUserData+1))
	if err != nil {
		return nil, fmt.Errorf("gzip-compressed user_data: %w", err)
	}
	if len(out) > MaxUserData {
		return nil, fmt.Errorf("gzip-compressed user_data: more than %d bytes uncompressed", MaxUserData)
	}
	return out, nil
}

// cloudInitHeaders are the first-line markers of cloud-init's formats
// (cloud-init compares them case-insensitively after leading white space).
var cloudInitHeaders = []string{
	"#cloud-config", "#cloud-boothook", "#include", "#part-handler",
	"#upstart-job", "## template: jinja",
}

// ClassifyUserData says what user_data holds, after removing gzip
// compression. A document is weft.yaml when it is a YAML mapping with at
// least one of weft.yaml's top-level keys (node, underlay, bgp, ...), so that
// a weft.yaml with a typo elsewhere still reaches Parse and gets a precise
// error.
func ClassifyUserData(b []byte) UserDataKind {
	d, err := DecodeUserData(b)
	if err != nil {
		return UserDataUnknown
	}
	d = bytes.TrimPrefix(d, []byte("\xef\xbb\xbf"))
	t := bytes.TrimLeft(d, " \t\r\n")
	if len(t) == 0 {
		return UserDataNone
	}
	head := strings.ToLower(string(t[:min(len(t), 64)]))
	for _, h := range cloudInitHeaders {
		if strings.HasPrefix(head, h) {
			return UserDataCloudConfig
		}
	}
	switch {
	case strings.HasPrefix(head, "#!"):
		return UserDataScript
	case strings.HasPrefix(head, "content-type:"), strings.HasPrefix(head, "mime-version:"):
		return UserDataUnknown
	}
	if hasWeftKey(d) {
		return UserDataWeft
	}
	return UserDataUnknown
}

var topLevelKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strictyaml.Keys(reflect.TypeFor[Config]()) {
		m[k] = true
	}
	return m
}()

// hasWeftKey looks for a top-level weft.yaml key: first textually (so that a
// document with a syntax error further down still counts), then through the
// YAML parser (flow style, JSON).
func hasWeftKey(d []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(d))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key, _, ok := strings.Cut(line, ":")
		if !ok || key == "" || key[0] == ' ' || key[0] == '\t' || key[0] == '#' {
			continue
		}
		if topLevelKeys[strings.Trim(strings.TrimSpace(key), `"'`)] {
			return true
		}
	}
	if len(d) > maxDocument {
		return false
	}
	var n yaml.Node
	if yaml.Unmarshal(d, &n) != nil || len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode {
		return false
	}
	m := n.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if topLevelKeys[m.Content[i].Value] {
			return true
		}
	}
	return false
}
