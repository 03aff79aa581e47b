package inventory

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/strictyaml"
)

// baseConfig is a valid fleet weft.yaml, inline (indented under config:).
const baseConfig = `config:
  bgp:
    asn: 64512
    controllers:
      - {address: 10.0.2.2}
`

func TestInventoryErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badWeft := write("bad-weft.yaml", "# line 1\nbgp:\n  asn: 0\n  controllers: [{address: 10.0.2.2}]\n")
	write("cloud.yaml", "#cloud-config\npackages: [nginx]\n")
	write("good-weft.yaml", "bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2}]\n")

	tests := []struct {
		name string
		doc  string
		// want are substrings of one error each, in this form:
		// "<file>: <path> (line N): <message part>"; "<dir>" is the
		// test's directory.
		want []string
	}{{
		name: "unknown top-level key",
		doc:  baseConfig + "nodez: []\n",
		want: []string{`inv.yaml: nodez (line 6): unknown key; did you mean "nodes"?`},
	}, {
		name: "unknown node key",
		doc:  baseConfig + "nodes:\n  - name: a\n    mac: [\"52:54:00:00:00:01\"]\n",
		want: []string{`inv.yaml: nodes[0].mac (line 8): unknown key; did you mean "macs"?`},
	}, {
		name: "bad MAC",
		doc:  baseConfig + "nodes:\n  - name: a\n    macs: [\"52:54:00:00:00:01\", \"52:54:zz:00:00:02\"]\n",
		want: []string{`inv.yaml: nodes[0].macs[1] (line 8): "52:54:zz:00:00:02" is not a MAC address`},
	}, {
		name: "bad prefix",
		doc:  baseConfig + "nodes:\n  - {name: a, address: 10.0.2.15, prefix: 33}\n  - {name: b, address: \"fd00::2\", prefix: 64}\n  - {name: c, macs: [\"52:54:00:00:00:03\"], prefix: 24}\n",
		want: []string{
			`inv.yaml: nodes[0].prefix (line 7): "33" is not an IPv4 prefix length: want 1..32`,
			`inv.yaml: nodes[1].prefix (line 8): only for an IPv4 address (the DHCPv4 server's subnet mask); fd00::2 is IPv6`,
			`inv.yaml: nodes[2].prefix (line 9): the prefix length of the node's address: give address too`,
		},
	}, {
		name: "multicast MAC",
		doc:  baseConfig + "nodes:\n  - name: a\n    macs: [\"01:00:5e:00:00:01\"]\n",
		want: []string{`nodes[0].macs[0] (line 8): 01:00:5e:00:00:01 is a multicast MAC address`},
	}, {
		name: "MACs not a list",
		doc:  baseConfig + "nodes:\n  - name: a\n    macs: \"52:54:00:00:00:01\"\n",
		want: []string{`nodes[0].macs (line 8): expected a list of MAC addresses, got "52:54:00:00:00:01"`},
	}, {
		name: "invalid inline weft.yaml names the inventory line",
		doc:  "# fleet\nconfig:\n  bgp:\n    asn: 0\n    controllers:\n      - {address: 10.0.2.2, asn: 99999999999}\nnodes: []\n",
		want: []string{
			`inv.yaml: config.bgp.asn (line 4): 0 is out of range`,
			`inv.yaml: config.bgp.controllers[0].asn (line 6): 99999999999 is out of range`,
		},
	}, {
		name: "unknown key in inline weft.yaml",
		doc:  "config:\n  bgp:\n    asn: 64512\n    controllers: [{address: 10.0.2.2}]\n  overlai: {}\n",
		want: []string{`inv.yaml: config.overlai (line 5): unknown key; did you mean "overlay"?`},
	}, {
		name: "invalid flow weft.yaml",
		doc:  "config: {bgp: {asn: 64512, controllers: [{address: 10.0.2.2, port: 0x1ffff}]}}\nnodes: []\n",
		want: []string{`inv.yaml: config.bgp.controllers[0].port (line 1): 131071 is out of range`},
	}, {
		name: "inventory in flow style on one line",
		doc:  `{config: {bgp: {asn: 64512, controllers: [{address: 300.0.2.2}]}}, nodes: []}`,
		want: []string{`inv.yaml: config.bgp.controllers[0].address (line 1): "300.0.2.2" is not an IP address`},
	}, {
		name: "invalid weft.yaml in configFile names that file",
		doc:  "configFile: bad-weft.yaml\nnodes: []\n",
		want: []string{"<dir>/bad-weft.yaml: bgp.asn (line 3): 0 is out of range"},
	}, {
		name: "configFile missing",
		doc:  "configFile: nowhere.yaml\nnodes: []\n",
		want: []string{"inv.yaml: configFile (line 1): <dir>/nowhere.yaml: no such file"},
	}, {
		name: "configFile is cloud-init",
		doc:  "configFile: cloud.yaml\n",
		want: []string{"<dir>/cloud.yaml: this is cloud-init user data"},
	}, {
		name: "configFile is a directory",
		doc:  "configFile: .\n",
		want: []string{"inv.yaml: configFile (line 1): <dir>: not a regular file"},
	}, {
		name: "config and configFile",
		doc:  baseConfig + "configFile: good-weft.yaml\n",
		want: []string{"inv.yaml: configFile (line 6): config is given too (line 2): give one of them"},
	}, {
		name: "no config",
		doc:  "nodes: []\n",
		want: []string{"inv.yaml: the fleet's weft.yaml is missing: give config (inline) or configFile"},
	}, {
		name: "config not weft.yaml",
		doc:  "config:\n  packages: [nginx]\n",
		want: []string{"inv.yaml: config (line 2): not weft.yaml: no top-level node"},
	}, {
		name: "duplicate names",
		doc:  baseConfig + "nodes:\n  - {name: a, address: 10.0.2.15}\n  - {name: A, address: 10.0.2.16}\n",
		want: []string{`inv.yaml: nodes[1].name (line 8): "A" is already the name of nodes[0] (a, line 7)`},
	}, {
		name: "duplicate MACs",
		doc:  baseConfig + "nodes:\n  - {name: a, macs: [\"52:54:00:00:00:01\"]}\n  - {name: b, macs: [\"52:54:00:00:00:02\", \"52-54-00-00-00-01\"]}\n",
		want: []string{`inv.yaml: nodes[1].macs[1] (line 8): 52:54:00:00:00:01 is already a MAC of nodes[0] (a, line 7)`},
	}, {
		name: "MAC twice in one node",
		doc:  baseConfig + "nodes:\n  - {name: a, macs: [\"52:54:00:00:00:01\", \"52:54:00:00:00:01\"]}\n",
		want: []string{`nodes[0].macs[1] (line 7): 52:54:00:00:00:01 is listed twice`},
	}, {
		name: "duplicate addresses",
		doc:  baseConfig + "nodes:\n  - {name: a, address: 10.0.2.15}\n  - {name: b, address: 10.0.2.15}\n",
		want: []string{`inv.yaml: nodes[1].address (line 8): 10.0.2.15 is already the address of nodes[0] (a, line 7)`},
	}, {
		name: "duplicate UUIDs",
		doc:  baseConfig + "nodes:\n  - {name: a, address: 10.0.2.15, uuid: 5f0c3b1e-8d2a-4c7e-9b1a-2e4f6a8c0d12}\n  - {name: b, address: 10.0.2.16, uuid: 5F0C3B1E-8D2A-4C7E-9B1A-2E4F6A8C0D12}\n",
		want: []string{`nodes[1].uuid (line 8): 5f0c3b1e-8d2a-4c7e-9b1a-2e4f6a8c0d12 is already the UUID of nodes[0]`},
	}, {
		name: "bad values",
		doc:  baseConfig + "nodes:\n  - name: -a\n    address: 10.0.2.300\n    uuid: 1234\n  - {name: b, address: 224.0.0.1}\n",
		want: []string{
			`nodes[0].name (line 7): "-a" is not a valid hostname`,
			`nodes[0].address (line 8): "10.0.2.300" is not an IP address`,
			`nodes[0].uuid (line 9): "1234" is not a UUID`,
			`nodes[1].address (line 10): 224.0.0.1 is not a node's address`,
		},
	}, {
		name: "node without name or identity",
		doc:  baseConfig + "nodes:\n  - {macs: [\"52:54:00:00:00:01\"]}\n  - {name: b}\n",
		want: []string{
			`nodes[0].name (line 7): required: the node's hostname`,
			`nodes[1] (line 8): a node needs macs or an address`,
		},
	}, {
		name: "nodes not a list",
		doc:  baseConfig + "nodes: {name: a}\n",
		want: []string{`nodes (line 6): expected a list of nodes, got a mapping`},
	}, {
		name: "repeated key",
		doc:  baseConfig + "nodes: []\nnodes: []\n",
		want: []string{`nodes (line 7): key repeated (first at line 6)`},
	}, {
		name: "two documents",
		doc:  baseConfig + "---\nnodes: []\n",
		want: []string{`inv.yaml: line 6: a second YAML document`},
	}, {
		name: "empty",
		doc:  "# nothing\n",
		want: []string{`inv.yaml: the document is empty`},
	}, {
		name: "not a mapping",
		doc:  "- a\n- b\n",
		want: []string{`inv.yaml: (line 1): expected a mapping with keys config, configFile, nodes, got a list`},
	}, {
		name: "YAML syntax",
		doc:  "config: [\n",
		want: []string{`inv.yaml: yaml: line 1:`},
	}, {
		name: "networkData not a mapping",
		doc:  baseConfig + "nodes:\n  - name: a\n    address: 10.0.2.15\n    networkData: [1, 2]\n",
		want: []string{`nodes[0].networkData (line 9): expected network_data.json (a mapping with links, networks, services), got a list`},
	}, {
		name: "networkData problems name their path and line",
		doc: baseConfig + `nodes:
  - name: a
    address: 10.0.2.15
    networkData:
      links:
        - {id: eth0, type: phy, ethernet_mac_address: "52:54:00:00:00:01"}
        - id: eth1
          type: wormhole
      networks:
        - {id: n0, link: eth9, type: ipv4_dhcp}
`,
		want: []string{
			// An inventory is the operator's own file: what a node would
			// take with a warning (an unknown type, used as a NIC) is an
			// error here, where it can still be fixed.
			`nodes[0].networkData.links[1].ethernet_mac_address (line 12): missing; a NIC is matched by its MAC`,
			`nodes[0].networkData.links[1].type (line 13): "wormhole" is not a known link type`,
			`nodes[0].networkData.networks[0].link (line 15): no link is called "eth9"`,
		},
	}, {
		name: "networkData links not a list",
		doc:  baseConfig + "nodes:\n  - name: a\n    address: 10.0.2.15\n    networkData: {links: 3}\n",
		want: []string{`nodes[0].networkData (line 9): network_data.json: links: want a list, got a number`},
	}, {
		name: "networkData value without a JSON form",
		doc:  baseConfig + "nodes:\n  - name: a\n    address: 10.0.2.15\n    networkData: {links: [{id: eth0, mtu: .nan}]}\n",
		want: []string{`nodes[0].networkData.links[0].mtu (line 9): .nan has no JSON form`},
	}, {
		name: "networkData with another node's MAC",
		doc: baseConfig + `nodes:
  - {name: a, macs: ["52:54:00:00:00:01"]}
  - name: b
    macs: ["52:54:00:00:00:02"]
    networkData:
      links:
        - {id: eth0, type: phy, ethernet_mac_address: "52:54:00:00:00:01"}
`,
		want: []string{`nodes[1].networkData.links[0].ethernet_mac_address (line 12): 52:54:00:00:00:01 is a MAC of nodes[0] (a), not of this node`},
	}, {
		name: "fleet checks",
		doc: `config:
  node:
    hostname: same
    routerID: 192.0.2.1
  bgp:
    asn: 64512
    routerID: 192.0.2.1
    controllers: [{address: 10.0.2.2}]
  networks:
    - {name: db, vni: 200, subnets: ["10.0.100.0/24"]}
  endpoints:
    - {name: pg1, network: db, address: 10.0.100.3/24}
    - {name: pg2, network: db, address: 10.0.100.4/24, node: node-z}
    - {name: vip, network: db, address: 10.0.100.9/24, anycast: true}
nodes:
  - {name: node-a, address: 10.0.2.15}
  - {name: node-b, address: 10.0.2.16}
`,
		want: []string{
			`inv.yaml: config.node.hostname (line 3): "same" would be the hostname of all 2 nodes`,
			`inv.yaml: config.node.routerID (line 4): 192.0.2.1 would be the router ID of all 2 nodes`,
			`inv.yaml: config.bgp.routerID (line 7): 192.0.2.1 would be the router ID of all 2 nodes`,
			`inv.yaml: config.endpoints[0].node (line 12): missing: this weft.yaml serves 2 nodes`,
			`inv.yaml: config.endpoints[1].node (line 13): "node-z" is not a node of the inventory (node-a, node-b)`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse([]byte(tt.doc), filepath.Join(dir, "inv.yaml"))
			if err == nil {
				t.Fatalf("no error; nodes %v", inv.Nodes)
			}
			msg := err.Error()
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "<dir>", dir)
				if !strings.HasPrefix(w, dir) && !strings.HasPrefix(w, "inv.yaml") {
					w = "inv.yaml: " + w
				}
				w = strings.ReplaceAll(w, "inv.yaml", filepath.Join(dir, "inv.yaml"))
				if !strings.Contains(msg, w) {
					t.Errorf("errors lack\n  %s\ngot:\n  %s", w, strings.ReplaceAll(msg, "\n", "\n  "))
				}
			}
			if n := len(fieldErrors(err)); n != len(tt.want) {
				t.Errorf("%d errors, want %d:\n  %s", n, len(tt.want), strings.ReplaceAll(msg, "\n", "\n  "))
			}
			var fe *strictyaml.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("errors.As finds no strictyaml.FieldError in %v", err)
			}
		})
	}
	_ = badWeft
}

func TestInventoryInline(t *testing.T) {
	inv, err := Load("testdata/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The user_data is the operator's text, unindented, comments kept, and
	// not the inventory's comment about the nodes that follows it.
	want := `# Every node gets this document as its user_data.
bgp:
  asn: 64512
  controllers:
    - {address: 10.0.2.2, password: s3cret}
overlay:
  encapsulation: [mplsoudp, vxlan]
networks:
  - name: leonardo
    vni: 100
    routeTargets: {import: ["64512:100"], export: ["64512:100"]}
    subnets: ["10.0.10.0/24"]
endpoints:
  - {name: web1, network: leonardo, address: 10.0.10.5/24, node: node-a}
`
	if string(inv.UserData) != want {
		t.Errorf("user_data:\n%s\nwant:\n%s", inv.UserData, want)
	}
	if inv.ConfigPath != "" || inv.Config == nil || inv.Config.BGP.ASN != 64512 {
		t.Errorf("config path %q, config %+v", inv.ConfigPath, inv.Config)
	}
	if len(inv.Nodes) != 3 {
		t.Fatalf("%d nodes", len(inv.Nodes))
	}
	a, c := inv.Nodes[0], inv.Nodes[2]
	if a.Name != "node-a" || len(a.MACs) != 2 || a.MACs[1].String() != "52:54:00:00:00:11" || a.Address.String() != "10.0.2.15" || a.Line != 20 {
		t.Errorf("node-a: %+v", a)
	}
	if c.UUID != "5f0c3b1e-8d2a-4c7e-9b1a-2e4f6a8c0d12" || c.NetworkData != nil || c.Address.IsValid() {
		t.Errorf("node-c: %+v", c)
	}
	// Derived UUIDs: stable, version 5, RFC 9562 variant, distinct.
	if got := inv.Nodes[0].UUID; got != nodeUUID("node-a") || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(got) {
		t.Errorf("derived UUID %q", got)
	}
	if inv.Nodes[0].UUID == inv.Nodes[1].UUID {
		t.Error("two nodes derive the same UUID")
	}
	// network_data.json keeps the keys in the order written.
	wantND := `{"links":[{"id":"eth0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01","mtu":9000}],"networks":[{"id":"net0","type":"ipv4","link":"eth0","ip_address":"10.0.2.15","netmask":"255.255.255.0","routes":[{"network":"0.0.0.0","netmask":"0.0.0.0","gateway":"10.0.2.2"}]}],"services":[{"type":"dns","address":"10.0.2.3"}]}`
	if string(a.NetworkData) != wantND {
		t.Errorf("network_data.json:\n%s\nwant\n%s", a.NetworkData, wantND)
	}
}

func TestInventoryConfigFile(t *testing.T) {
	inv, err := Load("testdata/fleet-file.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile("testdata/weft.yaml")
	if !bytes.Equal(inv.UserData, want) {
		t.Errorf("user_data %q, want the file %q", inv.UserData, want)
	}
	if inv.ConfigPath != filepath.Join("testdata", "weft.yaml") {
		t.Errorf("config path %q", inv.ConfigPath)
	}
}

// TestInventoryCut: the inline config's text is cut out of the inventory
// in every layout; where it cannot be (flow style sharing a line), it is
// re-encoded, and it always reads back as the same weft.yaml.
func TestInventoryCut(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{{
		name: "block at the end",
		doc:  "nodes: []\nconfig:\n    bgp:\n        asn: 64512\n        controllers: [{address: 10.0.2.2}]\n",
		want: "bgp:\n    asn: 64512\n    controllers: [{address: 10.0.2.2}]\n",
	}, {
		name: "block with a literal scalar and trailing comments",
		doc:  "config:\n  bgp:\n    asn: 64512\n    controllers: [{address: 10.0.2.2, password: \"a b\"}]\n  # inside\n\n# outside\nnodes: []\n",
		want: "bgp:\n  asn: 64512\n  controllers: [{address: 10.0.2.2, password: \"a b\"}]\n# inside\n",
	}, {
		name: "flow on the key's line",
		doc:  "config: {bgp: {asn: 64512, controllers: [{address: 10.0.2.2}]}}  # the fleet\nnodes: []\n",
		want: "{bgp: {asn: 64512, controllers: [{address: 10.0.2.2}]}}  # the fleet\n",
	}, {
		name: "flow over lines",
		doc:  "config: {bgp: {asn: 64512,\n   controllers: [{address: 10.0.2.2}]}}\nnodes: []\n",
		want: "{bgp: {asn: 64512,\n   controllers: [{address: 10.0.2.2}]}}\n",
	}, {
		name: "alias to an anchor outside",
		doc:  "nodes:\n  - name: &n node-a\n    address: 10.0.2.15\nconfig:\n  node: {hostname: *n}\n  bgp:\n    asn: 64512\n    controllers: [{address: 10.0.2.2}]\n",
		want: "", // re-encoded, the alias expanded
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse([]byte(tt.doc), "inv.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && string(inv.UserData) != tt.want {
				t.Errorf("user_data %q, want %q", inv.UserData, tt.want)
			}
			c, err := config.Parse(inv.UserData)
			if err != nil || c.BGP == nil || c.BGP.ASN != 64512 {
				t.Errorf("user_data %q does not read back: %v", inv.UserData, err)
			}
			if tt.want == "" && c != nil && c.Node.Hostname != "node-a" {
				t.Errorf("re-encoded user_data %q: hostname %q", inv.UserData, c.Node.Hostname)
			}
		})
	}
	// The re-encoded form still reads as the same weft.yaml.
	inv, err := Parse([]byte("{config: {bgp: {asn: 64512, controllers: [{address: 10.0.2.2}]}}, nodes: []}"), "inv.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := config.Parse(inv.UserData); err != nil || c.BGP.Controllers[0].Address.String() != "10.0.2.2" {
		t.Errorf("re-encoded user_data %q: %v", inv.UserData, err)
	}
}
