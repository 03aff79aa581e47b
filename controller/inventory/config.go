package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/strictyaml"
)

// lines splits data into its lines, each with its newline.
func lines(data []byte) [][]byte {
	ls := bytes.SplitAfter(data, []byte("\n"))
	if len(ls) > 0 && len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1]
	}
	return ls
}

// cutText returns the inventory text of the config value (which starts at
// val and ends before line end), unindented, and the inventory line of its
// first line. Comments and blank lines inside are kept; those trailing at
// a smaller indentation belong to what follows and are left out.
func cutText(src []byte, key, val *yaml.Node, end int) ([]byte, int) {
	ls := lines(src)
	if end > len(ls)+1 {
		end = len(ls) + 1
	}
	var out [][]byte
	first := key.Line + 1
	indent := val.Column - 1
	flow := val.Line == key.Line
	if flow {
		// {...} or a scalar on the key's line: from its column on.
		first = val.Line
		if val.Line-1 >= len(ls) {
			return nil, first
		}
		r := []rune(string(ls[val.Line-1]))
		if val.Column-1 > len(r) {
			return nil, first
		}
		out = append(out, []byte(string(r[val.Column-1:])))
		for l := val.Line + 1; l < end; l++ {
			out = append(out, ls[l-1])
		}
	} else {
		for l := first; l < end && l-1 < len(ls); l++ {
			line := ls[l-1]
			n := 0
			for n < indent && n < len(line) && line[n] == ' ' {
				n++
			}
			out = append(out, line[n:])
		}
	}
	// Trailing blank lines, and comments less indented than the value.
	for len(out) > 0 {
		last := ls[first-1+len(out)-1]
		t := bytes.TrimLeft(last, " ")
		trimmed := bytes.TrimSpace(t)
		if len(trimmed) == 0 || (trimmed[0] == '#' && (flow || len(last)-len(t) < indent)) {
			out = out[:len(out)-1]
			continue
		}
		break
	}
	return bytes.Join(out, nil), first
}

// inlineConfig validates the config value; the user_data it returns is the
// inventory's own text of it, so that the node receives what the operator
// wrote, comments included, and errors point at inventory lines.
func (d *invDecoder) inlineConfig(src []byte, key, val *yaml.Node, end int) (*config.Config, []byte, *yaml.Node) {
	tree, ok := strictyaml.Resolve(val)
	if !ok || tree.Kind != yaml.MappingNode {
		d.fail("config", val.Line, "expected the fleet's weft.yaml (a mapping), got %s", strictyaml.Describe(tree))
		return nil, nil, nil
	}
	text, first := cutText(src, key, val, end)
	offset := first - 1
	budget := maxJSONValues
	if cut, err := parseDocument(text); err != nil || !sameTree(cut, tree, &budget) {
		// Not cleanly cuttable (flow style sharing lines with other keys,
		// aliases to anchors outside it): serve it re-encoded, and locate
		// errors by path instead of by line.
		budget := maxJSONValues
		b, err := yaml.Marshal(expandAliases(tree, &budget))
		if err != nil {
			d.fail("config", val.Line, "cannot re-encode: %v", err)
			return nil, nil, nil
		}
		text, offset = b, -1
	}
	c, errs := parseWeft(text)
	for _, e := range errs {
		path := "config"
		if e.path != "" {
			path += "." + e.path
		}
		line := e.line + offset
		if offset < 0 || e.line == 0 {
			line = strictyaml.LineAt(tree, e.path)
			if line == 0 {
				line = val.Line
			}
		}
		d.errs = append(d.errs, &strictyaml.FieldError{File: d.file, Path: path, Line: line, Err: e.err})
	}
	if c == nil {
		return nil, nil, nil
	}
	return c, text, tree
}

// configFile reads and validates the weft.yaml that configFile names.
func (d *invDecoder) configFile(v *yaml.Node) (string, *config.Config, []byte, *yaml.Node) {
	s, ok := d.scalar(v, "configFile", "a file name")
	if !ok {
		return "", nil, nil, nil
	}
	if s == "" {
		d.fail("configFile", v.Line, "empty file name")
		return "", nil, nil, nil
	}
	path := s
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(d.file), path)
	}
	data, err := d.read(path, maxInventory)
	if err != nil {
		d.fail("configFile", v.Line, "%v", err)
		return path, nil, nil, nil
	}
	c, errs := parseWeft(data)
	for _, e := range errs {
		d.errs = append(d.errs, &strictyaml.FieldError{File: path, Path: e.path, Line: e.line, Err: e.err})
	}
	if c == nil {
		return path, nil, nil, nil
	}
	var tree *yaml.Node
	if plain, err := config.DecodeUserData(data); err == nil {
		tree, _ = parseDocument(plain)
	}
	return path, c, data, tree
}

type weftError struct {
	path string
	line int
	err  error
}

// parseWeft validates a weft.yaml as a node will: user_data that is not
// weft.yaml is refused the way the node's config step would refuse it.
func parseWeft(data []byte) (*config.Config, []weftError) {
	plain, err := config.DecodeUserData(data)
	if err != nil {
		return nil, []weftError{{err: err}}
	}
	switch config.ClassifyUserData(plain) {
	case config.UserDataNone:
		return nil, []weftError{{err: errors.New("empty: the fleet's weft.yaml is required")}}
	case config.UserDataCloudConfig:
		return nil, []weftError{{err: errors.New("this is cloud-init user data (#cloud-config and the like), not weft.yaml")}}
	case config.UserDataScript:
		return nil, []weftError{{err: errors.New("this is a script (#!), not weft.yaml")}}
	case config.UserDataUnknown:
		return nil, []weftError{{err: errors.New("not weft.yaml: no top-level node, underlay, bgp, overlay, networks, policies, endpoints or join key")}}
	}
	c, err := config.Parse(plain)
	if err == nil {
		return c, nil
	}
	var out []weftError
	for _, e := range flatten(err) {
		var fe *strictyaml.FieldError
		if errors.As(e, &fe) {
			out = append(out, weftError{path: fe.Path, line: fe.Line, err: fe.Err})
		} else {
			out = append(out, weftError{err: e})
		}
	}
	return nil, out
}

// flatten lists the errors errors.Join put together.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// fleetChecks refuses what one weft.yaml cannot give several nodes.
func (d *invDecoder) fleetChecks(inv *Inventory, tree *yaml.Node, file, prefix string) {
	c := inv.Config
	n := len(inv.Nodes)
	fail := func(path, format string, args ...any) {
		full := path
		if prefix != "" {
			full = prefix + "." + path
		}
		d.errs = append(d.errs, &strictyaml.FieldError{File: file, Path: full, Line: strictyaml.LineAt(tree, path), Err: fmt.Errorf(format, args...)})
	}
	if n > 1 {
		if c.Node.Hostname != "" {
			fail("node.hostname", "%q would be the hostname of all %d nodes: leave it out (or auto) so that each takes its name from meta_data.json", c.Node.Hostname, n)
		}
		if c.Node.RouterID.IsValid() {
			fail("node.routerID", "%s would be the router ID of all %d nodes: leave it auto", c.Node.RouterID, n)
		}
		if c.BGP != nil && c.BGP.RouterID.IsValid() {
			fail("bgp.routerID", "%s would be the router ID of all %d nodes: leave it auto", c.BGP.RouterID, n)
		}
	}
	var names []string
	for _, node := range inv.Nodes {
		names = append(names, node.Name)
	}
	for i, e := range c.Endpoints {
		p := fmt.Sprintf("endpoints[%d].node", i)
		switch {
		case e.Node == "" && n > 1 && !e.Anycast:
			fail(p, "missing: this weft.yaml serves %d nodes, and an endpoint without node is created on every one of them; name the node that hosts %q", n, e.Name)
		case e.Node != "" && !slices.Contains(names, e.Node):
			fail(p, "%q is not a node of the inventory (%s)", e.Node, strings.Join(names, ", "))
		}
	}
}
