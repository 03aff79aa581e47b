package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/weftnet/weft/config"
)

// UserDataWithPassword is the fleet's weft.yaml with password as the
// TCP MD5 password of every controllers entry (bgp.controllers and the
// nodes: overrides) that dials ctl: how one node is served the embedded
// reflector's password of its own. The document is decoded, changed in
// its YAML tree and written again (keys in order, comments kept,
// indented by two), then parsed as a node will: anything but those
// passwords differing is an error, and nothing is served. A document
// without such an entry is returned as it is, byte for byte.
func (inv *Inventory) UserDataWithPassword(ctl netip.AddrPort, password string) ([]byte, error) {
	plain, err := config.DecodeUserData(inv.UserData)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(plain, &doc); err != nil {
		return nil, fmt.Errorf("the fleet's weft.yaml: %w", err)
	}
	if setPasswords(&doc, ctl, password) == 0 {
		// Unless an entry the tree hides (behind an alias) dials ctl.
		if err := samePasswordsAside(plain, plain, ctl, password); err != nil {
			return nil, fmt.Errorf("the fleet's weft.yaml: an entry for the reflector was not found to set a node's password in: %w", err)
		}
		return inv.UserData, nil
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("the fleet's weft.yaml with a node's password: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("the fleet's weft.yaml with a node's password: %w", err)
	}
	if err := samePasswordsAside(plain, out.Bytes(), ctl, password); err != nil {
		return nil, fmt.Errorf("the fleet's weft.yaml with a node's password: %w", err)
	}
	return out.Bytes(), nil
}

// setPasswords sets the password of each controllers entry under n that
// dials ctl and counts them.
func setPasswords(n *yaml.Node, ctl netip.AddrPort, password string) int {
	count := 0
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value != "controllers" || v.Kind != yaml.SequenceNode {
				continue
			}
			for _, e := range v.Content {
				if e.Kind == yaml.MappingNode && dials(e, ctl) {
					setKey(e, "password", password)
					count++
				}
			}
		}
	}
	for _, c := range n.Content {
		count += setPasswords(c, ctl, password)
	}
	return count
}

// dials says whether the controllers entry e is ctl (port 0 or none
// being 179).
func dials(e *yaml.Node, ctl netip.AddrPort) bool {
	var addr netip.Addr
	port := 179
	for i := 0; i+1 < len(e.Content); i += 2 {
		k, v := e.Content[i].Value, e.Content[i+1]
		switch k {
		case "address":
			a, err := netip.ParseAddr(v.Value)
			if err != nil {
				return false
			}
			addr = a.Unmap()
		case "port":
			p, err := strconv.Atoi(v.Value)
			if err != nil {
				return false
			}
			if p != 0 {
				port = p
			}
		}
	}
	return addr == ctl.Addr() && port == int(ctl.Port())
}

// setKey makes key's value in mapping m the string s, adding the key when
// m lacks it.
func setKey(m *yaml.Node, key, s string) {
	v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// samePasswordsAside checks that rendered, as a node parses it, is orig
// with password on every controllers entry that dials ctl, and nothing
// else changed.
func samePasswordsAside(orig, rendered []byte, ctl netip.AddrPort, password string) error {
	want, err := config.Parse(orig)
	if err != nil {
		return err
	}
	got, err := config.Parse(rendered)
	if err != nil {
		return fmt.Errorf("it no longer parses: %w", err)
	}
	set := func(cs []config.Controller) {
		for i := range cs {
			port := cs[i].Port
			if port == 0 {
				port = 179
			}
			if cs[i].Address.Unmap() == ctl.Addr() && port == int(ctl.Port()) {
				cs[i].Password = password
			}
		}
	}
	if want.BGP != nil {
		set(want.BGP.Controllers)
	}
	for _, o := range want.Nodes {
		if o.BGP != nil {
			set(o.BGP.Controllers)
		}
	}
	a, errA := json.Marshal(want)
	b, errB := json.Marshal(got)
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		return errors.New("more than the reflector's password changed (an anchor or alias in a controllers entry?)")
	}
	return nil
}
