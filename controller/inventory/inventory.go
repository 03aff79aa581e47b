// Package inventory reads the controller's inventory file: the fleet's
// weft.yaml, which every node receives as its user_data (with its own
// reflector password: UserDataWithPassword), and the table of
// nodes, each recognised by its MACs or its address. Decoding is strict
// (internal/strictyaml): every error names its file, path and line.
package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"

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
// An Inventory is not modified after Parse returns it; it is safe
// for concurrent use.
type Inventory struct {
	// Path is the inventory file, as given to Load or
	// Parse.
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

// Load reads and validates the inventory file at path; see
// Parse.
func Load(path string) (*Inventory, error) {
	data, err := ReadRegular(path, maxInventory)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return Parse(data, path)
}

// Files are the files the inventory at path reads: itself and the
// configFile it names, even when the inventory is refused (fixing that
// file must trigger a reload too).
func Files(path string) []string {
	files := []string{path}
	data, err := ReadRegular(path, maxInventory)
	if err != nil {
		return files
	}
	var doc struct {
		ConfigFile string `yaml:"configFile"`
	}
	if yaml.Unmarshal(data, &doc) != nil || doc.ConfigFile == "" {
		return files
	}
	cf := doc.ConfigFile
	if !filepath.IsAbs(cf) {
		cf = filepath.Join(filepath.Dir(path), cf)
	}
	return append(files, cf)
}

// ReadRegular reads a regular file of at most limit bytes: a device or a
// FIFO named by mistake must not hang or exhaust the controller.
func ReadRegular(path string, limit int64) ([]byte, error) {
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
