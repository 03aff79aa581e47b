package flow

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/weftnet/weft/vrouter/packet"
)

const sec = int64(time.Second)

// t0 is an arbitrary start of the test clock.
const t0 = 1_000_000 * sec

func mustCompile(t testing.TB, rules []Rule) *Policy {
	t.Helper()
	p, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTable(t testing.TB, cfg Config, rules []Rule) *Table {
	t.Helper()
	tab := NewTable(cfg)
	tab.SetPolicy(mustCompile(t, rules))
	return tab
}

// entry is the table's entry for k, or nil.
func entry(tab *Table, k Key) *Entry {
	sym, h := tab.h.hash(&k)
	return tab.shard(sym).find(&k, h)
}

func expect(t *testing.T, what string, allowed bool, rule uint32, wantAllowed bool, wantRule uint32) {
	t.Helper()
	if allowed != wantAllowed || rule != wantRule {
		t.Errorf("%s: allowed %v rule %d, want %v rule %d", what, allowed, rule, wantAllowed, wantRule)
	}
}

// checkBooks asserts the counters add up; the table must be quiescent.
func checkBooks(t *testing.T, tab *Table, decides uint64) {
	t.Helper()
	st := tab.Stats()
	if got := st.Hits + st.Misses + st.Revalidations; decides != 0 && got != decides {
		t.Errorf("hits %d + misses %d + revalidations %d = %d, want %d decides", st.Hits, st.Misses, st.Revalidations, got, decides)
	}
	if st.Inserts != uint64(st.Entries)+st.Expired+st.Evictions {
		t.Errorf("inserts %d != entries %d + expired %d + evictions %d", st.Inserts, st.Entries, st.Expired, st.Evictions)
	}
	n := 0
	seen := make(map[Key]bool)
	tab.All(func(k Key, e *Entry) bool {
		if seen[k] {
			t.Errorf("All: %+v twice", k)
		}
		seen[k] = true
		n++
		return true
	})
	if n != st.Entries || n != tab.Len() {
		t.Errorf("All saw %d entries, Len %d, Stats %d", n, tab.Len(), st.Entries)
	}
	byVRF := map[uint32]int{}
	for k := range seen {
		byVRF[k.VRF]++
	}
	for vrf, v := range st.VRFs {
		if v.Entries != byVRF[vrf] {
			t.Errorf("VRF %d: %d entries counted, All saw %d", vrf, v.Entries, byVRF[vrf])
		}
		if v.Entries > st.VRFQuota {
			t.Errorf("VRF %d: %d entries, more than the quota %d", vrf, v.Entries, st.VRFQuota)
		}
	}
	for vrf, n := range byVRF {
		if _, ok := st.VRFs[vrf]; !ok {
			t.Errorf("VRF %d: %d entries, not counted", vrf, n)
		}
	}
}

func TestDecideReverse(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	fwd := Key{VRF: 3, Tuple: tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)}
	rev := Key{VRF: 3, Tuple: fwd.Tuple.Reverse()}

	a, r := tab.Decide(fwd, netNginx, netLeonardo, packet.TCPFlagSYN, 60, t0)
	expect(t, "nginx SYN", a, r, true, 10)
	if tab.Len() != 2 {
		t.Fatalf("Len %d after an allowed flow, want 2 (forward and reverse)", tab.Len())
	}
	// The policy alone denies leonardo to nginx; the reply passes because
	// it is the reverse of an allowed flow.
	if ok, _ := tab.Policy().Evaluate(netLeonardo, netNginx, rev.Tuple); ok {
		t.Fatal("the scenario should deny leonardo to nginx")
	}
	a, r = tab.Decide(rev, netLeonardo, netNginx, packet.TCPFlagSYN|packet.TCPFlagACK, 60, t0+1)
	expect(t, "leonardo SYN-ACK", a, r, true, 10)
	a, r = tab.Decide(fwd, netNginx, netLeonardo, packet.TCPFlagACK, 1500, t0+2)
	expect(t, "nginx data", a, r, true, 10)

	fe, re := entry(tab, fwd), entry(tab, rev)
	if fe == nil || re == nil {
		t.Fatal("entries missing")
	}
	if fe.Reverse() || !re.Reverse() || !fe.Allowed() || !re.Allowed() || fe.Rule() != 10 || re.Rule() != 10 {
		t.Errorf("forward %+v / reverse %+v", fe, re)
	}
	if fe.Packets() != 2 || fe.Bytes() != 1560 || fe.LastSeen() != t0+2 || re.Packets() != 1 || re.Bytes() != 60 || re.LastSeen() != t0+1 {
		t.Errorf("counters: forward %d pkts %d bytes at %d, reverse %d pkts %d bytes at %d",
			fe.Packets(), fe.Bytes(), fe.LastSeen(), re.Packets(), re.Bytes(), re.LastSeen())
	}
	if s, d := fe.Networks(); s != netNginx || d != netLeonardo {
		t.Errorf("forward networks %d, %d", s, d)
	}
	if s, d := re.Networks(); s != netLeonardo || d != netNginx {
		t.Errorf("reverse networks %d, %d", s, d)
	}

	// The VRF is part of the key: the same tuple in another VRF is another
	// flow (another tenant reusing the addresses).
	other := Key{VRF: 4, Tuple: rev.Tuple}
	a, r = tab.Decide(other, netLeonardo, netNginx, packet.TCPFlagSYN, 60, t0+3)
	expect(t, "same tuple, other VRF", a, r, false, 0)

	// Leonardo opening a connection to nginx is denied, and cached alone.
	a, r = tab.Decide(Key{VRF: 3, Tuple: tcpT("10.0.10.5", 41000, "10.0.30.5", 80)}, netLeonardo, netNginx, packet.TCPFlagSYN, 60, t0+4)
	expect(t, "leonardo to nginx", a, r, false, 0)
	if tab.Len() != 4 {
		t.Errorf("Len %d, want 4", tab.Len())
	}
	st := tab.Stats()
	if st.Misses != 3 || st.Hits != 2 || st.Inserts != 4 || st.Denied != 2 || st.RuleHits[10] != 1 {
		t.Errorf("stats %+v", st)
	}
	checkBooks(t, tab, 5)
}

// TestDecideRemote: the vRouter of leonardo's node sees nginx's packet
// arrive from the fabric and decides too, under its own port's VRF.
func TestDecideRemote(t *testing.T) {
	nginxNode := newTable(t, Config{}, scenario())
	leonardoNode := newTable(t, Config{}, scenario())
	ft := tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)
	for _, step := range []struct {
		node     *Table
		vrf      uint32
		t        packet.FiveTuple
		src, dst uint32
	}{
		{nginxNode, 1, ft, netNginx, netLeonardo},              // out of nginx's port
		{leonardoNode, 7, ft, netNginx, netLeonardo},           // from the fabric to leonardo's port
		{leonardoNode, 7, ft.Reverse(), netLeonardo, netNginx}, // leonardo replies
		{nginxNode, 1, ft.Reverse(), netLeonardo, netNginx},    // the reply arrives from the fabric
	} {
		a, r := step.node.Decide(Key{VRF: step.vrf, Tuple: step.t}, step.src, step.dst, 0, 100, t0)
		expect(t, fmt.Sprintf("%+v", step.t), a, r, true, 10)
	}
}

// TestDeniedReverseAllowed: a denied flow is cached alone, so a rule that
// allows the other direction as a flow of its own still works, and the
// reply of that flow (the first tuple) then passes.
func TestDeniedReverseAllowed(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	fromLeo := Key{VRF: 1, Tuple: tcpT("10.0.10.5", 8000, "10.0.30.5", 40000)}
	a, r := tab.Decide(fromLeo, netLeonardo, netNginx, 0, 60, t0)
	expect(t, "leonardo first", a, r, false, 0)
	a, r = tab.Decide(Key{VRF: 1, Tuple: fromLeo.Tuple.Reverse()}, netNginx, netLeonardo, 0, 60, t0+1)
	expect(t, "nginx", a, r, true, 10)
	a, r = tab.Decide(fromLeo, netLeonardo, netNginx, 0, 60, t0+2)
	expect(t, "leonardo again, now a reply", a, r, true, 10)
	if e := entry(tab, fromLeo); e == nil || !e.Reverse() {
		t.Errorf("leonardo's entry should be the reverse of nginx's flow: %+v", e)
	}
	if st := tab.Stats(); st.Evictions != 1 || tab.Len() != 2 {
		t.Errorf("stats %+v, len %d", st, tab.Len())
	}
	checkBooks(t, tab, 3)
}

func TestSameNetwork(t *testing.T) {
	tab := newTable(t, Config{}, nil)
	a, r := tab.Decide(Key{VRF: 1, Tuple: tcpT("10.0.100.3", 1, "10.0.100.4", 5432)}, netDB, netDB, 0, 60, t0)
	expect(t, "inside db", a, r, true, 0)
	a, r = tab.DecideICMPError(Key{VRF: 1, Tuple: tup(packet.ProtoICMPv4, "10.0.100.4", 0, "10.0.100.3", 0)}, tcpT("10.0.100.3", 1, "10.0.100.4", 5432), netDB, netDB, 60, t0)
	expect(t, "error inside db", a, r, true, 0)
	if st := tab.Stats(); tab.Len() != 0 || st.Misses != 0 || st.Hits != 0 {
		t.Errorf("same-network traffic touched the table: %+v", st)
	}
}

// echo builds an ICMPv4 echo packet and returns its tuple as the
// forwarding path would parse it.
func echo(t *testing.T, typ uint8, src, dst string, id uint16) packet.FiveTuple {
	t.Helper()
	b := make([]byte, 64)
	n, err := packet.PutIPv4Header(b, &packet.IPv4Header{Protocol: packet.ProtoICMPv4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst)}, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := packet.PutICMPv4Echo(b[n:], typ, id, 1, 8); err != nil {
		t.Fatal(err)
	}
	ft, err := packet.ParseFiveTuple(b[:n+16])
	if err != nil {
		t.Fatal(err)
	}
	return ft
}

func TestICMPEcho(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	req := echo(t, packet.ICMPv4Echo, "10.0.30.5", "10.0.10.5", 0x1234)
	rep := echo(t, packet.ICMPv4EchoReply, "10.0.10.5", "10.0.30.5", 0x1234)
	if rep != req.Reverse() {
		t.Fatalf("echo reply %+v is not the reverse of the request %+v", rep, req)
	}
	a, r := tab.Decide(Key{VRF: 1, Tuple: req}, netNginx, netLeonardo, 0, 84, t0)
	expect(t, "ping leonardo", a, r, true, 30)
	a, r = tab.Decide(Key{VRF: 1, Tuple: rep}, netLeonardo, netNginx, 0, 84, t0)
	expect(t, "pong from leonardo", a, r, true, 30)
	// Leonardo pinging nginx: no rule, and no request to reply to.
	a, r = tab.Decide(Key{VRF: 1, Tuple: echo(t, packet.ICMPv4Echo, "10.0.10.5", "10.0.30.5", 0x99)}, netLeonardo, netNginx, 0, 84, t0)
	expect(t, "ping nginx", a, r, false, 0)
	// A reply to a ping that was never sent is a flow of its own: denied.
	a, r = tab.Decide(Key{VRF: 1, Tuple: echo(t, packet.ICMPv4EchoReply, "10.0.10.5", "10.0.30.5", 0x4321)}, netLeonardo, netNginx, 0, 84, t0)
	expect(t, "unsolicited pong", a, r, false, 0)
}

// fragNeeded is what the vRouter builds at tunnel ingress for an oversized
// DF packet orig, and the tuple of orig that the error quotes.
func fragNeeded(t *testing.T, from string, orig packet.FiveTuple) (errTuple, quoted packet.FiveTuple, size int) {
	t.Helper()
	seg := make([]byte, 20)
	seg[0], seg[1], seg[2], seg[3] = byte(orig.SrcPort>>8), byte(orig.SrcPort), byte(orig.DstPort>>8), byte(orig.DstPort)
	seg[12] = 5 << 4
	b := make([]byte, 1400)
	n, err := packet.PutIPv4Header(b, &packet.IPv4Header{Protocol: orig.Proto, Src: orig.Src, Dst: orig.Dst, DF: true}, 1380)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[n:], seg)
	o, err := packet.ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	eb := make([]byte, packet.ICMPv4ErrorLen(o))
	e, err := packet.BuildICMPv4FragNeeded(eb, netip.MustParseAddr(from), o, 1300)
	if err != nil {
		t.Fatal(err)
	}
	et, err := packet.ParseFiveTuple(e.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	// The quoted header is cut short, so ParseFiveTuple refuses it; the
	// caller's parser for quoted headers yields orig's tuple.
	return et, orig, len(e.Bytes())
}

func TestDecideICMPError(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	flow := tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)
	tab.Decide(Key{VRF: 1, Tuple: flow}, netNginx, netLeonardo, packet.TCPFlagSYN, 60, t0)

	// Leonardo's side cannot send nginx anything but replies; the
	// fragmentation-needed error about nginx's flow is related and passes.
	et, quoted, n := fragNeeded(t, "10.0.10.5", flow)
	a, r := tab.DecideICMPError(Key{VRF: 1, Tuple: et}, quoted, netLeonardo, netNginx, n, t0+sec)
	expect(t, "frag needed about the flow", a, r, true, 10)
	if e := entry(tab, Key{VRF: 1, Tuple: flow}); e.Packets() != 1 || e.LastSeen() != t0 {
		t.Errorf("the error was counted on the flow: %d packets, last %d", e.Packets(), e.LastSeen())
	}
	// Also when it is about the reply direction (the error goes to
	// leonardo, quoting leonardo's reply).
	et2, q2, _ := fragNeeded(t, "10.0.30.5", flow.Reverse())
	a, r = tab.DecideICMPError(Key{VRF: 1, Tuple: et2}, q2, netNginx, netLeonardo, n, t0+sec)
	expect(t, "error about the reply", a, r, true, 10)

	// An error about a flow the table does not hold is an ICMP packet like
	// any other: leonardo to nginx has no ICMP rule.
	et, quoted, _ = fragNeeded(t, "10.0.10.5", tcpT("10.0.30.5", 40001, "10.0.10.5", 8000))
	a, r = tab.DecideICMPError(Key{VRF: 1, Tuple: et}, quoted, netLeonardo, netNginx, n, t0+sec)
	expect(t, "frag needed about no flow", a, r, false, 0)
	// A quoted datagram not sent by the error's destination is not related.
	et, _, _ = fragNeeded(t, "10.0.10.5", flow)
	et.Dst = netip.MustParseAddr("10.0.30.6")
	a, r = tab.DecideICMPError(Key{VRF: 1, Tuple: et}, flow, netLeonardo, netNginx, n, t0+sec)
	expect(t, "error to another host quoting the flow", a, r, false, 0)
	// And an error about no flow that a rule allows as ICMP passes.
	et, quoted, _ = fragNeeded(t, "10.0.30.5", tcpT("10.0.10.5", 1, "10.0.30.5", 2))
	a, r = tab.DecideICMPError(Key{VRF: 1, Tuple: et}, quoted, netNginx, netLeonardo, n, t0+sec)
	expect(t, "error allowed as icmp to leonardo", a, r, true, 30)
	if st := tab.Stats(); st.Related != 2 {
		t.Errorf("related %d, want 2", st.Related)
	}

	// After a policy change that denies the flow, its errors are no longer
	// related (the stale decision is re-decided with the flow's networks).
	tab.SetPolicy(mustCompile(t, nil))
	et, quoted, _ = fragNeeded(t, "10.0.10.5", flow)
	a, r = tab.DecideICMPError(Key{VRF: 1, Tuple: et}, quoted, netLeonardo, netNginx, n, t0+2*sec)
	expect(t, "frag needed after the rule went", a, r, false, 0)
}

func TestAging(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	udp := Key{VRF: 1, Tuple: udpT("10.0.30.200", 5000, "10.4.0.1", 6000)} // rule 70
	oneWay := Key{VRF: 1, Tuple: udpT("10.0.30.200", 5001, "10.4.0.1", 6000)}
	tcp := Key{VRF: 1, Tuple: tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)}
	icmp := Key{VRF: 1, Tuple: echo(t, packet.ICMPv4Echo, "10.0.30.5", "10.0.10.5", 1)}
	denied := Key{VRF: 1, Tuple: tcpT("10.0.10.5", 1, "10.0.30.5", 2)}

	tab.Decide(udp, netNginx, netOther, 0, 100, t0)
	tab.Decide(oneWay, netNginx, netOther, 0, 100, t0)
	tab.Decide(tcp, netNginx, netLeonardo, packet.TCPFlagSYN, 60, t0)
	tab.Decide(icmp, netNginx, netLeonardo, 0, 84, t0)
	tab.Decide(denied, netLeonardo, netNginx, packet.TCPFlagSYN, 60, t0)
	// Only the reply keeps the udp flow busy; the pair ages as one.
	tab.Decide(Key{VRF: 1, Tuple: udp.Tuple.Reverse()}, netOther, netNginx, 0, 100, t0+40*sec)
	// Only the forward direction keeps oneWay busy; its reverse must stay.
	tab.Decide(oneWay, netNginx, netOther, 0, 100, t0+40*sec)
	if tab.Len() != 9 {
		t.Fatalf("Len %d, want 9", tab.Len())
	}

	steps := []struct {
		at      int64
		removed int
		what    string
	}{
		{t0 + 10*sec, 0, "nothing idle for more than its timeout"},
		{t0 + 10*sec + 1, 1, "denied flow after 10 s"},
		{t0 + 30*sec + 1, 2, "icmp after 30 s"},
		{t0 + 100*sec, 0, "udp last seen at 40 s, both ways"},
		{t0 + 100*sec + 1, 4, "both udp flows, with their reverses"},
		{t0 + 180*sec, 0, "tcp just in time"},
		{t0 + 180*sec + 1, 2, "tcp"},
	}
	for _, s := range steps {
		if n := tab.Sweep(s.at); n != s.removed {
			t.Errorf("%s: Sweep removed %d, want %d", s.what, n, s.removed)
		}
	}
	if tab.Len() != 0 {
		t.Errorf("Len %d after every flow aged", tab.Len())
	}
	// The reply of an aged flow is a new flow of its own, and denied.
	a, _ := tab.Decide(Key{VRF: 1, Tuple: tcp.Tuple.Reverse()}, netLeonardo, netNginx, packet.TCPFlagACK, 60, t0+200*sec)
	if a {
		t.Error("a reply after its flow aged passed")
	}
	if st := tab.Stats(); st.Expired != 9 {
		t.Errorf("expired %d, want 9", st.Expired)
	}
	checkBooks(t, tab, 0)
}

func TestAgingTCPClose(t *testing.T) {
	const fin, rst, syn, ack = packet.TCPFlagFIN, packet.TCPFlagRST, packet.TCPFlagSYN, packet.TCPFlagACK
	tests := []struct {
		name    string
		fwd     []uint8 // flags sent by the client, then ...
		rev     []uint8 // ... by the server, then ...
		fwd2    []uint8 // ... by the client again
		closing bool
	}{
		{"open", []uint8{syn, ack}, []uint8{syn | ack}, nil, false},
		{"half closed", []uint8{syn, ack | fin}, []uint8{syn | ack}, nil, false},
		{"closed both ways", []uint8{syn, ack | fin}, []uint8{syn | ack, ack | fin}, []uint8{ack}, true},
		{"reset by server", []uint8{syn}, []uint8{rst | ack}, nil, true},
		{"reset by client", []uint8{syn, rst}, nil, nil, true},
		{"port reused after close", []uint8{syn, fin | ack}, []uint8{fin | ack}, []uint8{syn}, false},
		{"reset, then reused", []uint8{rst}, nil, []uint8{syn}, false},
	}
	for _, tc := range tests {
		tab := newTable(t, Config{ClosingTimeout: 5 * time.Second}, scenario())
		k := Key{VRF: 1, Tuple: tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)}
		rk := Key{VRF: 1, Tuple: k.Tuple.Reverse()}
		for _, f := range tc.fwd {
			tab.Decide(k, netNginx, netLeonardo, f, 60, t0)
		}
		for _, f := range tc.rev {
			tab.Decide(rk, netLeonardo, netNginx, f, 60, t0)
		}
		for _, f := range tc.fwd2 {
			tab.Decide(k, netNginx, netLeonardo, f, 60, t0)
		}
		e := entry(tab, k)
		if e == nil {
			t.Fatalf("%s: no entry", tc.name)
		}
		if e.Closing() != tc.closing || entry(tab, rk).Closing() != tc.closing {
			t.Errorf("%s: closing %v, want %v", tc.name, e.Closing(), tc.closing)
		}
		want := 0
		if tc.closing {
			want = 2
		}
		if n := tab.Sweep(t0 + 5*sec + 1); n != want {
			t.Errorf("%s: Sweep after the closing timeout removed %d, want %d", tc.name, n, want)
		}
	}
}

func TestFull(t *testing.T) {
	tab := newTable(t, Config{Max: 8, VRFQuota: 16}, scenario()) // room for 2 denied flows; a quota beyond the table
	flow := func(i int) Key {
		return Key{VRF: 1, Tuple: tcpT("10.0.30.5", uint16(40000+i), "10.0.10.5", 8000)}
	}
	deny := func(i int) Key {
		return Key{VRF: 1, Tuple: tcpT("10.0.10.5", uint16(40000+i), "10.0.30.5", 80)}
	}
	for i := 0; i < 3; i++ {
		a, r := tab.Decide(deny(i), netLeonardo, netNginx, 0, 60, t0)
		expect(t, "denied", a, r, false, 0)
	}
	if st := tab.Stats(); tab.Len() != 2 || st.Full != 1 {
		t.Fatalf("denied flows may take a quarter of the table: len %d, full %d", tab.Len(), st.Full)
	}
	for i := 0; i < 3; i++ {
		a, r := tab.Decide(flow(i), netNginx, netLeonardo, 0, 60, t0)
		expect(t, "allowed", a, r, true, 10)
	}
	if st := tab.Stats(); tab.Len() != 8 || st.Full != 1 {
		t.Fatalf("len %d full %d, want 8 and 1", tab.Len(), st.Full)
	}
	// Full: still decided, by the policy, on every packet.
	for i := 0; i < 2; i++ {
		a, r := tab.Decide(flow(3), netNginx, netLeonardo, 0, 60, t0)
		expect(t, "allowed, table full", a, r, true, 10)
		a, r = tab.Decide(deny(3), netLeonardo, netNginx, 0, 60, t0)
		expect(t, "denied, table full", a, r, false, 0)
	}
	// Cached flows still hit.
	a, r := tab.Decide(Key{VRF: 1, Tuple: flow(0).Tuple.Reverse()}, netLeonardo, netNginx, 0, 60, t0)
	expect(t, "reply of a cached flow", a, r, true, 10)
	if st := tab.Stats(); tab.Len() != 8 || st.Full != 5 || st.Hits != 1 {
		t.Errorf("len %d, stats %+v", tab.Len(), st)
	}
	// Room again once flows age.
	tab.Sweep(t0 + time.Hour.Nanoseconds())
	tab.Decide(flow(3), netNginx, netLeonardo, 0, 60, t0)
	if tab.Len() != 2 {
		t.Errorf("len %d after ageing and a new flow", tab.Len())
	}
	checkBooks(t, tab, 0)
}

func TestPolicyChange(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	k := Key{VRF: 1, Tuple: tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)}
	rk := Key{VRF: 1, Tuple: k.Tuple.Reverse()}
	fwd := func(what string, allowed bool, rule uint32) {
		t.Helper()
		a, r := tab.Decide(k, netNginx, netLeonardo, 0, 60, t0)
		expect(t, what+": nginx", a, r, allowed, rule)
	}
	reply := func(what string, allowed bool, rule uint32) {
		t.Helper()
		a, r := tab.Decide(rk, netLeonardo, netNginx, 0, 60, t0)
		expect(t, what+": leonardo", a, r, allowed, rule)
	}
	fwd("established", true, 10)
	reply("established", true, 10)

	// The same traffic, now allowed by another rule: the reply comes first
	// after the change and must still pass, decided by its forward flow.
	moved := scenario()
	moved[0].ID = 11
	tab.SetPolicy(mustCompile(t, moved))
	reply("rule renumbered", true, 11)
	fwd("rule renumbered", true, 11)
	if st := tab.Stats(); st.Revalidations != 1 || st.RuleHits[11] != 1 || tab.Len() != 2 {
		t.Errorf("after renumbering: %+v", st)
	}
	if _, gone := tab.Stats().RuleHits[10]; gone {
		t.Error("RuleHits reports rule 10, which is no longer in the policy")
	}

	// The rules that allowed it go: both directions are denied at once.
	tab.SetPolicy(mustCompile(t, scenario()[1:7]))
	fwd("rule removed", false, 0)
	reply("rule removed", false, 0)

	// The rule comes back. The reply alone is still denied: the flow was
	// forgotten, and leonardo may not open one to nginx. Nginx's next
	// packet re-creates the flow, and then the reply passes.
	tab.SetPolicy(mustCompile(t, scenario()))
	reply("rule back", false, 0)
	fwd("rule back", true, 10)
	reply("rule back", true, 10)

	// A denied flow that a new rule allows.
	k9 := Key{VRF: 1, Tuple: udpT("10.0.30.5", 40000, "10.0.10.5", 9000)}
	a, _ := tab.Decide(k9, netNginx, netLeonardo, 0, 60, t0)
	if a {
		t.Fatal("udp 9000 allowed before its rule")
	}
	tab.SetPolicy(mustCompile(t, append(scenario(), Rule{ID: 90, SrcNetwork: netNginx, DstNetwork: netLeonardo, Proto: packet.ProtoUDP})))
	a, r := tab.Decide(k9, netNginx, netLeonardo, 0, 60, t0)
	expect(t, "udp 9000 after its rule", a, r, true, 90)
	a, r = tab.Decide(Key{VRF: 1, Tuple: k9.Tuple.Reverse()}, netLeonardo, netNginx, 0, 60, t0)
	expect(t, "udp 9000 reply", a, r, true, 90)

	// Setting the policy in force is not a change.
	fwd("before re-setting", true, 10)
	before := tab.Stats().Revalidations
	tab.SetPolicy(tab.Policy())
	fwd("same policy", true, 10)
	if tab.Stats().Revalidations != before {
		t.Error("SetPolicy of the policy in force invalidated decisions")
	}

	// A flow's networks are part of its decision: if the destination's
	// address moves to another network, the next packet re-decides.
	a, r = tab.Decide(k, netNginx, netDB, 0, 60, t0)
	expect(t, "destination now in db", a, r, false, 0)

	tab.SetPolicy(nil)
	a, r = tab.Decide(k, netNginx, netLeonardo, 0, 60, t0)
	expect(t, "nil policy", a, r, false, 0)
	checkBooks(t, tab, 0)
}

func TestRuleCounters(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	for i := 0; i < 3; i++ {
		k := Key{VRF: 1, Tuple: tcpT("10.0.30.5", uint16(40000+i), "10.0.10.5", 8000)}
		for j := 0; j < 5; j++ { // packets of one flow count once
			tab.Decide(k, netNginx, netLeonardo, 0, 60, t0)
			tab.Decide(Key{VRF: 1, Tuple: k.Tuple.Reverse()}, netLeonardo, netNginx, 0, 60, t0)
		}
	}
	tab.Decide(Key{VRF: 1, Tuple: tcpT("10.0.10.5", 40000, "10.0.100.3", 5432)}, netLeonardo, netDB, 0, 60, t0)
	tab.Decide(Key{VRF: 1, Tuple: tcpT("10.0.10.5", 40000, "10.0.100.3", 22)}, netLeonardo, netDB, 0, 60, t0)
	tab.Decide(Key{VRF: 1, Tuple: tcpT("10.0.10.5", 40001, "10.0.100.3", 22)}, netLeonardo, netDB, 0, 60, t0)
	st := tab.Stats()
	want := map[uint32]uint64{10: 3, 20: 1, 30: 0, 40: 0, 50: 0, 60: 0, 70: 0, 80: 0}
	if fmt.Sprint(st.RuleHits) != fmt.Sprint(want) || st.Denied != 2 || st.Hits != 27 || st.Misses != 6 {
		t.Errorf("rule hits %v denied %d hits %d misses %d; want %v, 2, 27, 6", st.RuleHits, st.Denied, st.Hits, st.Misses, want)
	}
	// A rule keeps its count while its ID stays in the policy (edited or
	// not); a rule that goes loses it.
	edited := scenario()
	edited[0].DstPorts = []PortRange{{8000, 8080}}
	tab.SetPolicy(mustCompile(t, append(edited[:1], edited[2:]...)))
	st = tab.Stats()
	if _, ok := st.RuleHits[20]; ok || st.RuleHits[10] != 3 {
		t.Errorf("after the edit: %v", st.RuleHits)
	}
	checkBooks(t, tab, 33)
}

func TestConfigDefaults(t *testing.T) {
	tab := NewTable(Config{Max: -1, TCPTimeout: -time.Second})
	if tab.max != DefaultMax || tab.tcpTO != int64(DefaultTCPTimeout) || tab.udpTO != int64(DefaultUDPTimeout) ||
		tab.otherTO != int64(DefaultOtherTimeout) || tab.closeTO != int64(DefaultClosingTimeout) || tab.denyTO != int64(DefaultDeniedTimeout) {
		t.Errorf("defaults not applied: %+v", tab)
	}
	if a, _ := tab.Decide(Key{Tuple: tcpT("10.0.30.5", 1, "10.0.10.5", 8000)}, netNginx, netLeonardo, 0, -5, t0); a {
		t.Error("a new table allowed traffic between networks")
	}
}

// TestManyFlows grows the shards through many resizes, checks every flow
// still hits, then ages them all and checks the shards shrink back.
func TestManyFlows(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	const n = 50000
	key := func(i int) Key {
		return Key{VRF: uint32(i % 3), Tuple: tcpT(fmt.Sprintf("10.0.30.%d", i%200), uint16(i), "10.0.10.5", 8000)}
	}
	for i := 0; i < n; i++ {
		tab.Decide(key(i), netNginx, netLeonardo, 0, 60, t0)
	}
	misses := tab.Stats().Misses
	for i := 0; i < n; i++ {
		if a, _ := tab.Decide(key(i), netNginx, netLeonardo, 0, 60, t0); !a {
			t.Fatalf("flow %d denied", i)
		}
		if a, _ := tab.Decide(Key{VRF: key(i).VRF, Tuple: key(i).Tuple.Reverse()}, netLeonardo, netNginx, 0, 60, t0); !a {
			t.Fatalf("reply %d denied", i)
		}
	}
	if st := tab.Stats(); st.Misses != misses || tab.Len() != 2*n {
		t.Errorf("misses %d -> %d, len %d", misses, st.Misses, tab.Len())
	}
	checkBooks(t, tab, 3*n)
	if got := tab.Sweep(t0 + time.Hour.Nanoseconds()); got != 2*n {
		t.Errorf("Sweep removed %d, want %d", got, 2*n)
	}
	for i := range tab.shards {
		if l := len(tab.shards[i].tab.Load().s); l != minSlots {
			t.Fatalf("shard %d has %d slots after emptying", i, l)
		}
	}
}

func TestHitAllocs(t *testing.T) {
	tab := newTable(t, Config{}, scenario())
	k := Key{VRF: 1, Tuple: tcpT("10.0.30.5", 40000, "10.0.10.5", 8000)}
	tab.Decide(k, netNginx, netLeonardo, packet.TCPFlagSYN, 60, t0)
	et, quoted, n := fragNeeded(t, "10.0.10.5", k.Tuple)
	ek := Key{VRF: 1, Tuple: et}
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"hit", func() { tab.Decide(k, netNginx, netLeonardo, packet.TCPFlagACK, 1500, t0) }},
		{"hit with fin and syn", func() {
			tab.Decide(k, netNginx, netLeonardo, packet.TCPFlagFIN, 60, t0)
			tab.Decide(k, netNginx, netLeonardo, packet.TCPFlagSYN, 60, t0)
		}},
		{"same network", func() { tab.Decide(k, netDB, netDB, 0, 60, t0) }},
		{"related icmp error", func() { tab.DecideICMPError(ek, quoted, netLeonardo, netNginx, n, t0) }},
	} {
		if a := testing.AllocsPerRun(1000, tc.f); a != 0 {
			t.Errorf("%s: %v allocations", tc.name, a)
		}
	}
}

// TestConcurrentDecide runs Decide from many goroutines on overlapping
// flows while the policy flips between two that allow the same traffic
// under different rule IDs, and Sweep, All and Stats run; every decision
// must be right. Then it swaps to a deny-all policy and back, with the
// goroutines still running, and checks each phase.
func TestConcurrentDecide(t *testing.T) {
	rulesA := []Rule{{ID: 1, SrcNetwork: netNginx, DstNetwork: netLeonardo, Proto: packet.ProtoTCP, DstPorts: []PortRange{{0, 499}}}}
	rulesB := []Rule{{ID: 2, SrcNetwork: netNginx, DstNetwork: netLeonardo, Proto: packet.ProtoTCP, DstPorts: []PortRange{{0, 199}, {200, 499}}}}
	pa, pb := mustCompile(t, rulesA), mustCompile(t, rulesB)
	tab := NewTable(Config{})
	tab.SetPolicy(pa)

	const workers, flows, rounds = 8, 2000, 6
	keys := make([]Key, flows)
	for i := range keys {
		keys[i] = Key{VRF: uint32(i % 2), Tuple: tcpT(fmt.Sprintf("10.0.30.%d", i%50), uint16(30000+i), "10.0.10.5", uint16(i%1000))}
	}
	var decides atomic.Uint64
	var stop atomic.Bool
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // the control plane and the sweeper
		defer bg.Done()
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				tab.SetPolicy(pb)
			} else {
				tab.SetPolicy(pa)
			}
			tab.Sweep(t0) // nothing is idle at t0: exercises the locks only
			n := 0
			tab.All(func(Key, *Entry) bool { n++; return true })
			_ = tab.Stats()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for j := 0; j < flows; j++ {
					k := keys[(j*7+w*131+r*17)%flows] // workers overlap on flows
					want := k.Tuple.DstPort < 500
					a, rule := tab.Decide(k, netNginx, netLeonardo, 0, 100, t0)
					ra, rr := tab.Decide(Key{VRF: k.VRF, Tuple: k.Tuple.Reverse()}, netLeonardo, netNginx, 0, 100, t0)
					decides.Add(2)
					if a != want || ra != want || (want && (rule == 0 || rr == 0)) || (!want && (rule != 0 || rr != 0)) {
						select {
						case errs <- fmt.Sprintf("flow %+v: forward %v/%d reply %v/%d, want %v", k, a, rule, ra, rr, want):
						default:
						}
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	stop.Store(true)
	bg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	checkBooks(t, tab, decides.Load())

	// Phase two: after SetPolicy returns, no goroutine may see the old
	// decision.
	for _, phase := range []struct {
		pol  *Policy
		deny bool
	}{{mustCompile(t, nil), true}, {pa, false}} {
		tab.SetPolicy(phase.pol)
		var wg sync.WaitGroup
		var bad atomic.Int64
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for j := w; j < flows; j += workers / 2 {
					k := keys[j]
					if a, _ := tab.Decide(k, netNginx, netLeonardo, 0, 100, t0); a != (!phase.deny && k.Tuple.DstPort < 500) {
						bad.Add(1)
					}
				}
			}(w)
		}
		wg.Wait()
		if bad.Load() != 0 {
			t.Errorf("deny=%v: %d stale decisions", phase.deny, bad.Load())
		}
	}
	checkBooks(t, tab, 0)
}

// TestEntryLayout pins the sizes the hit path's cache behaviour relies
// on: an Entry is two cache lines, hot fields first.
func TestEntryLayout(t *testing.T) {
	var e Entry
	if s := unsafe.Sizeof(e); s != 128 {
		t.Errorf("Entry is %d bytes, want 128", s)
	}
	if o := unsafe.Offsetof(e.tuple); o != 64 {
		t.Errorf("Entry.tuple at %d, want 64 (the second cache line)", o)
	}
	if s := unsafe.Sizeof(pair{}); s != 256 {
		t.Errorf("pair is %d bytes, want 256", s)
	}
}
