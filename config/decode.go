package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// FieldError is one error in a weft.yaml document, at a path such as
// "bgp.controllers[1].asn" and its line (0 when unknown). Parse returns all
// of them joined with errors.Join; errors.As finds each.
type FieldError struct {
	Path string
	Line int
	Err  error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Path == "" {
		b.WriteString("weft.yaml")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// maxNodes bounds the work of one decode: aliases can make a small document
// expand exponentially ("billion laughs"); weft.yaml never needs this many.
const maxNodes = 200000

// maxDocument bounds the size of a weft.yaml document.
const maxDocument = 4 << 20

// Parse decodes and validates one weft.yaml document strictly: an unknown
// key, a value of the wrong type or out of range, a dangling reference is
// an error naming its path and line. All errors are returned, joined.
func Parse(data []byte) (*Config, error) {
	if len(data) > maxDocument {
		return nil, &FieldError{Err: fmt.Errorf("document is %d bytes, more than the %d allowed", len(data), maxDocument)}
	}
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{lines: map[string]int{}}
	c := &Config{}
	d.value(root, "", reflect.ValueOf(c).Elem(), field{})
	errs := d.errs
	if !d.tooMuch {
		// Validate even a document with decoding errors, so that one run
		// shows every error; but a value that failed to decode is not
		// also reported as missing.
		v := validator{lines: d.lines}
		v.config(c)
		for _, err := range v.errs {
			if !underFailed(err.(*FieldError).Path, d.errs) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b error) int {
			return lineOf(a) - lineOf(b)
		})
		return nil, errors.Join(errs...)
	}
	c.raw = bytes.Clone(data)
	return c, nil
}

// underFailed says whether path is, or is inside, a path whose value failed
// to decode.
func underFailed(path string, decodeErrs []error) bool {
	for _, err := range decodeErrs {
		p := err.(*FieldError).Path
		if path == p || (strings.HasPrefix(path, p) && (path[len(p)] == '.' || path[len(p)] == '[')) {
			return true
		}
	}
	return false
}

// lineOf orders errors by line; errors without one go last.
func lineOf(err error) int {
	if l := err.(*FieldError).Line; l > 0 {
		return l
	}
	return math.MaxInt32
}

// parseYAML returns the root node of the one document in data.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, &FieldError{Err: errors.New("the document is empty")}
		}
		return nil, &FieldError{Err: err}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		line := next.Line
		if err != nil {
			return nil, &FieldError{Err: err}
		}
		return nil, &FieldError{Line: line, Err: errors.New("more than one YAML document; weft.yaml is one document")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{Err: errors.New("the document is empty")}
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, &FieldError{Line: root.Line, Err: errors.New("the document is empty")}
	}
	return root, nil
}

type decoder struct {
	errs    []error
	lines   map[string]int // path -> line of its value, for validation errors
	nodes   int
	tooMuch bool
}

func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: line, Err: fmt.Errorf(format, args...)})
}

// field is what a struct tag says about a value.
type field struct {
	index    int
	name     string
	auto     bool // the scalar "auto" means the zero value
	hasRange bool
	min, max int64
}

type structInfo struct {
	fields []field
	byName map[string]field
}

var structCache sync.Map // reflect.Type -> *structInfo

func structFields(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byName: map[string]field{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := sf.Tag.Lookup("yaml")
		if !ok || !sf.IsExported() {
			continue
		}
		f := field{index: i, name: name}
		_, f.auto = sf.Tag.Lookup("auto")
		if r, ok := sf.Tag.Lookup("range"); ok {
			lo, hi, _ := strings.Cut(r, "..")
			f.min, _ = strconv.ParseInt(lo, 10, 64)
			f.max, _ = strconv.ParseInt(hi, 10, 64)
			f.hasRange = true
		}
		si.fields = append(si.fields, f)
		si.byName[name] = f
	}
	structCache.Store(t, si)
	return si
}

var (
	addrType   = reflect.TypeFor[netip.Addr]()
	prefixType = reflect.TypeFor[netip.Prefix]()
	macType    = reflect.TypeFor[net.HardwareAddr]()
	textType   = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
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
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported YAML node"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value decodes n into v, the field described by f, at path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value, f field) {
	if d.tooMuch {
		return
	}
	d.nodes++
	if d.nodes > maxNodes {
		d.tooMuch = true
		d.fail(path, n.Line, "document too large (more than %d values after expanding aliases)", maxNodes)
		return
	}
	line := n.Line
	for hops := 0; n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > 100 {
			d.fail(path, line, "unresolvable alias")
			return
		}
		n = n.Alias
	}
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = line
	}
	if isNull(n) {
		return // absent: the zero value
	}
	t := v.Type()
	switch {
	case t == addrType:
		s, ok := d.scalar(n, path, line, "an IP address")
		if !ok || (f.auto && s == "auto") {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			d.fail(path, line, "%q is not an IP address", s)
			return
		}
		v.Set(reflect.ValueOf(a))
	case t == prefixType:
		s, ok := d.scalar(n, path, line, "an address with a prefix length")
		if !ok {
			return
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			d.fail(path, line, "%q is not an address with a prefix length (like 10.0.0.0/24)", s)
			return
		}
		v.Set(reflect.ValueOf(p))
	case t == macType:
		s, ok := d.scalar(n, path, line, "a MAC address")
		if !ok {
			return
		}
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			d.fail(path, line, "%q is not a MAC address (like 52:54:00:12:34:56)", s)
			return
		}
		v.Set(reflect.ValueOf(mac))
	case reflect.PointerTo(t).Implements(textType):
		s, ok := d.scalar(n, path, line, "a scalar")
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(path, line, "%v", err)
		}
	case t.Kind() == reflect.String:
		s, ok := d.scalar(n, path, line, "a string")
		if !ok || (f.auto && s == "auto") {
			return
		}
		v.SetString(s)
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(path, line, "expected true or false, got %s", describe(n))
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil {
			d.fail(path, line, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		d.integer(n, path, line, v, f)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, line, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.value(e, path+"["+strconv.Itoa(i)+"]", s.Index(i), field{})
		}
		v.Set(s)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		p := reflect.New(t.Elem())
		d.mapping(n, path, line, p.Elem())
		v.Set(p)
	case t.Kind() == reflect.Struct:
		d.mapping(n, path, line, v)
	default:
		// A schema type this decoder does not know: a programming error,
		// reported rather than panicking.
		d.fail(path, line, "internal error: cannot decode into %s", t)
	}
}

// scalar returns the text of a scalar node, or reports what it got instead.
func (d *decoder) scalar(n *yaml.Node, path string, line int, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, line, "expected %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string, line int, v reflect.Value, f field) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!bool" {
		d.fail(path, line, "expected an integer, got %s", describe(n))
		return
	}
	if f.auto && n.Value == "auto" {
		return
	}
	x, ok := parseInteger(n.Value)
	if !ok {
		if f.auto {
			d.fail(path, line, "expected an integer or auto, got %s", describe(n))
		} else {
			d.fail(path, line, "expected an integer, got %s", describe(n))
		}
		return
	}
	lo, hi := typeRange(v.Type())
	if f.hasRange {
		lo, hi = max(lo, f.min), min(hi, f.max)
	}
	if !x.IsInt64() || x.Int64() < lo || x.Int64() > hi {
		d.fail(path, line, "%s is out of range %d..%d", x, lo, hi)
		return
	}
	if v.CanInt() {
		v.SetInt(x.Int64())
	} else {
		v.SetUint(uint64(x.Int64()))
	}
}

// parseInteger reads YAML integer notations: decimal (with "_" separators),
// 0x, 0o and 0b. A leading 0 is decimal, as in YAML 1.2.
func parseInteger(s string) (*big.Int, bool) {
	t := strings.ReplaceAll(s, "_", "")
	neg := false
	switch {
	case strings.HasPrefix(t, "-"):
		neg, t = true, t[1:]
	case strings.HasPrefix(t, "+"):
		t = t[1:]
	}
	base := 10
	if len(t) > 2 && t[0] == '0' {
		switch t[1] {
		case 'x', 'X':
			base, t = 16, t[2:]
		case 'o', 'O':
			base, t = 8, t[2:]
		case 'b', 'B':
			base, t = 2, t[2:]
		}
	}
	if t == "" || len(t) > 100 {
		return nil, false
	}
	x, ok := new(big.Int).SetString(t, base)
	if !ok {
		return nil, false
	}
	if neg {
		x.Neg(x)
	}
	return x, true
}

func typeRange(t reflect.Type) (int64, int64) {
	switch t.Kind() {
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32
	case reflect.Uint8:
		return 0, math.MaxUint8
	case reflect.Uint16:
		return 0, math.MaxUint16
	case reflect.Uint32:
		return 0, math.MaxUint32
	case reflect.Uint, reflect.Uint64:
		return 0, math.MaxInt64
	}
	return math.MinInt64, math.MaxInt64
}

// mapping decodes a YAML mapping into the struct v, rejecting unknown and
// repeated keys.
func (d *decoder) mapping(n *yaml.Node, path string, line int, v reflect.Value) {
	si := structFields(v.Type())
	if n.Kind != yaml.MappingNode {
		d.fail(path, line, "expected a mapping with keys %s, got %s", keyList(si), describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(path, k.Line, "a key must be a plain name, got %s", describe(k))
			continue
		}
		kp := joinPath(path, k.Value)
		if k.Tag == "!!merge" {
			d.fail(kp, k.Line, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(kp, k.Line, "key repeated (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := si.byName[k.Value]
		if !ok {
			d.lines[kp] = k.Line
			d.fail(kp, k.Line, "unknown key%s", suggest(k.Value, si))
			continue
		}
		d.value(val, kp, v.Field(f.index), f)
	}
}

func keyList(si *structInfo) string {
	names := make([]string, len(si.fields))
	for i, f := range si.fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// suggest names the known key closest to an unknown one, when it is close.
func suggest(key string, si *structInfo) string {
	names := make([]string, len(si.fields))
	for i, f := range si.fields {
		names[i] = f.name
	}
	return SuggestKey(key, names)
}

// SuggestKey is the tail of an "unknown key" error: the known key closest
// to key (`; did you mean "mtu"?`), or the list of known keys when none is
// close. Every strict decoder of the project words it so.
func SuggestKey(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf("; did you mean %q?", k)
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestDist && d < len(k) {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return "; known keys: " + strings.Join(known, ", ")
	}
	return fmt.Sprintf("; did you mean %q?", best)
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
