package inventory

import (
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/weftnet/weft/controller/fleetapi"
)

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
