package strictyaml

import (
	"encoding"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// MaxValues bounds the work of one Decode: aliases can make a small
// document expand exponentially ("billion laughs").
const MaxValues = 200000

// Result is what Decode found besides the value.
type Result struct {
	// Errs are the decoding errors, each a *FieldError, in document order.
	Errs []error
	// Lines has the line of each path's value (and of each unknown key),
	// for errors that checks after decoding find.
	Lines map[string]int
	// TooLarge is set when decoding stopped at MaxValues values: the value
	// is incomplete, and not worth checking further.
	TooLarge bool
}

// Decode decodes the YAML value root into the struct v points to. The
// struct's fields say what they accept by their tags:
//
//	yaml:"name"    the mapping key (a field without it is not decoded)
//	auto:""        the scalar "auto" means the zero value
//	range:"1..10"  an integer's bounds, beyond its type's
//
// A field may be a string, bool, integer, netip.Addr, netip.Prefix,
// net.HardwareAddr, an encoding.TextUnmarshaler, a slice, a struct or a
// pointer to one. A null value leaves the zero value.
func Decode(root *yaml.Node, v any) Result {
	d := &decoder{lines: map[string]int{}}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		d.fail("", root.Line, "internal error: cannot decode into %T", v)
	} else {
		d.value(root, "", rv.Elem(), field{})
	}
	return Result{Errs: d.errs, Lines: d.lines, TooLarge: d.tooMuch}
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

// value decodes n into v, the field described by f, at path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value, f field) {
	if d.tooMuch {
		return
	}
	d.nodes++
	if d.nodes > MaxValues {
		d.tooMuch = true
		d.fail(path, n.Line, "document too large (more than %d values after expanding aliases)", MaxValues)
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
	if IsNull(n) {
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
		d.boolean(n, path, line, v)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Bool:
		// *bool: a switch whose default is not false (nil = absent).
		p := reflect.New(t.Elem())
		if d.boolean(n, path, line, p.Elem()) {
			v.Set(p)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		d.integer(n, path, line, v, f)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, line, "expected a list, got %s", Describe(n))
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

// boolean sets v from a true or false scalar, or reports what it got.
func (d *decoder) boolean(n *yaml.Node, path string, line int, v reflect.Value) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.fail(path, line, "expected true or false, got %s", Describe(n))
		return false
	}
	b, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		d.fail(path, line, "expected true or false, got %s", Describe(n))
		return false
	}
	v.SetBool(b)
	return true
}

// scalar returns the text of a scalar node, or reports what it got instead.
func (d *decoder) scalar(n *yaml.Node, path string, line int, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, line, "expected %s, got %s", want, Describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string, line int, v reflect.Value, f field) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!bool" {
		d.fail(path, line, "expected an integer, got %s", Describe(n))
		return
	}
	if f.auto && n.Value == "auto" {
		return
	}
	x, ok := parseInteger(n.Value)
	if !ok {
		if f.auto {
			d.fail(path, line, "expected an integer or auto, got %s", Describe(n))
		} else {
			d.fail(path, line, "expected an integer, got %s", Describe(n))
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
		d.fail(path, line, "expected a mapping with keys %s, got %s", keyList(si), Describe(n))
		return
	}
	for p := range Pairs(n, path, d.fail) {
		k, val, kp := p.Key, p.Value, p.Path
		f, ok := si.byName[k.Value]
		if !ok {
			d.lines[kp] = k.Line
			d.fail(kp, k.Line, "unknown key%s", SuggestKey(k.Value, si.names()))
			continue
		}
		d.value(val, kp, v.Field(f.index), f)
	}
}

// Keys lists the mapping keys a struct type t accepts, in field order.
func Keys(t reflect.Type) []string { return structFields(t).names() }

func (si *structInfo) names() []string {
	names := make([]string, len(si.fields))
	for i, f := range si.fields {
		names[i] = f.name
	}
	return names
}

func keyList(si *structInfo) string { return strings.Join(si.names(), ", ") }
