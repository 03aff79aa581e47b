package config

import (
	"encoding/json"
	"maps"
	"os"
	"strings"
	"testing"
)

// A document is one JSON object and white space: a stray closing bracket
// after it is not ignored (FuzzParseMetaData found "{}]" accepted).
func TestJSONObjectTrailing(t *testing.T) {
	for _, doc := range []string{`{}]`, `{} ]`, `{}}`, "{}\n}", `{"uuid": "x"} x`, `{} {}`, "{}\v"} {
		if _, err := ParseMetaData([]byte(doc)); err == nil || !strings.Contains(err.Error(), "data after the JSON object") {
			t.Errorf("meta_data.json %q: %v, want data after the JSON object", doc, err)
		}
		if _, err := ParseNetworkData([]byte(doc)); err == nil || !strings.Contains(err.Error(), "data after the JSON object") {
			t.Errorf("network_data.json %q: %v, want data after the JSON object", doc, err)
		}
	}
	for _, doc := range []string{"{}", " {} \n\t", "\n{\"uuid\": \"x\"}\n"} {
		if _, err := ParseMetaData([]byte(doc)); err != nil {
			t.Errorf("meta_data.json %q: %v", doc, err)
		}
	}
}

// FuzzParseMetaData: what is not JSON is refused; each field Weft reads
// is what an independent decode of the document finds there (a JSON
// string as such, null or absent as ""; in public_keys and meta, text
// values kept and objects and lists dropped); the raw document is kept
// as given; and the parsed form, written back as a canonical
// meta_data.json, parses to the same fields.
func FuzzParseMetaData(f *testing.F) {
	if b, err := os.ReadFile("testdata/meta_data.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"uuid": 5, "meta": {"a": null}, "keys": [{"name": "k", "data": "x"}]}`))
	f.Add([]byte(`{"hostname": "h", "public_keys": {"k": "ssh-ed25519 AAAA"}, "meta": {"role": "db", "n": 3, "o": {}}}`))
	f.Add([]byte(`{"name": " pg1 ", "availability_zone": null, "meta": {"k": " v\\n"}}`))
	f.Add([]byte(`{}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMetaData(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("ParseMetaData accepted %q, which is not JSON", data)
		}
		if string(m.Raw()) != string(data) {
			t.Fatal("Raw is not the document")
		}
		var top map[string]any
		if err := json.Unmarshal(data, &top); err != nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", data, err)
		}
		for key, got := range map[string]string{"uuid": m.UUID, "name": m.Name, "hostname": m.Hostname, "availability_zone": m.AvailabilityZone} {
			switch v := top[key].(type) {
			case string:
				if got != v {
					t.Fatalf("%s %q, the document says %q", key, got, v)
				}
			case nil:
				if got != "" {
					t.Fatalf("%s %q from null or nothing", key, got)
				}
			}
		}
		checkTextMap(t, "meta", m.Meta, top["meta"])
		if _, ok := top["public_keys"].(map[string]any); ok {
			checkTextMap(t, "public_keys", m.PublicKeys, top["public_keys"])
		}

		canon, err := json.Marshal(map[string]any{"uuid": m.UUID, "name": m.Name, "hostname": m.Hostname,
			"availability_zone": m.AvailabilityZone, "public_keys": m.PublicKeys, "meta": m.Meta})
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseMetaData(canon)
		if err != nil {
			t.Fatalf("the parsed form written back does not parse: %v\n%s", err, canon)
		}
		if back.UUID != m.UUID || back.Name != m.Name || back.Hostname != m.Hostname || back.AvailabilityZone != m.AvailabilityZone ||
			!maps.Equal(back.PublicKeys, m.PublicKeys) || !maps.Equal(back.Meta, m.Meta) || back.Summary() != m.Summary() {
			t.Fatalf("round trip through\n%s\n%+v\nwant\n%+v", canon, back, m)
		}
	})
}

// checkTextMap holds an object of texts parsed as got to the document's
// value doc: each string kept as it is, objects and lists dropped,
// nothing added.
func checkTextMap(t *testing.T, what string, got map[string]string, doc any) {
	t.Helper()
	obj, _ := doc.(map[string]any)
	for k, v := range obj {
		g, ok := got[k]
		switch v := v.(type) {
		case string:
			if !ok || g != v {
				t.Fatalf("%s[%q] = %q (present %v), the document says %q", what, k, g, ok, v)
			}
		case map[string]any, []any:
			if ok {
				t.Fatalf("%s[%q] = %q from an object or list", what, k, g)
			}
		case nil:
			if g != "" {
				t.Fatalf("%s[%q] = %q from null", what, k, g)
			}
		}
	}
	for k := range got {
		if _, ok := obj[k]; !ok {
			t.Fatalf("%s[%q] is not in the document", what, k)
		}
	}
}
