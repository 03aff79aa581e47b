package strictyaml

import (
	"fmt"
	"strings"
)

// FieldError is one error in a YAML document, at a path such as
// "bgp.controllers[1].asn" and its line (0 when unknown). Decoders return
// all of them joined with errors.Join; errors.As finds each.
//
// It reads "file: path (line 3): what is wrong". File is left out when
// unknown; an error about the document as a whole (no Path) names it by
// Doc instead of a path, when Doc is set: "weft.yaml (line 1): ...".
type FieldError struct {
	File string // the file the value is in; "" when the caller says it
	Doc  string // the document's name, said when there is no Path
	Path string // "" for the document as a whole
	Line int
	Err  error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	where := e.Path
	if where == "" {
		where = e.Doc
	}
	b.WriteString(where)
	if e.Line > 0 {
		if where != "" {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "(line %d)", e.Line)
	}
	if where != "" || e.Line > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// SuggestKey is the tail of an "unknown key" error: the known key closest
// to key (`; did you mean "mtu"?`), or the list of known keys when none is
// close. Every strict decoder of the project words it so.
func SuggestKey(key string, known []string) string {
	best, ok := Closest(key, known)
	if !ok {
		return "; known keys: " + strings.Join(known, ", ")
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// Closest is the word of known that word is most likely a typo of: the
// same but for case, else the nearest within two edits; false when none
// is that close.
func Closest(word string, known []string) (string, bool) {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, word) {
			return k, true
		}
		if d := editDistance(strings.ToLower(word), strings.ToLower(k)); d < bestDist && d < len(k) {
			best, bestDist = k, d
		}
	}
	return best, best != ""
}

// editDistance is the Levenshtein distance, bounded in cost by the short
// keys it is used on.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
