package controller

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/controller/fleetapi"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/config"
)

// Inventory is one validated inventory file: the fleet's weft.yaml, which
// every node receives as its user_data, and the nodes of the fleet.
//
//	config: {...}              # the fleet's weft.yaml inline, or
//	configFile: weft.yaml      # a file, relative to the inventory
//	nodes:
//	  - name: node-a           # the hostname the node gets
//	    macs: ["52:54:00:00:00:01"]  # recognised by any of its MACs...
//	    address: 10.0.2.15     # ...or by the address its requests come from
//	    prefix: 24             # optional: the prefix length DHCP gives with address
//	    uuid: ...              # optional; default derived from the name
//	    networkData: {...}     # optional network_data.json for the node
//
// An Inventory is not modified after ParseInventory returns it; it is safe
// for concurrent use.
type Inventory struct {
	// Path is the inventory file, as given to LoadInventory or
	// ParseInventory.
	Path string
	// ConfigPath is the file configFile names, resolved against the
	// inventory's directory; "" when the config is inline.
	ConfigPath string
	// Config is the fleet's weft.yaml as config.Parse reads it.
	Config *config.Config
	// UserData is the fleet's weft.yaml as written: configFile's bytes, or
	// the inline config's text cut out of the inventory (its indentation
	// removed, comments kept).
	UserData []byte
	// Nodes in inventory order.
	Nodes []Node

	byName map[string]int
	byMAC  map[string]int // net.HardwareAddr.String()
	byAddr map[netip.Addr]int
}

// Node is one node of the inventory and the documents it is served.
type Node struct {
	Name    string // hostname; meta_data.json name and hostname
	MACs    []net.HardwareAddr
	Address netip.Addr // zero when the node is recognised by MAC only
	// Prefix is the prefix length of Address that the DHCP server hands
	// out (its subnet mask); 0 = that of the DHCP interface's subnet
	// holding Address. Only with an IPv4 address.
	Prefix int
	// UUID is meta_data.json's uuid: as written, else derived from Name
	// (a version 5 UUID), so it is stable across controllers and restarts.
	UUID string
	// MetaData is the node's meta_data.json as served.
	MetaData []byte
	// NetworkData is the node's network_data.json as served: compact
	// JSON, keys in the order written; nil when the node has none.
	NetworkData []byte
	// Line is the line of the node's entry in the inventory.
	Line int
}

// Limits of what one inventory may hold.
const (
	maxInventory = 4 << 20 // bytes, as config's limit for weft.yaml
	maxNodes     = 10000
)

// inventoryKeys and nodeKeys are the keys an inventory and a node entry
// may have.
var (
	inventoryKeys = []string{"config", "configFile", "nodes"}
	nodeKeys      = []string{"name", "macs", "address", "prefix", "uuid", "networkData"}
)

// LoadInventory reads and validates the inventory file at path; see
// ParseInventory.
func LoadInventory(path string) (*Inventory, error) {
	data, err := readRegular(path, maxInventory)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return ParseInventory(data, path)
}

// readRegular reads a regular file of at most limit bytes: a device or a
// FIFO named by mistake must not hang or exhaust the controller.
func readRegular(path string, limit int64) ([]byte, error) {
	// Stat before opening: opening a FIFO blocks until a writer comes.
	if st, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such file", path)
	} else if err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", path, limit)
	}
	return data, nil
}

// ParseInventory decodes and validates an inventory document; name is its
// path, which errors carry and against whose directory configFile is
// resolved. Decoding is strict: an unknown key, a bad value, a duplicate
// node name, MAC, address or UUID, an invalid weft.yaml or network_data.json
// is an error naming its path and line. All errors are returned, joined;
// FieldErrors lists them.
//
// Beyond config.Parse, the fleet's weft.yaml is checked for what cannot be
// shared by several nodes: a fixed hostname or router ID, and static
// endpoints without a node (unless anycast) or on a node the inventory
// lacks.
func ParseInventory(data []byte, name string) (*Inventory, error) {
	return parseInventory(data, name, readRegular)
}

// parseInventory is ParseInventory reading configFile with read.
func parseInventory(data []byte, name string, read func(string, int64) ([]byte, error)) (*Inventory, error) {
	d := &invDecoder{file: name, read: read}
	inv := &Inventory{Path: name}
	if len(data) > maxInventory {
		return nil, &FieldError{File: name, Err: fmt.Errorf("%d bytes, more than the %d allowed", len(data), maxInventory)}
	}
	root, err := parseOneDocument(data)
	if err != nil {
		return nil, &FieldError{File: name, Err: err}
	}
	root, ok := resolve(root)
	if !ok || root.Kind != yaml.MappingNode {
		return nil, &FieldError{File: name, Line: root.Line, Err: fmt.Errorf("expected a mapping with keys %s, got %s", strings.Join(inventoryKeys, ", "), describe(root))}
	}
	var cfgKey, cfgVal, cfgFile, nodesVal *yaml.Node
	cfgEnd := 0 // the line where the inline config's text ends (exclusive)
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail("", k.Line, "a key must be a plain name, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k.Value, k.Line, "key repeated (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "config":
			cfgKey, cfgVal = k, v
			cfgEnd = len(lines(data)) + 1
			if i+2 < len(root.Content) {
				cfgEnd = root.Content[i+2].Line
			}
		case "configFile":
			cfgFile = v
		case "nodes":
			nodesVal = v
		default:
			d.fail(k.Value, k.Line, "unknown key%s", suggest(k.Value, inventoryKeys))
		}
	}

	var nodeYAML []*yaml.Node // each node's networkData value, or nil
	if nodesVal != nil && !isNull(nodesVal) {
		n, _ := resolve(nodesVal)
		if n.Kind != yaml.SequenceNode {
			d.fail("nodes", nodesVal.Line, "expected a list of nodes, got %s", describe(n))
		} else if len(n.Content) > maxNodes {
			d.fail("nodes", nodesVal.Line, "%d nodes, more than the %d allowed", len(n.Content), maxNodes)
		} else {
			for i, e := range n.Content {
				node, nd := d.node(e, i)
				inv.Nodes = append(inv.Nodes, node)
				nodeYAML = append(nodeYAML, nd)
			}
		}
	}
	d.duplicates(inv)

	// The fleet's weft.yaml; its tree (in its own file, or the inventory)
	// locates the fleet checks' errors.
	var cfgTree *yaml.Node
	cfgErrFile := name
	cfgPrefix := "config"
	switch {
	case cfgVal != nil && cfgFile != nil:
		d.fail("configFile", cfgFile.Line, "config is given too (line %d): give one of them", cfgVal.Line)
	case cfgVal != nil:
		inv.Config, inv.UserData, cfgTree = d.inlineConfig(data, cfgKey, cfgVal, cfgEnd)
	case cfgFile != nil:
		inv.ConfigPath, inv.Config, inv.UserData, cfgTree = d.configFile(cfgFile)
		cfgErrFile, cfgPrefix = inv.ConfigPath, ""
	default:
		d.fail("", 0, "the fleet's weft.yaml is missing: give config (inline) or configFile")
	}
	if inv.Config != nil && len(d.errs) == 0 {
		d.fleetChecks(inv, cfgTree, cfgErrFile, cfgPrefix)
	}
	for i := range inv.Nodes {
		if nodeYAML[i] != nil {
			d.networkData(inv, i, nodeYAML[i])
		}
	}
	if len(d.errs) > 0 {
		return nil, d.joined()
	}
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if n.UUID == "" {
			n.UUID = nodeUUID(n.Name)
		}
		n.MetaData = metaDataJSON(n)
	}
	return inv, nil
}

type invDecoder struct {
	file string
	read func(path string, limit int64) ([]byte, error)
	errs []*FieldError
}

func (d *invDecoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Path: path, Line: line, Err: fmt.Errorf(format, args...)})
}

// joined orders the errors by file (the inventory's first) and line, so
// that they read top to bottom.
func (d *invDecoder) joined() error {
	slices.SortStableFunc(d.errs, func(a, b *FieldError) int {
		if c := cmp.Compare(boolInt(a.File != d.file), boolInt(b.File != d.file)); c != 0 {
			return c
		}
		return cmp.Compare(lineKey(a.Line), lineKey(b.Line))
	})
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lineKey puts errors without a line last.
func lineKey(l int) int {
	if l <= 0 {
		return 1 << 30
	}
	return l
}

// scalar returns the text of a scalar at path; null and non-scalars are
// reported.
func (d *invDecoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	line := n.Line
	n, ok := resolve(n)
	switch {
	case !ok:
		d.fail(path, line, "unresolvable alias")
		return "", false
	case isNull(n):
		d.fail(path, line, "required: %s", want)
		return "", false
	case n.Kind != yaml.ScalarNode:
		d.fail(path, line, "expected %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *invDecoder) node(e *yaml.Node, i int) (Node, *yaml.Node) {
	p := "nodes[" + strconv.Itoa(i) + "]"
	node := Node{Line: e.Line}
	e, ok := resolve(e)
	if !ok || e.Kind != yaml.MappingNode {
		d.fail(p, node.Line, "expected a mapping with keys %s, got %s", strings.Join(nodeKeys, ", "), describe(e))
		return node, nil
	}
	var nd *yaml.Node
	prefixLine := 0
	errsBefore := len(d.errs)
	seen := map[string]int{}
	for j := 0; j+1 < len(e.Content); j += 2 {
		k, v := e.Content[j], e.Content[j+1]
		kp := p + "." + k.Value
		if k.Kind != yaml.ScalarNode {
			d.fail(p, k.Line, "a key must be a plain name, got %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.fail(kp, k.Line, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(kp, k.Line, "key repeated (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "name":
			if s, ok := d.scalar(v, kp, "the node's hostname"); ok {
				if err := fleetapi.CheckNodeName(s); err != nil {
					d.fail(kp, v.Line, "%v", err)
				} else {
					node.Name = s
				}
			}
		case "macs":
			node.MACs = d.macs(v, kp)
		case "address":
			if s, ok := d.scalar(v, kp, "an IP address"); ok {
				a, err := netip.ParseAddr(s)
				switch {
				case err != nil || a.Zone() != "":
					d.fail(kp, v.Line, "%q is not an IP address", s)
				case a.IsUnspecified() || a.IsMulticast():
					d.fail(kp, v.Line, "%s is not a node's address", a)
				default:
					node.Address = a.Unmap()
				}
			}
		case "prefix":
			if s, ok := d.scalar(v, kp, "a prefix length (like 24)"); ok {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > 128 {
					d.fail(kp, v.Line, "%q is not an IPv4 prefix length: want 1..32", s)
				} else {
					node.Prefix, prefixLine = n, v.Line // checked against the address below
				}
			}
		case "uuid":
			if s, ok := d.scalar(v, kp, "a UUID"); ok {
				if !uuidRE.MatchString(s) {
					d.fail(kp, v.Line, "%q is not a UUID (like 5f0c3b1e-8d2a-4c7e-9b1a-2e4f6a8c0d12)", s)
				} else {
					node.UUID = strings.ToLower(s)
				}
			}
		case "networkData":
			if r, ok := resolve(v); ok && !isNull(r) {
				nd = v
			}
		default:
			d.fail(kp, k.Line, "unknown key%s", suggest(k.Value, nodeKeys))
		}
	}
	if _, ok := seen["name"]; !ok {
		d.fail(p+".name", node.Line, "required: the node's hostname")
	}
	switch {
	case node.Prefix == 0:
	case node.Address.IsValid() && !node.Address.Is4():
		d.fail(p+".prefix", prefixLine, "only for an IPv4 address (the DHCPv4 server's subnet mask); %s is IPv6", node.Address)
	case node.Prefix > 32:
		d.fail(p+".prefix", prefixLine, "\"%d\" is not an IPv4 prefix length: want 1..32", node.Prefix)
	case !node.Address.IsValid() && len(d.errs) == errsBefore:
		d.fail(p+".prefix", prefixLine, "the prefix length of the node's address: give address too")
	}
	if len(node.MACs) == 0 && !node.Address.IsValid() && len(d.errs) == errsBefore {
		d.fail(p, node.Line, "a node needs macs or an address, or no request can be recognised as its")
	}
	return node, nd
}

func (d *invDecoder) macs(v *yaml.Node, path string) []net.HardwareAddr {
	line := v.Line
	v, ok := resolve(v)
	if !ok || v.Kind != yaml.SequenceNode {
		d.fail(path, line, "expected a list of MAC addresses, got %s", describe(v))
		return nil
	}
	var out []net.HardwareAddr
	for i, e := range v.Content {
		ep := path + "[" + strconv.Itoa(i) + "]"
		s, ok := d.scalar(e, ep, "a MAC address")
		if !ok {
			continue
		}
		mac, err := parseMAC(s)
		if err != nil {
			d.fail(ep, e.Line, "%v", err)
			continue
		}
		if slices.ContainsFunc(out, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
			d.fail(ep, e.Line, "%s is listed twice", mac)
			continue
		}
		out = append(out, mac)
	}
	return out
}

// parseMAC reads a unicast Ethernet MAC address.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.TrimSpace(s))
	switch {
	case err != nil || len(mac) != 6:
		return nil, fmt.Errorf("%q is not a MAC address (like 52:54:00:12:34:56)", s)
	case mac[0]&1 == 1:
		return nil, fmt.Errorf("%s is a multicast MAC address, not a NIC's", mac)
	case bytes.Equal(mac, make([]byte, 6)):
		return nil, fmt.Errorf("%s is not a NIC's MAC address", mac)
	}
	return mac, nil
}

// duplicates finds node names, MACs, addresses and UUIDs given twice, and
// builds the lookup maps.
func (d *invDecoder) duplicates(inv *Inventory) {
	inv.byName = map[string]int{}
	inv.byMAC = map[string]int{}
	inv.byAddr = map[netip.Addr]int{}
	uuids := map[string]int{}
	which := func(j int) string {
		return fmt.Sprintf("nodes[%d] (%s, line %d)", j, inv.Nodes[j].Name, inv.Nodes[j].Line)
	}
	for i, n := range inv.Nodes {
		p := "nodes[" + strconv.Itoa(i) + "]"
		if n.Name != "" {
			key := strings.ToLower(n.Name)
			if j, dup := inv.byName[key]; dup {
				d.fail(p+".name", n.Line, "%q is already the name of %s", n.Name, which(j))
			} else {
				inv.byName[key] = i
			}
		}
		for k, mac := range n.MACs {
			if j, dup := inv.byMAC[mac.String()]; dup {
				d.fail(fmt.Sprintf("%s.macs[%d]", p, k), n.Line, "%s is already a MAC of %s", mac, which(j))
			} else {
				inv.byMAC[mac.String()] = i
			}
		}
		if n.Address.IsValid() {
			if j, dup := inv.byAddr[n.Address]; dup {
				d.fail(p+".address", n.Line, "%s is already the address of %s: requests from it could not tell the nodes apart", n.Address, which(j))
			} else {
				inv.byAddr[n.Address] = i
			}
		}
		if n.UUID != "" {
			if j, dup := uuids[n.UUID]; dup {
				d.fail(p+".uuid", n.Line, "%s is already the UUID of %s", n.UUID, which(j))
			} else {
				uuids[n.UUID] = i
			}
		}
	}
}

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
	tree, ok := resolve(val)
	if !ok || tree.Kind != yaml.MappingNode {
		d.fail("config", val.Line, "expected the fleet's weft.yaml (a mapping), got %s", describe(tree))
		return nil, nil, nil
	}
	text, first := cutText(src, key, val, end)
	offset := first - 1
	budget := maxJSONValues
	if cut, err := parseOneDocument(text); err != nil || !sameTree(cut, tree, &budget) {
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
			line = lineAt(tree, e.path)
			if line == 0 {
				line = val.Line
			}
		}
		d.errs = append(d.errs, &FieldError{File: d.file, Path: path, Line: line, Err: e.err})
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
		d.errs = append(d.errs, &FieldError{File: path, Path: e.path, Line: e.line, Err: e.err})
	}
	if c == nil {
		return path, nil, nil, nil
	}
	var tree *yaml.Node
	if plain, err := config.DecodeUserData(data); err == nil {
		tree, _ = parseOneDocument(plain)
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
		var fe *config.FieldError
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
		d.errs = append(d.errs, &FieldError{File: file, Path: full, Line: lineAt(tree, path), Err: fmt.Errorf(format, args...)})
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

// networkData converts node i's networkData to network_data.json and
// validates it as the node will read it: every problem config's parser
// finds is an error here, where the operator can still fix it.
func (d *invDecoder) networkData(inv *Inventory, i int, v *yaml.Node) {
	p := fmt.Sprintf("nodes[%d].networkData", i)
	tree, _ := resolve(v)
	if tree.Kind != yaml.MappingNode {
		d.fail(p, v.Line, "expected network_data.json (a mapping with links, networks, services), got %s", describe(tree))
		return
	}
	b, err := yamlToJSON(v)
	if err != nil {
		var je *jsonPathError
		if errors.As(err, &je) {
			d.fail(joinKey(p, je.path), je.line, "%v", je.err)
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
		line := lineAt(tree, pr.Path)
		if line == 0 {
			line = v.Line
		}
		d.fail(joinKey(p, pr.Path), line, "%v", pr.Err)
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
				d.fail(joinKey(p, path), lineAt(tree, path), "%s is a MAC of nodes[%d] (%s), not of this node", mac, k, inv.Nodes[k].Name)
			}
		}
	}
	inv.Nodes[i].NetworkData = b
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// uuidNamespace is the name space of the UUIDs derived from node names
// (RFC 9562 version 5): fixed, so a node keeps its UUID.
var uuidNamespace = [16]byte{0x8f, 0x3a, 0x51, 0x0e, 0x2c, 0x4b, 0x4d, 0x96, 0xa1, 0x7e, 0x5c, 0x0b, 0x93, 0xd2, 0x64, 0x1f}

func nodeUUID(name string) string {
	h := sha1.New()
	h.Write(uuidNamespace[:])
	h.Write([]byte(name))
	s := h.Sum(nil)[:16]
	s[6] = s[6]&0x0f | 0x50 // version 5
	s[8] = s[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// metaData is the meta_data.json the controller serves, in Nova's field
// names and order.
type metaData struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Hostname    string `json:"hostname"`
	LaunchIndex int    `json:"launch_index"`
}

func metaDataJSON(n *Node) []byte {
	b, _ := json.Marshal(metaData{UUID: n.UUID, Name: n.Name, Hostname: n.Name})
	return b
}

// Node returns the node called name (hostnames compare without regard to
// case), or nil.
func (inv *Inventory) Node(name string) *Node {
	if i, ok := inv.byName[strings.ToLower(name)]; ok {
		return &inv.Nodes[i]
	}
	return nil
}

// ErrUnknownNode is wrapped by Match's error for a request from no node of
// the inventory; ErrAmbiguousNode when the request's MACs belong to
// different nodes.
var (
	ErrUnknownNode   = errors.New("not in the inventory")
	ErrAmbiguousNode = errors.New("MACs of different nodes")
)

// matchError is Match's error: its message is for the operator; Is tells
// the kind.
type matchError struct {
	msg  string
	kind error
}

func (e *matchError) Error() string        { return e.msg }
func (e *matchError) Is(target error) bool { return target == e.kind }

// Match returns the node a request comes from: the node that has any of
// macs (every one of them that is known must be that node's), else the node
// at addr. Its error, for an operator reading a node's console, says what
// was seen and what the inventory lacks.
func (inv *Inventory) Match(macs []net.HardwareAddr, addr netip.Addr) (*Node, error) {
	found := -1
	for _, m := range macs {
		i, ok := inv.byMAC[m.String()]
		if !ok {
			continue
		}
		if found >= 0 && found != i {
			return nil, &matchError{fmt.Sprintf("the request's MACs belong to nodes %q and %q of the inventory %s (%s: %s): one machine's NICs must be under one node",
				inv.Nodes[found].Name, inv.Nodes[i].Name, inv.Path, fleetapi.MACHeader, fleetapi.FormatMACHeader(macs)), ErrAmbiguousNode}
		}
		found = i
	}
	if found >= 0 {
		return &inv.Nodes[found], nil
	}
	addr = addr.Unmap().WithZone("")
	if i, ok := inv.byAddr[addr]; ok && addr.IsValid() {
		return &inv.Nodes[i], nil
	}
	where := "the inventory"
	if inv.Path != "" {
		where = "the inventory " + inv.Path
	}
	if len(macs) == 0 {
		return nil, &matchError{fmt.Sprintf("no node of %s has address %v, and the request named no MAC (header %s): add the address to the node's entry, or its MACs and have the node send them", where, addr, fleetapi.MACHeader), ErrUnknownNode}
	}
	return nil, &matchError{fmt.Sprintf("no node of %s has MAC %s or address %v: add the node, with its MACs under macs", where, orList(macs), addr), ErrUnknownNode}
}

func orList(macs []net.HardwareAddr) string {
	s := make([]string, len(macs))
	for i, m := range macs {
		s[i] = m.String()
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
