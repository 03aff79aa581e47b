package strictyaml

import (
	"bytes"
	"errors"
	"io"
	"iter"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrEmpty is the error of ParseDocument for a document with no value.
var ErrEmpty = errors.New("the document is empty")

// ErrSecondDocument is the error of ParseDocument for data that holds
// more than one YAML document; the FieldError's Line is the second's.
var ErrSecondDocument = errors.New("more than one YAML document")

// ParseDocument returns the root node of the one YAML document in data.
// Its error is a *FieldError (with the line, where known): ErrEmpty,
// ErrSecondDocument, or the YAML parser's.
func ParseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, &FieldError{Err: ErrEmpty}
		}
		return nil, &FieldError{Err: err}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		line := next.Line
		if err != nil {
			return nil, &FieldError{Err: err}
		}
		return nil, &FieldError{Line: line, Err: ErrSecondDocument}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{Err: ErrEmpty}
	}
	root := doc.Content[0]
	if IsNull(root) {
		return nil, &FieldError{Line: root.Line, Err: ErrEmpty}
	}
	return root, nil
}

// IsNull reports whether n is YAML's null (~, null, or nothing).
func IsNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// Resolve follows aliases (bounded: a cycle is not an endless loop); false
// when the alias does not resolve.
func Resolve(n *yaml.Node) (*yaml.Node, bool) {
	for hops := 0; n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > 100 {
			return n, false
		}
		n = n.Alias
	}
	return n, true
}

// Describe says what a node is, for "expected X, got Y" errors.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		case "!!null":
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

// JoinPath appends a mapping key to a FieldError path.
func JoinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// LineAt returns the line of the value at path (FieldError's notation:
// "a.b[2].c") under root, or of the deepest part of the path that exists;
// 0 when nothing of it does.
func LineAt(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	n, ok := Resolve(root)
	if !ok {
		return 0
	}
	line := 0
	for _, seg := range splitPath(path) {
		n, ok = Resolve(n)
		if !ok {
			return line
		}
		next := (*yaml.Node)(nil)
		switch {
		case seg.index >= 0 && n.Kind == yaml.SequenceNode && seg.index < len(n.Content):
			next = n.Content[seg.index]
		case seg.index < 0 && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg.key {
					next = n.Content[i+1]
					line = n.Content[i].Line // at least the key's line
					break
				}
			}
		}
		if next == nil {
			return line
		}
		n = next
		line = n.Line
	}
	return line
}

type pathSeg struct {
	key   string
	index int // -1 for a key
}

// splitPath cuts "a.b[2].c" into a, b, [2], c.
func splitPath(p string) []pathSeg {
	var out []pathSeg
	for p != "" {
		switch {
		case p[0] == '.':
			p = p[1:]
		case p[0] == '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return out
			}
			i, err := strconv.Atoi(p[1:end])
			if err != nil {
				return out
			}
			out = append(out, pathSeg{index: i})
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			out = append(out, pathSeg{key: p[:end], index: -1})
			p = p[end:]
		}
	}
	return out
}

// Pair is one key and value of a mapping, with the key's path.
type Pair struct {
	Key, Value *yaml.Node
	Path       string
}

// Pairs yields the pairs of mapping n (at path), having refused through
// fail what no strict document may hold: a key that is not a plain name, a
// merge key (<<), a repeated key.
func Pairs(n *yaml.Node, path string, fail func(path string, line int, format string, args ...any)) iter.Seq[Pair] {
	return func(yield func(Pair) bool) {
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				fail(path, k.Line, "a key must be a plain name, got %s", Describe(k))
				continue
			}
			kp := JoinPath(path, k.Value)
			if k.Tag == "!!merge" {
				fail(kp, k.Line, "merge keys (<<) are not supported; write the keys out")
				continue
			}
			if first, dup := seen[k.Value]; dup {
				fail(kp, k.Line, "key repeated (first at line %d)", first)
				continue
			}
			seen[k.Value] = k.Line
			if !yield(Pair{Key: k, Value: v, Path: kp}) {
				return
			}
		}
	}
}
