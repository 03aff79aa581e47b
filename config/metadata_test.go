package config

import (
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
