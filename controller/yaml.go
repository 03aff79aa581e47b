package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/config"
)

// FieldError is one error in the inventory, or in a document it names (the
// weft.yaml of configFile), at a path such as "nodes[1].macs[0]" or
// "config.bgp.asn" and its line (0 when unknown). Inventory errors are
// joined with errors.Join; errors.As finds each.
type FieldError struct {
	File string // the file the value is in
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
	if e.Path != "" {
		b.WriteString(e.Path)
	}
	if e.Line > 0 {
		if e.Path != "" {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "(line %d)", e.Line)
	}
	if e.Path != "" || e.Line > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrors lists the FieldErrors in err (as LoadInventory returns them
// joined), in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch u := err.(type) {
		case *FieldError:
			out = append(out, u)
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// parseOneDocument returns the root node of the one YAML document in data.
func parseOneDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("the document is empty")
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a second YAML document; the inventory is one document", next.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || isNull(doc.Content[0]) {
		return nil, errors.New("the document is empty")
	}
	return doc.Content[0], nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// resolve follows aliases (bounded: a cycle is not an endless loop).
func resolve(n *yaml.Node) (*yaml.Node, bool) {
	for hops := 0; n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > 100 {
			return n, false
		}
		n = n.Alias
	}
	return n, true
}

func describe(n *yaml.Node) string {
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

// lineAt returns the line of the value at path (config's and
// network_data.json's notation: "a.b[2].c") under root, or of the deepest
// part of the path that exists; 0 when nothing of it does.
func lineAt(root *yaml.Node, path string) int {
	n, ok := resolve(root)
	if !ok || root == nil {
		return 0
	}
	line := 0
	for _, seg := range splitPath(path) {
		n, ok = resolve(n)
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

// maxJSONValues bounds the work of converting one YAML value to JSON:
// aliases can make a small document expand exponentially.
const maxJSONValues = 100000

// yamlToJSON writes the YAML value n as JSON, keeping the order of mapping
// keys as written, so that an operator recognises the document a node
// fetches. Scalars take the type YAML gives them (9000 a number, "9000" a
// string).
func yamlToJSON(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	budget := maxJSONValues
	if err := writeJSON(&b, n, "", &budget); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// jsonPathError is a conversion error at a path under the converted value.
type jsonPathError struct {
	path string
	line int
	err  error
}

func (e *jsonPathError) Error() string { return e.err.Error() }

func writeJSON(b *bytes.Buffer, n *yaml.Node, path string, budget *int) error {
	line := n.Line
	n, ok := resolve(n)
	if !ok {
		return &jsonPathError{path, line, errors.New("unresolvable alias")}
	}
	if *budget--; *budget < 0 {
		return &jsonPathError{path, line, fmt.Errorf("more than %d values (after expanding aliases)", maxJSONValues)}
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := joinKey(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				return &jsonPathError{path, k.Line, fmt.Errorf("a key must be a plain name, got %s", describe(k))}
			}
			if k.Tag == "!!merge" {
				return &jsonPathError{kp, k.Line, errors.New("merge keys (<<) are not supported; write the keys out")}
			}
			if first, dup := seen[k.Value]; dup {
				return &jsonPathError{kp, k.Line, fmt.Errorf("key repeated (first at line %d)", first)}
			}
			seen[k.Value] = k.Line
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k.Value)
			b.Write(kb)
			b.WriteByte(':')
			if err := writeJSON(b, v, kp, budget); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, e, path+"["+strconv.Itoa(i)+"]", budget); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return &jsonPathError{path, line, err}
		}
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return &jsonPathError{path, line, fmt.Errorf("%s has no JSON form", n.Value)}
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return &jsonPathError{path, line, fmt.Errorf("%s has no JSON form: %w", describe(n), err)}
		}
		b.Write(vb)
	default:
		return &jsonPathError{path, line, fmt.Errorf("unsupported YAML node")}
	}
	return nil
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// sameTree reports whether two YAML trees hold the same values (styles,
// comments and positions aside): the check that a verbatim cut of the
// inventory's text reads as the value the inventory's parser saw.
func sameTree(a, b *yaml.Node, budget *int) bool {
	var ok1, ok2 bool
	a, ok1 = resolve(a)
	b, ok2 = resolve(b)
	if *budget--; *budget < 0 || !ok1 || !ok2 {
		return false
	}
	if a.Kind != b.Kind || a.Tag != b.Tag || a.Value != b.Value || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !sameTree(a.Content[i], b.Content[i], budget) {
			return false
		}
	}
	return true
}

// suggest names the known key closest to an unknown one, as config does.
func suggest(key string, known []string) string { return config.SuggestKey(key, known) }

// expandAliases copies a tree with every alias replaced by a copy of its
// anchor's value, so that it can be encoded apart from the document the
// anchors are in. Past the budget, or on a broken alias, it stops copying
// (the result then fails to parse, with a message saying so).
func expandAliases(n *yaml.Node, budget *int) *yaml.Node {
	r, ok := resolve(n)
	if *budget--; !ok || *budget < 0 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "<unexpandable alias>"}
	}
	c := *r
	c.Anchor = ""
	c.Content = make([]*yaml.Node, len(r.Content))
	for i, e := range r.Content {
		c.Content[i] = expandAliases(e, budget)
	}
	return &c
}
