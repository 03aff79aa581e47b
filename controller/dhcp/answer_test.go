package dhcp

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/boot"
	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/inventory"
	"github.com/weftnet/weft/internal/dhcpreply"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// baseConfig is a valid fleet weft.yaml, inline (indented under config:).
const baseConfig = `config:
  bgp:
    asn: 64512
    controllers:
      - {address: 10.0.2.2}
`

// testDeps are a server's dependencies without a controller around it.
func testDeps(inv *inventory.Inventory, state *fleet.State, log *slog.Logger) Deps {
	return Deps{Inv: func() *inventory.Inventory { return inv }, State: state, Log: log, Now: time.Now}
}

// dhcpIfc is the DHCP interface's address in the tests.
var dhcpIfc = []netip.Prefix{netip.MustParsePrefix("198.18.10.1/24")}

func dhcpTestEnv(t testing.TB, cfg Config, withBoot bool) *env {
	t.Helper()
	inv, err := inventory.Load("testdata/dhcp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := &env{cfg: cfg, inv: inv, ifc: dhcpIfc}
	if withBoot {
		env.bootURL = func(server netip.Addr) string { return "http://" + boot.HostPort(server, 80) + boot.ScriptPath }
	}
	return env
}

// dhcpMsg is a client message from mac.
func dhcpMsg(t testing.TB, mac string, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire format, as the server receives it.
	m, err = dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mtuOf(m *dhcpv4.DHCPv4) int {
	v := m.Options.Get(dhcpv4.OptionInterfaceMTU)
	if len(v) != 2 {
		return 0
	}
	return int(v[0])<<8 | int(v[1])
}

func TestDHCPAnswer(t *testing.T) {
	const (
		n1  = "52:54:00:0d:00:01"
		n2  = "52:54:00:0d:00:02"
		far = "52:54:00:0d:00:03"
	)
	ours := net.ParseIP("198.18.10.1")
	bcast := netip.MustParseAddrPort("255.255.255.255:68")
	ipxe := dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")) // iPXE's own form, not RFC 3004's
	for _, tc := range []struct {
		name   string
		cfg    Config
		noBoot bool
		req    *dhcpv4.DHCPv4
		kind   string // the event
		typ    dhcpv4.MessageType
		yiaddr string
		to     netip.AddrPort
		mask   int // prefix length of option 1
		mtu    int
		router string
		boot   string
		client string
		why    string // in the event's why
	}{
		{name: "discover", req: dhcpMsg(t, n1, dhcpv4.MessageTypeDiscover),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000},
		{name: "discover from iPXE", req: dhcpMsg(t, n1, dhcpv4.MessageTypeDiscover, ipxe),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000,
			boot: "http://198.18.10.1/boot.ipxe", client: "ipxe"},
		{name: "discover from iPXE, RFC 3004 user class", req: dhcpMsg(t, n1, dhcpv4.MessageTypeDiscover, dhcpv4.WithUserClass("iPXE", true)),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000,
			boot: "http://198.18.10.1/boot.ipxe", client: "ipxe"},
		{name: "iPXE without boot files", noBoot: true, req: dhcpMsg(t, n1, dhcpv4.MessageTypeDiscover, ipxe),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000, client: "ipxe"},
		{name: "PXE ROM", req: dhcpMsg(t, n1, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000, client: "pxe"},
		{name: "request", req: dhcpMsg(t, n1, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ours)), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.11")))),
			kind: "ack", typ: dhcpv4.MessageTypeAck, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000},
		{name: "request, init-reboot", req: dhcpMsg(t, n1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.11")))),
			kind: "ack", typ: dhcpv4.MessageTypeAck, yiaddr: "198.18.10.11", to: bcast, mask: 24, mtu: 9000},
		{name: "renewal", req: dhcpMsg(t, n1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("198.18.10.11"))),
			kind: "ack", typ: dhcpv4.MessageTypeAck, yiaddr: "198.18.10.11", to: netip.MustParseAddrPort("198.18.10.11:68"), mask: 24, mtu: 9000},
		{name: "request for another server's offer", req: dhcpMsg(t, n1, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("198.18.10.254"))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.11")))),
			kind: "ignored", why: "chose server 198.18.10.254"},
		{name: "request for a stale address", req: dhcpMsg(t, n1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.50")))),
			kind: "nak", typ: dhcpv4.MessageTypeNak, yiaddr: "0.0.0.0", to: bcast, why: "asked for 198.18.10.50, but its inventory address is 198.18.10.11"},
		{name: "inform", req: dhcpMsg(t, n1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP("198.18.10.11"))),
			kind: "inform", typ: dhcpv4.MessageTypeAck, yiaddr: "0.0.0.0", to: netip.MustParseAddrPort("198.18.10.11:68"), mask: 24, mtu: 9000},
		{name: "network_data.json MTU", req: dhcpMsg(t, n2, dhcpv4.MessageTypeDiscover),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.12", to: bcast, mask: 24, mtu: 1500},
		{name: "MTU and router from the flags", cfg: Config{MTU: 1400, Router: netip.MustParseAddr("198.18.10.254")}, req: dhcpMsg(t, n2, dhcpv4.MessageTypeDiscover),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.12", to: bcast, mask: 24, mtu: 1400, router: "198.18.10.254"},
		{name: "no MTU", cfg: Config{MTU: -1}, req: dhcpMsg(t, n1, dhcpv4.MessageTypeDiscover),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.10.11", to: bcast, mask: 24},
		{name: "relayed, with a prefix", req: dhcpMsg(t, far, dhcpv4.MessageTypeDiscover, dhcpv4.WithRelay(net.ParseIP("198.18.20.1"))),
			kind: "offer", typ: dhcpv4.MessageTypeOffer, yiaddr: "198.18.20.5", to: netip.MustParseAddrPort("198.18.20.1:67"), mask: 26, mtu: 9000},
		{name: "unknown MAC", req: dhcpMsg(t, "52:54:00:0d:00:99", dhcpv4.MessageTypeDiscover), kind: "unknown"},
		{name: "no subnet", req: dhcpMsg(t, "52:54:00:0d:00:04", dhcpv4.MessageTypeDiscover), kind: "unservable",
			why: "node lost's address 198.18.30.5 is in no subnet of interface eth9 (198.18.10.1/24): give the node's entry a prefix"},
		{name: "IPv6 node", req: dhcpMsg(t, "52:54:00:0d:00:06", dhcpv4.MessageTypeDiscover), kind: "unservable", why: "is IPv6"},
		{name: "release", req: dhcpMsg(t, n1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP("198.18.10.11"))), kind: "release"},
		{name: "decline", req: dhcpMsg(t, n1, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.11")))), kind: "decline"},
		{name: "an offer", req: dhcpMsg(t, n1, dhcpv4.MessageTypeOffer), kind: "ignored", why: "not a client's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Interface = "eth9"
			env := dhcpTestEnv(t, cfg, !tc.noBoot)
			rep, ev := answer(env, tc.req)
			if ev.kind != tc.kind || ev.client != tc.client || !strings.Contains(ev.why, tc.why) {
				t.Fatalf("event %+v, want kind %s, client %q, why %q", ev, tc.kind, tc.client, tc.why)
			}
			// A boot's lease (selecting, init-reboot) arms the node's
			// identity claim; a renewal does not.
			if fresh := tc.name == "request" || tc.name == "request, init-reboot"; ev.fresh != fresh {
				t.Errorf("fresh %v, want %v (a boot's lease arms the claim, nothing else)", ev.fresh, fresh)
			}
			if tc.typ == dhcpv4.MessageTypeNone {
				if rep != nil {
					t.Fatalf("answered %s", rep.msg.Summary())
				}
				return
			}
			if rep == nil {
				t.Fatal("no answer")
			}
			// What the client receives.
			m, err := dhcpv4.FromBytes(rep.msg.ToBytes())
			if err != nil {
				t.Fatal(err)
			}
			if rep.to != tc.to {
				t.Errorf("sent to %v, want %v", rep.to, tc.to)
			}
			if m.OpCode != dhcpv4.OpcodeBootReply || m.MessageType() != tc.typ || m.TransactionID != tc.req.TransactionID ||
				!bytes.Equal(m.ClientHWAddr, tc.req.ClientHWAddr) || m.YourIPAddr.String() != tc.yiaddr {
				t.Errorf("answer:\n%s", m.Summary())
			}
			if sid := m.ServerIdentifier(); !sid.Equal(ours) {
				t.Errorf("server identifier %v", sid)
			}
			if tc.typ == dhcpv4.MessageTypeNak {
				if !strings.Contains(m.Message(), tc.why) {
					t.Errorf("NAK message %q", m.Message())
				}
				return
			}
			if ones, _ := m.SubnetMask().Size(); ones != tc.mask {
				t.Errorf("subnet mask /%d, want /%d", ones, tc.mask)
			}
			if got := mtuOf(m); got != tc.mtu {
				t.Errorf("MTU %d, want %d", got, tc.mtu)
			}
			if want := env.inv.Nodes[0].Name; tc.yiaddr == "198.18.10.11" && m.HostName() != want {
				t.Errorf("hostname %q, want %q", m.HostName(), want)
			}
			var router string
			if r := m.Router(); len(r) > 0 {
				router = r[0].String()
			}
			if router != tc.router {
				t.Errorf("router %q, want %q", router, tc.router)
			}
			if m.BootFileNameOption() != tc.boot || m.BootFileName != tc.boot {
				t.Errorf("boot file %q (header %q), want %q", m.BootFileNameOption(), m.BootFileName, tc.boot)
			}
			lease := m.IPAddressLeaseTime(0)
			if tc.kind == "inform" && lease != 0 || tc.kind != "inform" && lease != DefaultLeaseTime {
				t.Errorf("lease time %v", lease)
			}
		})
	}
}

// TestDHCPMTU: which MTU a node is offered when the flags leave it to the
// inventory.
func TestDHCPMTU(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	for _, tc := range []struct {
		name     string
		underlay string
		mtu      int
	}{
		{"none", "", 0},
		{"one DHCP link", "underlay: {links: [{match: {name: eth0}, dhcp: true, mtu: 9000}]}", 9000},
		{"links agree", "underlay: {links: [{match: {name: eth0}, dhcp: true, mtu: 9000}, {match: {name: eth1}, dhcp: true, mtu: 9000}]}", 9000},
		{"links disagree", "underlay: {links: [{match: {name: eth0}, dhcp: true, mtu: 9000}, {match: {name: eth1}, dhcp: true, mtu: 1500}]}", 0},
		{"the link of the MAC", "underlay: {links: [{match: {mac: \"52:54:00:0d:00:01\"}, dhcp: true, mtu: 8000}, {match: {name: eth1}, dhcp: true, mtu: 1500}]}", 8000},
		{"static links only", "underlay: {links: [{match: {name: eth0}, addresses: [198.18.10.11/24], mtu: 9000}]}", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := baseConfig
			if tc.underlay != "" {
				doc += "  " + tc.underlay + "\n"
			}
			doc += "nodes:\n  - {name: n, macs: [\"52:54:00:0d:00:01\"], address: 198.18.10.11}\n"
			inv, err := inventory.Parse([]byte(doc), "inv.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := OfferMTU(inv, &inv.Nodes[0], mac("52:54:00:0d:00:01")); got != tc.mtu {
				t.Errorf("MTU %d, want %d", got, tc.mtu)
			}
		})
	}
}

// fakeConn records what the DHCP server sends.
type fakeConn struct {
	net.PacketConn
	mu   sync.Mutex
	sent []fakeSent
}

type fakeSent struct {
	b  []byte
	to string
}

func (c *fakeConn) WriteTo(b []byte, to net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, fakeSent{append([]byte(nil), b...), to.String()})
	return len(b), nil
}

func (c *fakeConn) Close() error { return nil }

// TestDHCPHandle: datagrams through the server's handler, as the socket
// delivers them: garbage is dropped, a lease is recorded in the fleet
// view, repeated warnings about one MAC are logged once.
func TestDHCPHandle(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	inv, err := inventory.Load("testdata/dhcp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	state := fleet.NewState()
	conn := &fakeConn{}
	d := &Server{cfg: Config{Interface: "eth9"}, deps: testDeps(inv, state, log), log: log, conn: conn, quiet: map[string]time.Time{}}
	d.ifc.Store(&dhcpIfc)
	d.ifcAt.Store(time.Now().Add(time.Hour).UnixNano()) // never re-read: eth9 is not there
	peer := &net.UDPAddr{IP: net.IPv4bcast, Port: 68}
	for _, garbage := range [][]byte{nil, {1}, bytes.Repeat([]byte{0xff}, 300), make([]byte, 240)} {
		d.handle(garbage, peer)
	}
	if len(conn.sent) != 0 {
		t.Fatalf("answered garbage: %v", conn.sent)
	}
	req := dhcpMsg(t, "52:54:00:0d:00:01", dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.11"))))
	d.handle(req.ToBytes(), peer)
	if len(conn.sent) != 1 || conn.sent[0].to != "255.255.255.255:68" {
		t.Fatalf("sent %v", conn.sent)
	}
	if ack, err := dhcpv4.FromBytes(conn.sent[0].b); err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("answer %v %v", ack, err)
	}
	if n := state.Snapshot(inv, nil, nil, time.Now()).Nodes[0]; n.Leased.IsZero() || n.Phase != fleetapi.PhaseBooting {
		t.Errorf("node-1 after its lease: %+v", n)
	}
	for range 3 {
		d.handle(dhcpMsg(t, "52:54:00:0d:00:99", dhcpv4.MessageTypeDiscover).ToBytes(), peer)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"dhcp: no answer to a MAC the inventory lacks: add it to a node's macs in the inventory"); n != 1 {
		t.Errorf("%d warnings about the unknown MAC, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "mac=52:54:00:0d:00:99") {
		t.Errorf("the warning does not name the MAC:\n%s", logs.String())
	}
	if got := d.Info(); got.Answered != 1 || got.Unknown != 3 {
		t.Errorf("counters %+v", got)
	}
	if len(conn.sent) != 1 {
		t.Errorf("answered an unknown MAC")
	}
}

// dhcpSeeds are client messages for the fuzzer to start from.
func dhcpSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, m := range []*dhcpv4.DHCPv4{
		dhcpMsg(t, "52:54:00:0d:00:01", dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))),
		dhcpMsg(t, "52:54:00:0d:00:02", dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.10.12")))),
		dhcpMsg(t, "52:54:00:0d:00:03", dhcpv4.MessageTypeDiscover, dhcpv4.WithRelay(net.ParseIP("198.18.20.1")),
			dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port1"))))),
		dhcpMsg(t, "52:54:00:0d:00:01", dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP("198.18.10.11")),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000"))),
		dhcpMsg(t, "52:54:00:0d:00:04", dhcpv4.MessageTypeDecline),
	} {
		out = append(out, m.ToBytes())
	}
	return out
}

// FuzzDHCP: no datagram panics the server, and what it answers is a
// well-formed reply to an inventory node's MAC, with that node's address.
func FuzzDHCP(f *testing.F) {
	for _, b := range dhcpSeeds(f) {
		f.Add(b)
	}
	env := dhcpTestEnv(f, Config{Interface: "eth9"}, true)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &Server{cfg: env.cfg, deps: testDeps(env.inv, fleet.NewState(), log), log: log, quiet: map[string]time.Time{}}
	f.Fuzz(func(t *testing.T, data []byte) {
		// handle's steps, without its recover: a panic must fail here.
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		rep, ev := answer(env, req)
		d.note(ev, req)
		if rep == nil {
			return
		}
		m, err := dhcpv4.FromBytes(rep.msg.ToBytes())
		if err != nil {
			t.Fatalf("an answer that does not parse: %v\n%s", err, rep.msg.Summary())
		}
		node, err := env.inv.Match([]net.HardwareAddr{m.ClientHWAddr}, netip.Addr{})
		if err != nil || node != ev.node {
			t.Fatalf("answered %s, which is not node %v's", m.ClientHWAddr, ev.node)
		}
		if y := dhcpreply.IPv4(m.YourIPAddr); !y.IsUnspecified() && y != node.Address {
			t.Fatalf("offered %s to %s, whose address is %s", y, node.Name, node.Address)
		}
		if m.OpCode != dhcpv4.OpcodeBootReply || m.HWType != iana.HWTypeEthernet {
			t.Fatalf("not a reply:\n%s", m.Summary())
		}
		if !rep.to.IsValid() || rep.to.Port() == 0 {
			t.Fatalf("sent to %v", rep.to)
		}
	})
}
