package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/strictyaml"
)

// networkData converts node i's networkData to network_data.json and
// validates it as the node will read it: every problem config's parser
// finds is an error here, where the operator can still fix it.
func (d *invDecoder) networkData(inv *Inventory, i int, v *yaml.Node) {
	p := fmt.Sprintf("nodes[%d].networkData", i)
	tree, _ := strictyaml.Resolve(v)
	if tree.Kind != yaml.MappingNode {
		d.fail(p, v.Line, "expected network_data.json (a mapping with links, networks, services), got %s", strictyaml.Describe(tree))
		return
	}
	b, err := yamlToJSON(v)
	if err != nil {
		var je *jsonPathError
		if errors.As(err, &je) {
			d.fail(strictyaml.JoinPath(p, je.path), je.line, "%v", je.err)
		} else {
			d.fail(p, v.Line, "%v", err)
		}
		return
	}
	nd, err := config.ParseNetworkData(b)
	if err != nil {
		d.fail(p, v.Line, "%v", err)
		return
	}
	_, probs := nd.Underlay()
	for _, pr := range probs {
		line := strictyaml.LineAt(tree, pr.Path)
		if line == 0 {
			line = v.Line
		}
		d.fail(strictyaml.JoinPath(p, pr.Path), line, "%v", pr.Err)
	}
	if len(probs) == 0 {
		// A NIC of another node: the copy-and-paste slip that leaves a node
		// waiting for a NIC it does not have.
		for j, l := range nd.Links {
			mac, err := net.ParseMAC(l.MAC)
			if err != nil {
				continue
			}
			if k, ok := inv.byMAC[mac.String()]; ok && k != i {
				path := fmt.Sprintf("links[%d].ethernet_mac_address", j)
				d.fail(strictyaml.JoinPath(p, path), strictyaml.LineAt(tree, path), "%s is a MAC of nodes[%d] (%s), not of this node", mac, k, inv.Nodes[k].Name)
			}
		}
	}
	inv.Nodes[i].NetworkData = b
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
	n, ok := strictyaml.Resolve(n)
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
			kp := strictyaml.JoinPath(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				return &jsonPathError{path, k.Line, fmt.Errorf("a key must be a plain name, got %s", strictyaml.Describe(k))}
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
			return &jsonPathError{path, line, fmt.Errorf("%s has no JSON form: %w", strictyaml.Describe(n), err)}
		}
		b.Write(vb)
	default:
		return &jsonPathError{path, line, fmt.Errorf("unsupported YAML node")}
	}
	return nil
}

// sameTree reports whether two YAML trees hold the same values (styles,
// comments and positions aside): the check that a verbatim cut of the
// inventory's text reads as the value the inventory's parser saw.
func sameTree(a, b *yaml.Node, budget *int) bool {
	var ok1, ok2 bool
	a, ok1 = strictyaml.Resolve(a)
	b, ok2 = strictyaml.Resolve(b)
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

// expandAliases copies a tree with every alias replaced by a copy of its
// anchor's value, so that it can be encoded apart from the document the
// anchors are in. Past the budget, or on a broken alias, it stops copying
// (the result then fails to parse, with a message saying so).
func expandAliases(n *yaml.Node, budget *int) *yaml.Node {
	r, ok := strictyaml.Resolve(n)
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
