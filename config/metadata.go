package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// MetaData is what Weft uses of OpenStack's meta_data.json.
type MetaData struct {
	UUID             string
	Name             string
	Hostname         string
	AvailabilityZone string
	PublicKeys       map[string]string // key name -> OpenSSH public key
	Meta             map[string]string // instance metadata (nova boot --meta)

	raw []byte
}

// Raw returns the document MetaData was parsed from.
func (m *MetaData) Raw() []byte { return m.raw }

// ParseMetaData reads meta_data.json. It is lenient where real clouds differ
// (numbers where strings are expected, null, unknown keys, "keys" instead of
// "public_keys") and strict only where the document is unusable: not a JSON
// object, or a known field holding an object or list where text belongs.
func ParseMetaData(b []byte) (*MetaData, error) {
	top, err := jsonObject(b, "meta_data.json")
	if err != nil {
		return nil, err
	}
	m := &MetaData{raw: bytes.Clone(b)}
	for key, dst := range map[string]*string{
		"uuid": &m.UUID, "name": &m.Name, "hostname": &m.Hostname, "availability_zone": &m.AvailabilityZone,
	} {
		s, err := jsonText(top[key])
		if err != nil {
			return nil, fmt.Errorf("meta_data.json: %s: %w", key, err)
		}
		*dst = s
	}
	if m.PublicKeys, err = jsonTextMap(top["public_keys"]); err != nil {
		return nil, fmt.Errorf("meta_data.json: public_keys: %w", err)
	}
	if len(m.PublicKeys) == 0 {
		// Some generators only write "keys": [{name, type, data}].
		var keys []struct {
			Name string `json:"name"`
			Type string `json:"type"`
			Data string `json:"data"`
		}
		if raw := top["keys"]; raw != nil && json.Unmarshal(raw, &keys) == nil {
			for _, k := range keys {
				if k.Type == "" || k.Type == "ssh" {
					if m.PublicKeys == nil {
						m.PublicKeys = map[string]string{}
					}
					m.PublicKeys[k.Name] = k.Data
				}
			}
		}
	}
	if m.Meta, err = jsonTextMap(top["meta"]); err != nil {
		return nil, fmt.Errorf("meta_data.json: meta: %w", err)
	}
	return m, nil
}

// jsonObject decodes b as one JSON object.
func jsonObject(b []byte, what string) (map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("%s: %w", what, describeJSONError(b, err))
	}
	if top == nil {
		return nil, fmt.Errorf("%s: want a JSON object, got null", what)
	}
	// Anything but the end, even a stray closing bracket, is data after it.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: data after the JSON object", what)
	}
	return top, nil
}

// describeJSONError adds the line and column to a syntax error.
func describeJSONError(b []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		if te.Field == "" {
			return fmt.Errorf("want a JSON object, got %s", te.Value)
		}
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return err
	}
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(b[:off], '\n'))
	return fmt.Errorf("line %d column %d: %w", line, col, err)
}

// jsonText reads a JSON value that should be text: a string, or a number or
// boolean taken as its text; null and absent are "".
func jsonText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case '{':
		return "", fmt.Errorf("want text, got an object")
	case '[':
		return "", fmt.Errorf("want text, got a list")
	}
	return string(raw), nil
}

// jsonTextMap reads an object of texts; non-text values are dropped (they
// are metadata Weft does not use, and must not cost the node its config).
func jsonTextMap(raw json.RawMessage) (map[string]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("want an object of strings")
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, err := jsonText(v); err == nil {
			out[k] = s
		}
	}
	return out, nil
}

// Summary is one line for operators.
func (m *MetaData) Summary() string {
	var parts []string
	if m.UUID != "" {
		parts = append(parts, "uuid "+m.UUID)
	}
	if m.Hostname != "" {
		parts = append(parts, "hostname "+m.Hostname)
	} else if m.Name != "" {
		parts = append(parts, "name "+m.Name)
	}
	if m.AvailabilityZone != "" {
		parts = append(parts, "zone "+m.AvailabilityZone)
	}
	parts = append(parts, plural(len(m.PublicKeys), "public key"))
	if len(m.Meta) > 0 {
		keys := make([]string, 0, len(m.Meta))
		for k := range m.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts = append(parts, "meta "+strings.Join(keys, ","))
	}
	return strings.Join(parts, ", ")
}
