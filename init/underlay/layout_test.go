package underlay

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

const (
	mac0 = "52:54:00:00:00:01"
	mac1 = "52:54:00:00:00:02"
	mac2 = "52:54:00:00:00:03"
	macX = "52:54:00:00:00:99" // no such NIC
)

// testHost: three NICs, loopback, a bond0 the bonding module created at
// load (carrying eth0's MAC, as a bond does), and a VLAN.
var testHost = []hostLink{
	{Name: "lo", Index: 1, Kind: "device", Loopback: true, MAC: mac("00:00:00:00:00:00"), MTU: 65536},
	{Name: "eth0", Index: 2, Kind: "device", MAC: mac(mac0), MTU: 1500, Phys: true},
	{Name: "eth1", Index: 3, Kind: "device", MAC: mac(mac1), MTU: 1500, Phys: true},
	{Name: "eth2", Index: 4, Kind: "device", MAC: mac(mac2), MTU: 1500, Phys: true},
	{Name: "bond0", Index: 5, Kind: "bond", MAC: mac(mac0), MTU: 1500},
	{Name: "old.7", Index: 6, Kind: "vlan", MAC: mac(mac2), MTU: 1500, Parent: "eth2", VLANID: 7},
}

func phy(id, m string) config.Link {
	return config.Link{ID: id, Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(m)}}
}

func phyName(id, name string) config.Link {
	return config.Link{ID: id, Kind: config.LinkPhy, Match: config.LinkMatch{Name: name}}
}

func bond(id string, members ...string) config.Link {
	return config.Link{ID: id, Kind: config.LinkBond, BondMode: "802.3ad", BondMiimon: 100, BondHashPolicy: "layer3+4", BondMembers: members}
}

func vlan(id, parent string, vid int) config.Link {
	return config.Link{ID: id, Kind: config.LinkVLAN, VLANParent: parent, VLANID: vid}
}

func withMTU(l config.Link, mtu int) config.Link   { l.MTU = mtu; return l }
func withName(l config.Link, n string) config.Link { l.Name = n; return l }

// want is what a test expects of one link layout; zero fields are not checked
// except State.
type want struct {
	State    layoutState
	Name     string
	Reason   string // substring
	Note     string // substring of one of the notes
	Members  []string
	Missing  []string
	Bond     string
	Parent   string
	MTU      int
	MinMTU   int
	Exists   *bool
	Recreate bool
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func TestMakeLayout(t *testing.T) {
	tests := []struct {
		name  string
		links []config.Link
		host  []hostLink
		opts  layoutOpts
		order []string // expected apply order of IDs (nil: not checked)
		want  map[string]want
	}{
		{
			name:  "phy by MAC",
			links: []config.Link{phy("a", mac1)},
			want:  map[string]want{"a": {State: stateReady, Name: "eth1", Exists: yes()}},
		},
		{
			name:  "phy by name",
			links: []config.Link{phyName("a", "eth2")},
			want:  map[string]want{"a": {State: stateReady, Name: "eth2"}},
		},
		{
			name:  "MAC wins over name",
			links: []config.Link{{ID: "a", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(mac1), Name: "eth0"}}},
			want:  map[string]want{"a": {State: stateReady, Name: "eth1"}},
		},
		{
			name:  "MAC of a bond is not a NIC",
			links: []config.Link{phy("a", mac0)},
			want:  map[string]want{"a": {State: stateReady, Name: "eth0"}},
		},
		{
			name:  "bond member found by permanent MAC",
			links: []config.Link{phy("a", mac1)},
			host: []hostLink{
				{Name: "eth0", Kind: "device", MAC: mac(mac0), Master: "bond0"},
				{Name: "eth1", Kind: "device", MAC: mac(mac1), Master: "bond0"}, // current MAC is mac0; identity is the permanent one
				{Name: "bond0", Kind: "bond", MAC: mac(mac0)},
			},
			want: map[string]want{"a": {State: stateReady, Name: "eth1"}},
		},
		{
			name:  "MAC matches nothing: waiting",
			links: []config.Link{phy("a", macX), phy("b", mac0)},
			want: map[string]want{
				"a": {State: stateWaiting, Reason: "no NIC with MAC " + macX + " yet"},
				"b": {State: stateReady, Name: "eth0"},
			},
		},
		{
			name:  "MAC matches nothing after the wait: failed",
			links: []config.Link{phy("a", macX), phy("b", mac0)},
			opts:  layoutOpts{GaveUpAfter: 30 * time.Second},
			want: map[string]want{
				"a": {State: stateFailed, Reason: "no NIC with MAC " + macX + " after 30s; check cabling/driver"},
				"b": {State: stateReady, Name: "eth0"},
			},
		},
		{
			name:  "name matches nothing after the wait",
			links: []config.Link{phyName("a", "ens9")},
			opts:  layoutOpts{GaveUpAfter: 5 * time.Second},
			want:  map[string]want{"a": {State: stateFailed, Reason: "no NIC named ens9 after 5s"}},
		},
		{
			name:  "loopback by name",
			links: []config.Link{phyName("a", "lo")},
			want:  map[string]want{"a": {State: stateFailed, Reason: "loopback"}},
		},
		{
			name:  "no match at all",
			links: []config.Link{{ID: "a", Kind: config.LinkPhy}},
			want:  map[string]want{"a": {State: stateFailed, Reason: "needs match.mac or match.name"}},
		},
		{
			name:  "two links match the same NIC: the first keeps it",
			links: []config.Link{phy("a", mac0), phyName("b", "eth0"), phy("c", mac1)},
			want: map[string]want{
				"a": {State: stateReady, Name: "eth0"},
				"b": {State: stateFailed, Reason: `matches eth0, already matched by link "a"`},
				"c": {State: stateReady, Name: "eth1"},
			},
		},
		{
			name:  "one MAC on two NICs",
			links: []config.Link{phy("a", mac0)},
			host: []hostLink{
				{Name: "eth0", Kind: "device", MAC: mac(mac0)},
				{Name: "eth1", Kind: "device", MAC: mac(mac0)},
			},
			want: map[string]want{"a": {State: stateFailed, Reason: "matches several NICs (eth0, eth1)"}},
		},
		{
			name:  "duplicate id",
			links: []config.Link{phy("a", mac0), phy("a", mac1)},
			order: []string{"a", "links[1]"}, // the duplicate's verdict is its own
		},
		{
			name:  "unknown kind and bad mtu",
			links: []config.Link{{ID: "t", Kind: "team"}, withMTU(phy("m", mac0), 40), phy("ok", mac1)},
			want: map[string]want{
				"t":  {State: stateFailed, Reason: `unknown link kind "team"`},
				"m":  {State: stateFailed, Reason: "mtu 40 is out of range 576..65535"},
				"ok": {State: stateReady, Name: "eth1"},
			},
		},
		{
			name:  "bond: members before bond, bond0 reused, MTU to members",
			links: []config.Link{withMTU(bond("b", "m0", "m1"), 9000), phy("m0", mac0), withMTU(phy("m1", mac1), 1500)},
			order: []string{"m0", "m1", "b"},
			want: map[string]want{
				"b":  {State: stateReady, Name: "bond0", Exists: yes(), Members: []string{"eth0", "eth1"}, MTU: 9000},
				"m0": {State: stateReady, Name: "eth0", Bond: "bond0", MTU: 9000},
				"m1": {State: stateReady, Name: "eth1", Bond: "bond0", MTU: 9000, Note: "mtu 1500 replaced by bond bond0's 9000"},
			},
		},
		{
			name:  "bond name declared",
			links: []config.Link{withName(bond("b", "m0"), "uplink"), phy("m0", mac0)},
			want: map[string]want{
				"b": {State: stateReady, Name: "uplink", Exists: no(), Members: []string{"eth0"}},
			},
		},
		{
			name:  "bond name taken by a NIC",
			links: []config.Link{withName(bond("b", "m0"), "eth2"), phy("m0", mac0)},
			want: map[string]want{
				"b":  {State: stateFailed, Reason: "name eth2 is taken by an existing device link"},
				"m0": {State: stateReady, Name: "eth0", Bond: ""},
			},
		},
		{
			name:  "bond member not declared",
			links: []config.Link{bond("b", "m0", "ghost"), phy("m0", mac0)},
			want: map[string]want{
				"b":  {State: stateFailed, Reason: `member "ghost" is not a link in this underlay`},
				"m0": {State: stateReady, Name: "eth0", Bond: ""},
			},
		},
		{
			name:  "bond member used twice",
			links: []config.Link{bond("b1", "m0", "m1"), bond("b2", "m1", "m2"), phy("m0", mac0), phy("m1", mac1), phy("m2", mac2)},
			want: map[string]want{
				"b1": {State: stateReady, Name: "bond0", Members: []string{"eth0", "eth1"}},
				"b2": {State: stateFailed, Reason: `member "m1" is already in bond "b1"`},
				"m2": {State: stateReady, Name: "eth2", Bond: ""},
			},
		},
		{
			name:  "bond member listed twice",
			links: []config.Link{bond("b", "m0", "m0"), phy("m0", mac0)},
			want:  map[string]want{"b": {State: stateFailed, Reason: `member "m0" is listed twice`}},
		},
		{
			name:  "bond member is a vlan",
			links: []config.Link{bond("b", "v"), vlan("v", "p", 5), phy("p", mac0)},
			want:  map[string]want{"b": {State: stateFailed, Reason: `member "v" is a vlan link; bond members must be phy links`}},
		},
		{
			name:  "bond with a member still missing is degraded",
			links: []config.Link{bond("b", "m0", "m1"), phy("m0", mac0), phy("m1", macX)},
			want: map[string]want{
				"b":  {State: stateReady, Members: []string{"eth0"}, Missing: []string{"m1"}, Note: `degraded: member "m1": no NIC with MAC ` + macX},
				"m1": {State: stateWaiting},
			},
		},
		{
			name:  "bond with no member present waits",
			links: []config.Link{bond("b", "m0"), phy("m0", macX)},
			want:  map[string]want{"b": {State: stateWaiting, Reason: `no member present: member "m0": no NIC with MAC`}},
		},
		{
			name:  "bond with no member after the wait fails",
			links: []config.Link{bond("b", "m0"), phy("m0", macX)},
			opts:  layoutOpts{GaveUpAfter: 30 * time.Second},
			want:  map[string]want{"b": {State: stateFailed, Reason: `no usable member: member "m0": no NIC with MAC ` + macX + " after 30s"}},
		},
		{
			name: "bond settings checked",
			links: []config.Link{
				{ID: "b1", Kind: config.LinkBond, BondMode: "fastest", BondMembers: []string{"m0"}},
				{ID: "b2", Kind: config.LinkBond, BondMode: "4", BondHashPolicy: "layer9", BondMembers: []string{"m1"}},
				{ID: "b3", Kind: config.LinkBond, BondMode: "active-backup"},
				{ID: "b4", Kind: config.LinkBond, BondMode: "4", BondMembers: []string{"m2"}},
				phy("m0", mac0), phy("m1", mac1), phy("m2", mac2),
			},
			want: map[string]want{
				"b1": {State: stateFailed, Reason: `bond mode "fastest" unknown`},
				"b2": {State: stateFailed, Reason: `bond xmit hash policy "layer9" unknown`},
				"b3": {State: stateFailed, Reason: "bond has no members"},
				"b4": {State: stateReady, Name: "bond3", Members: []string{"eth2"}},
			},
		},
		{
			name:  "member addressing is ignored",
			links: []config.Link{bond("b", "m0"), {ID: "m0", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(mac0)}, DHCP4: true}},
			want:  map[string]want{"m0": {State: stateReady, Bond: "bond0", Note: "addressing ignored: enslaved to bond bond0"}},
		},
		{
			name:  "vlan on bond: name derived, MTU raised below it",
			links: []config.Link{withMTU(vlan("v", "b", 100), 9000), bond("b", "m0", "m1"), phy("m0", mac0), phy("m1", mac1)},
			order: []string{"m0", "m1", "b", "v"},
			want: map[string]want{
				"v":  {State: stateReady, Name: "bond0.100", Parent: "bond0", MTU: 9000, Exists: no()},
				"b":  {State: stateReady, MTU: 0, MinMTU: 9000},
				"m0": {State: stateReady, MinMTU: 9000},
			},
		},
		{
			name:  "vlan above an explicit parent MTU is clamped",
			links: []config.Link{withMTU(phy("p", mac0), 1500), withMTU(vlan("v", "p", 10), 9000)},
			want: map[string]want{
				"v": {State: stateReady, Name: "eth0.10", MTU: 1500, Note: `mtu 9000 clamped to parent p's 1500`},
				"p": {State: stateReady, MTU: 1500, MinMTU: 0},
			},
		},
		{
			name:  "vlan parent missing",
			links: []config.Link{vlan("v", "nope", 100), phy("p", mac0)},
			want: map[string]want{
				"v": {State: stateFailed, Reason: `vlan parent "nope" is not a link in this underlay`},
				"p": {State: stateReady},
			},
		},
		{
			name:  "vlan without parent or with bad id",
			links: []config.Link{vlan("v1", "", 100), vlan("v2", "p", 4095), vlan("v3", "p", 0), phy("p", mac0)},
			want: map[string]want{
				"v1": {State: stateFailed, Reason: "vlan has no parent link"},
				"v2": {State: stateFailed, Reason: "vlan id 4095 out of range 1-4094"},
				"v3": {State: stateFailed, Reason: "vlan id 0 out of range 1-4094"},
			},
		},
		{
			name:  "vlan on a waiting NIC waits, then fails with the NIC's reason",
			links: []config.Link{phy("p", macX), vlan("v", "p", 100)},
			want:  map[string]want{"v": {State: stateWaiting, Reason: `parent "p": no NIC with MAC ` + macX + " yet"}},
		},
		{
			name:  "vlan on a NIC that never came",
			links: []config.Link{phy("p", macX), vlan("v", "p", 100)},
			opts:  layoutOpts{GaveUpAfter: 30 * time.Second},
			want:  map[string]want{"v": {State: stateFailed, Reason: `parent "p": no NIC with MAC ` + macX + " after 30s; check cabling/driver"}},
		},
		{
			name:  "vlan on a bond member",
			links: []config.Link{bond("b", "m0"), phy("m0", mac0), vlan("v", "m0", 5)},
			want:  map[string]want{"v": {State: stateFailed, Reason: `vlan parent "m0" is enslaved to bond bond0; put the vlan on the bond`}},
		},
		{
			name:  "QinQ: parents first whatever the declared order",
			links: []config.Link{withMTU(vlan("inner", "outer", 20), 1496), vlan("outer", "p", 10), phy("p", mac0)},
			order: []string{"p", "outer", "inner"},
			want: map[string]want{
				"inner": {State: stateReady, Name: "eth0.10.20", Parent: "eth0.10", MTU: 1496},
				"outer": {State: stateReady, Name: "eth0.10", MinMTU: 1496},
				"p":     {State: stateReady, MinMTU: 1496},
			},
		},
		{
			name:  "vlan loop",
			links: []config.Link{vlan("x", "y", 1), vlan("y", "x", 2), phy("p", mac0)},
			want: map[string]want{
				"x": {State: stateFailed, Reason: "loop"},
				"y": {State: stateFailed, Reason: "loop"},
				"p": {State: stateReady},
			},
		},
		{
			name:  "same vlan twice on one parent",
			links: []config.Link{phy("p", mac0), vlan("v1", "p", 100), withName(vlan("v2", "p", 100), "other")},
			want: map[string]want{
				"v1": {State: stateReady},
				"v2": {State: stateFailed, Reason: `vlan 100 on "p" is already defined by link "v1"`},
			},
		},
		{
			name:  "existing vlan of the same name on another id is recreated",
			links: []config.Link{phy("p", mac1), withName(vlan("v", "p", 8), "old.7")},
			want: map[string]want{
				"v": {State: stateReady, Name: "old.7", Exists: yes(), Recreate: true, Note: "recreated as vlan 8 on eth1"},
			},
		},
		{
			name:  "existing vlan that matches is reused",
			links: []config.Link{phy("p", mac2), withName(vlan("v", "p", 7), "old.7")},
			want:  map[string]want{"v": {State: stateReady, Name: "old.7", Exists: yes(), Recreate: false}},
		},
		{
			name:  "long derived vlan name falls back",
			links: []config.Link{phyName("p", "enp94s0f0np0"), vlan("v", "p", 100)},
			host:  []hostLink{{Name: "enp94s0f0np0", Kind: "device", MAC: mac(mac0)}},
			want:  map[string]want{"v": {State: stateReady, Name: "vlan100"}},
		},
		{
			name:  "declared vlan name too long",
			links: []config.Link{phy("p", mac0), withName(vlan("v", "p", 100), "averyveryverylongname")},
			want:  map[string]want{"v": {State: stateFailed, Reason: "longer than 15 bytes"}},
		},
		{
			name:  "vlan name collides with a bond name",
			links: []config.Link{bond("b", "m0"), phy("m0", mac0), phy("p", mac1), withName(vlan("v", "p", 3), "bond0")},
			want:  map[string]want{"v": {State: stateFailed, Reason: `name bond0 is already used by link "b"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == nil {
				host = testHost
			}
			p := makeLayout(config.Underlay{Links: tt.links}, host, tt.opts)
			if len(p.Links) != len(tt.links) {
				t.Fatalf("layout has %d links, want %d", len(p.Links), len(tt.links))
			}
			if tt.order != nil {
				var got []string
				for _, ll := range p.Links {
					got = append(got, ll.ID)
				}
				if !slices.Equal(got, tt.order) {
					t.Errorf("order = %v, want %v", got, tt.order)
				}
			}
			for id, w := range tt.want {
				ll := p.byID(id)
				if ll == nil {
					t.Errorf("%s: not in layout", id)
					continue
				}
				checkLinkLayout(t, ll, w)
			}
		})
	}
}

func checkLinkLayout(t *testing.T, ll *linkLayout, w want) {
	t.Helper()
	id := ll.ID
	if ll.State != w.State {
		t.Errorf("%s: state %s (%s), want %s", id, ll.State, ll.Reason, w.State)
	}
	if w.Name != "" && ll.Name != w.Name {
		t.Errorf("%s: name %q, want %q", id, ll.Name, w.Name)
	}
	if w.Reason != "" && !strings.Contains(ll.Reason, w.Reason) {
		t.Errorf("%s: reason %q, want it to contain %q", id, ll.Reason, w.Reason)
	}
	if w.Note != "" && !slices.ContainsFunc(ll.Notes, func(n string) bool { return strings.Contains(n, w.Note) }) {
		t.Errorf("%s: notes %q, want one containing %q", id, ll.Notes, w.Note)
	}
	if w.Members != nil && !slices.Equal(ll.Members, w.Members) {
		t.Errorf("%s: members %v, want %v", id, ll.Members, w.Members)
	}
	if w.Missing != nil && !slices.Equal(ll.MissingMembers, w.Missing) {
		t.Errorf("%s: missing members %v, want %v", id, ll.MissingMembers, w.Missing)
	}
	// Bond is checked when expected, and for ready phy links the test
	// names (there an empty Bond means "not enslaved").
	if w.Bond != ll.Bond && (w.Bond != "" || ll.Link.Kind == config.LinkPhy && w.State == stateReady && w.Name != "") {
		t.Errorf("%s: bond %q, want %q", id, ll.Bond, w.Bond)
	}
	if w.Parent != "" && ll.Parent != w.Parent {
		t.Errorf("%s: parent %q, want %q", id, ll.Parent, w.Parent)
	}
	if w.MTU != 0 && ll.MTU != w.MTU {
		t.Errorf("%s: mtu %d, want %d", id, ll.MTU, w.MTU)
	}
	if ll.MinMTU != w.MinMTU && (w.MinMTU != 0 || w.MTU != 0 || ll.Link.Kind != config.LinkPhy) {
		t.Errorf("%s: min mtu %d, want %d", id, ll.MinMTU, w.MinMTU)
	}
	if w.Exists != nil && ll.Exists != *w.Exists {
		t.Errorf("%s: exists %v, want %v", id, ll.Exists, *w.Exists)
	}
	if ll.Recreate != w.Recreate {
		t.Errorf("%s: recreate %v, want %v", id, ll.Recreate, w.Recreate)
	}
}

// TestMakeLayoutDuplicateID checks the second of two links with one id fails
// and the first is untouched.
func TestMakeLayoutDuplicateID(t *testing.T) {
	p := makeLayout(config.Underlay{Links: []config.Link{phy("a", mac0), phy("a", mac1)}}, testHost, layoutOpts{})
	if p.Links[0].State != stateReady || p.Links[0].Name != "eth0" {
		t.Errorf("first: %s %q", p.Links[0].State, p.Links[0].Name)
	}
	if p.Links[1].State != stateFailed || !strings.Contains(p.Links[1].Reason, `duplicate link id "a"`) || p.Links[1].ID != "links[1]" {
		t.Errorf("second: %s %s %q", p.Links[1].ID, p.Links[1].State, p.Links[1].Reason)
	}
}

// An InfiniBand NIC is matched by its 20-byte address, or by the 6-byte
// form OpenStack writes for it (as cloud-init reads it); an Ethernet NIC
// with that MAC wins.
func TestMakeLayoutInfiniBand(t *testing.T) {
	const ib = "80:00:02:08:fe:80:00:00:00:00:00:00:f4:52:14:03:00:8d:52:51"
	const short = "f4:52:14:8d:52:51" // bytes 13-15 and 18-20
	host := append(slices.Clone(testHost), hostLink{Name: "ib0", Index: 9, Kind: "device", MAC: mac(ib), MTU: 2044, Phys: true})
	for _, tc := range []struct {
		name string
		link config.Link
		host []hostLink
		want string
		note string
	}{
		{name: "full address", link: phy("a", ib), host: host, want: "ib0"},
		{name: "ethernet form", link: phy("a", short), host: host, want: "ib0"},
		{name: "ethernet form, dhcp", link: config.Link{ID: "a", Kind: config.LinkPhy, Match: config.LinkMatch{MAC: mac(short)}, DHCP4: true}, host: host, want: "ib0",
			note: "DHCP on InfiniBand is not supported"},
		{name: "an ethernet NIC wins", link: phy("a", short),
			host: append(slices.Clone(host), hostLink{Name: "eth9", Index: 10, Kind: "device", MAC: mac(short)}), want: "eth9"},
		{name: "other bytes do not match", link: phy("a", "f4:52:14:03:00:8d"), host: host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ll := makeLayout(config.Underlay{Links: []config.Link{tc.link}}, tc.host, layoutOpts{}).Links[0]
			if tc.want == "" {
				if ll.State != stateWaiting {
					t.Errorf("%s %q: want waiting", ll.State, ll.Name)
				}
				return
			}
			if ll.State != stateReady || ll.Name != tc.want {
				t.Errorf("%s %q (%s), want ready on %s", ll.State, ll.Name, ll.Reason, tc.want)
			}
			if tc.note != "" && !slices.ContainsFunc(ll.Notes, func(n string) bool { return strings.Contains(n, tc.note) }) {
				t.Errorf("notes %q, want %q", ll.Notes, tc.note)
			}
		})
	}
}

// A phy link whose NIC an earlier Apply waited for in vain fails at once,
// with the same verdict; its bond and VLAN follow; other links still wait.
func TestMakeLayoutGaveUpEarlier(t *testing.T) {
	links := []config.Link{phy("ghost", macX), phy("late", "52:54:00:00:00:98"), bond("b", "ghost"), vlan("v", "b", 5)}
	first := makeLayout(config.Underlay{Links: links}, testHost, layoutOpts{GaveUpAfter: 30 * time.Second})
	again := makeLayout(config.Underlay{Links: links}, testHost, layoutOpts{GaveUp: map[string]time.Duration{"ghost": 30 * time.Second}})
	for _, id := range []string{"ghost", "b", "v"} {
		a, b := first.byID(id), again.byID(id)
		if b.State != stateFailed || a.Reason != b.Reason {
			t.Errorf("%s: %s %q, want failed %q", id, b.State, b.Reason, a.Reason)
		}
	}
	if g := again.byID("ghost"); !g.NoNIC {
		t.Error("ghost: NoNIC not set")
	}
	if l := again.byID("late"); l.State != stateWaiting {
		t.Errorf("late: %s, want waiting (it did not give up before)", l.State)
	}
}

// TestMakeLayoutIDs: links without an id are named by position.
func TestMakeLayoutIDs(t *testing.T) {
	p := makeLayout(config.Underlay{Links: []config.Link{{Kind: config.LinkPhy, Match: config.LinkMatch{Name: "eth0"}}}}, testHost, layoutOpts{})
	if p.Links[0].ID != "links[0]" {
		t.Errorf("id %q, want links[0]", p.Links[0].ID)
	}
}

// TestMakeLayoutNeverPanics feeds combinations of broken links.
func TestMakeLayoutNeverPanics(t *testing.T) {
	kinds := []config.LinkKind{config.LinkPhy, config.LinkBond, config.LinkVLAN, "", "x"}
	ids := []string{"", "a", "b", "c"}
	var links []config.Link
	for i, k := range kinds {
		for j, id := range ids {
			links = append(links, config.Link{
				ID: id, Kind: k, VLANParent: ids[(j+1)%len(ids)], VLANID: i * 1000,
				BondMembers: []string{ids[j], ids[(j+2)%len(ids)]}, MTU: i * 3000,
				Match: config.LinkMatch{Name: "eth0"},
			})
		}
	}
	for n := range len(links) {
		makeLayout(config.Underlay{Links: links[:n]}, testHost, layoutOpts{})
		makeLayout(config.Underlay{Links: links[n:]}, testHost, layoutOpts{GaveUpAfter: time.Second})
	}
}

func TestNormBondMode(t *testing.T) {
	for in, want := range map[string]string{
		"": "balance-rr", "802.3ad": "802.3ad", "4": "802.3ad", "LACP": "802.3ad", " Active-Backup ": "active-backup",
		"7": "", "-1": "", "round-robin": "",
	} {
		if got := normBondMode(in); got != want {
			t.Errorf("normBondMode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaultUnderlay(t *testing.T) {
	u, err := defaultUnderlay(mac(macX), testHost)
	if err != nil || len(u.Links) != 1 || u.Links[0].Match.MAC.String() != macX || !u.Links[0].DHCP4 {
		t.Errorf("bootif: %+v, %v", u, err)
	}
	u, err = defaultUnderlay(nil, testHost)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range u.Links {
		if !l.DHCP4 || l.Kind != config.LinkPhy {
			t.Errorf("%s: %+v", l.ID, l)
		}
		got = append(got, l.ID+"="+l.Match.MAC.String())
	}
	if w := []string{"eth0=" + mac0, "eth1=" + mac1, "eth2=" + mac2}; !slices.Equal(got, w) {
		t.Errorf("links %v, want %v", got, w)
	}
	// Every link the layout resolves, one NIC each.
	p := makeLayout(u, testHost, layoutOpts{})
	for _, ll := range p.Links {
		if ll.State != stateReady {
			t.Errorf("%s: %s %s", ll.ID, ll.State, ll.Reason)
		}
	}
	if _, err := defaultUnderlay(nil, []hostLink{{Name: "lo", Loopback: true}}); err == nil {
		t.Error("no NIC: want an error")
	}
}
