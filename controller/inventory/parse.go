package inventory

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/internal/strictyaml"
)

// Parse decodes and validates an inventory document; name is its
// path, which errors carry and against whose directory configFile is
// resolved. Decoding is strict: an unknown key, a bad value, a duplicate
// node name, MAC, address or UUID, an invalid weft.yaml or network_data.json
// is an error naming its path and line. All errors are returned, joined;
// errors.As finds each strictyaml.FieldError.
//
// Beyond config.Parse, the fleet's weft.yaml is checked for what cannot be
// shared by several nodes: a fixed hostname or router ID, and static
// endpoints without a node (unless anycast) or on a node the inventory
// lacks.
func Parse(data []byte, name string) (*Inventory, error) {
	return parseInventory(data, name, ReadRegular)
}

// parseInventory is Parse reading configFile with read.
func parseInventory(data []byte, name string, read func(string, int64) ([]byte, error)) (*Inventory, error) {
	d := &invDecoder{file: name, read: read}
	inv := &Inventory{Path: name}
	if len(data) > maxInventory {
		return nil, &strictyaml.FieldError{File: name, Err: fmt.Errorf("%d bytes, more than the %d allowed", len(data), maxInventory)}
	}
	root, err := parseDocument(data)
	if err != nil {
		return nil, &strictyaml.FieldError{File: name, Err: err}
	}
	root, ok := strictyaml.Resolve(root)
	if !ok || root.Kind != yaml.MappingNode {
		return nil, &strictyaml.FieldError{File: name, Line: root.Line, Err: fmt.Errorf("expected a mapping with keys %s, got %s", strings.Join(inventoryKeys, ", "), strictyaml.Describe(root))}
	}
	var cfgKey, cfgVal, cfgFile, nodesVal *yaml.Node
	cfgEnd := 0 // the line where the inline config's text ends (exclusive)
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail("", k.Line, "a key must be a plain name, got %s", strictyaml.Describe(k))
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
			d.fail(k.Value, k.Line, "unknown key%s", strictyaml.SuggestKey(k.Value, inventoryKeys))
		}
	}

	var nodeYAML []*yaml.Node // each node's networkData value, or nil
	if nodesVal != nil && !strictyaml.IsNull(nodesVal) {
		n, _ := strictyaml.Resolve(nodesVal)
		if n.Kind != yaml.SequenceNode {
			d.fail("nodes", nodesVal.Line, "expected a list of nodes, got %s", strictyaml.Describe(n))
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
	errs []*strictyaml.FieldError
}

func (d *invDecoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &strictyaml.FieldError{File: d.file, Path: path, Line: line, Err: fmt.Errorf(format, args...)})
}

// joined orders the errors by file (the inventory's first) and line, so
// that they read top to bottom.
func (d *invDecoder) joined() error {
	slices.SortStableFunc(d.errs, func(a, b *strictyaml.FieldError) int {
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
	n, ok := strictyaml.Resolve(n)
	switch {
	case !ok:
		d.fail(path, line, "unresolvable alias")
		return "", false
	case strictyaml.IsNull(n):
		d.fail(path, line, "required: %s", want)
		return "", false
	case n.Kind != yaml.ScalarNode:
		d.fail(path, line, "expected %s, got %s", want, strictyaml.Describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *invDecoder) node(e *yaml.Node, i int) (Node, *yaml.Node) {
	p := "nodes[" + strconv.Itoa(i) + "]"
	node := Node{Line: e.Line}
	e, ok := strictyaml.Resolve(e)
	if !ok || e.Kind != yaml.MappingNode {
		d.fail(p, node.Line, "expected a mapping with keys %s, got %s", strings.Join(nodeKeys, ", "), strictyaml.Describe(e))
		return node, nil
	}
	var nd *yaml.Node
	prefixLine := 0
	errsBefore := len(d.errs)
	named := false
	for pair := range strictyaml.Pairs(e, p, d.fail) {
		k, v, kp := pair.Key, pair.Value, pair.Path
		switch k.Value {
		case "name":
			named = true
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
			if r, ok := strictyaml.Resolve(v); ok && !strictyaml.IsNull(r) {
				nd = v
			}
		default:
			d.fail(kp, k.Line, "unknown key%s", strictyaml.SuggestKey(k.Value, nodeKeys))
		}
	}
	if !named {
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
	v, ok := strictyaml.Resolve(v)
	if !ok || v.Kind != yaml.SequenceNode {
		d.fail(path, line, "expected a list of MAC addresses, got %s", strictyaml.Describe(v))
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

// parseDocument returns the root of the one YAML document in data, in the
// inventory's words.
func parseDocument(data []byte) (*yaml.Node, error) {
	root, err := strictyaml.ParseDocument(data)
	if err != nil {
		var fe *strictyaml.FieldError
		if !errors.As(err, &fe) {
			return nil, err
		}
		if errors.Is(fe.Err, strictyaml.ErrSecondDocument) {
			return nil, fmt.Errorf("line %d: a second YAML document; the inventory is one document", fe.Line)
		}
		return nil, fe.Err
	}
	return root, nil
}
