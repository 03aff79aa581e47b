package kmod

import (
	"path"
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "any/thing", true}, // no FNM_PATHNAME: '*' crosses '/'
		{"a*b", "ab", true},
		{"a*b", "axxb", true},
		{"a*b", "axxbc", false},
		{"a*b*c", "abxbxc", true},
		{"?", "", false},
		{"?", "x", true},
		{"a?c", "abc", true},
		{"[abc]", "b", true},
		{"[abc]", "d", false},
		{"[a-f]x", "ex", true},
		{"[!a-f]x", "ex", false},
		{"[^a-f]x", "gx", true},
		{"[]]", "]", true},
		{"[!]]", "a", true},
		{"[a-]", "-", true},
		{"[", "[", true}, // unterminated class is a literal
		{"[ab", "[ab", true},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`a\`, `a\`, true},
		{`[\]]`, "]", true},
		{"pci:v00008086d0000100Esv*sd*bc*sc*i*", "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", true},
		{"pci:v00008086d0000100Esv*sd*bc*sc*i*", "pci:v00008086d0000100Fsv00001AF4sd00001100bc02sc00i00", false},
		{"virtio:d00000001v*", "virtio:d00000001v00001AF4", true},
		{"virtio:d00000001v*", "virtio:d00000002v00001AF4", false},
		{"acpi*:PNP0501:*", "acpi:PNP0501:", true},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestNormalizeAlias(t *testing.T) {
	for in, want := range map[string]string{
		"fs-vfat":       "fs_vfat",
		"net-pf-10":     "net_pf_10",
		"pci:v[0-9]*-x": "pci:v[0-9]*_x",
		"a[]-]-b":       "a[]-]_b",
		"plain":         "plain",
	} {
		if got := normalizeAlias(in); got != want {
			t.Errorf("normalizeAlias(%q) = %q, want %q", in, got, want)
		}
	}
}

// escapeGlob quotes every metacharacter so the pattern matches s literally.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func FuzzMatch(f *testing.F) {
	f.Add("pci:v00008086d*sv*", "pci:v00008086d0000100Esv00001AF4")
	f.Add("[a-z]*?", "abc")
	f.Add("[!", "x")
	f.Add(`\`, `\`)
	f.Add("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := globMatch(pattern, s)
		if !globMatch(escapeGlob(s), s) {
			t.Fatalf("escaped %q does not match itself", s)
		}
		if !globMatch("*", s) {
			t.Fatalf("* does not match %q", s)
		}
		// Without classes, escapes and '/', path.Match has the same
		// semantics; use it as the reference.
		if !strings.ContainsAny(pattern, `[]\/`) && !strings.Contains(s, "/") {
			want, err := path.Match(pattern, s)
			if err == nil && got != want {
				t.Fatalf("globMatch(%q, %q) = %v, path.Match says %v", pattern, s, got, want)
			}
		}
		// Match through an index must agree with the raw matcher on
		// normalised strings.
		ix := &Index{}
		ix.addAlias(pattern, "m")
		if m := ix.Match(s); len(m) > 0 != globMatch(normalizeAlias(pattern), normalizeAlias(strings.TrimSpace(s))) && strings.TrimSpace(s) != "" {
			t.Fatalf("Index.Match(%q) with alias %q = %v", s, pattern, m)
		}
	})
}
