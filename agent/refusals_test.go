package agent

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/config"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
)

// A first reconcile the vRouter refused leaves no plan: announcing from
// it must not crash the agent (it did, and a supervisor restarted it into
// the same crash).
func TestAnnouncementsWithoutPlan(t *testing.T) {
	c := &config.Config{Networks: []config.VirtualNetwork{{Name: "leonardo", VNI: 100}}}
	eps := []LocalEndpoint{{Name: "leo1", Network: "leonardo", Address: netip.MustParsePrefix("10.0.10.5/24")}}
	if got := announcements(c, eps, nil, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1"),
		[]packet.Encap{packet.EncapMPLSoUDP}, packet.MAC{}); got != nil {
		t.Errorf("announcements without a plan: %v, want none", got)
	}
	r := &reconciler{decl: newDeclared("a", c, nil)}
	if got := r.announcementsLocked(nil); got != nil {
		t.Errorf("announcementsLocked(nil) = %v", got)
	}
}

// A refused op is retried after 1 s, then 2, 4... up to a minute; what
// succeeds or leaves the plan is forgotten.
func TestRefusalBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: time.Minute, 30: time.Minute} {
		if got := refusalDelay(attempts); got != want {
			t.Errorf("delay after %d attempts: %v, want %v", attempts, got, want)
		}
	}
	port := &vrouterv1.Op{Op: &vrouterv1.Op_PutPort{PutPort: &vrouterv1.Port{Id: 2, Name: "bad1"}}}
	route := &vrouterv1.Op{Op: &vrouterv1.Op_PutRoute{PutRoute: &vrouterv1.Route{Vrf: 1, Prefix: "10.0.10.9/32", NextHop: 5}}}
	p := &Plan{NextHopIDs: map[string]uint32{"port:bad1": 5}}
	t0 := time.Unix(1000, 0)
	rs := nextRefusals(nil, []*vrouterv1.Op{port, route}, []opRefusal{{port, errors.New("file exists")}, {route, errors.New("no next hop 5")}}, p, t0)
	if len(rs) != 2 || rs["put_port 2"].endpoint != "bad1" || rs["put_route vrf 1 10.0.10.9/32"].endpoint != "bad1" {
		t.Fatalf("refusals %v: want the port and the route, both bad1's", rs)
	}
	try, held := holdBack([]*vrouterv1.Op{port, route}, rs, t0.Add(500*time.Millisecond))
	if len(try) != 0 || held != 2 {
		t.Errorf("before the retry time: try %d, held %d; want 0, 2", len(try), held)
	}
	try, _ = holdBack([]*vrouterv1.Op{port, route}, rs, t0.Add(time.Second))
	if len(try) != 2 {
		t.Errorf("at the retry time: try %d ops, want 2", len(try))
	}
	rs = nextRefusals(rs, []*vrouterv1.Op{port, route}, []opRefusal{{port, errors.New("file exists")}}, p, t0.Add(time.Second))
	if rf := rs["put_port 2"]; len(rs) != 1 || rf.attempts != 2 || !rf.next.Equal(t0.Add(3*time.Second)) || !rf.since.Equal(t0) {
		t.Errorf("after a second refusal: %+v (want only the port, attempt 2, next at +3s)", rs)
	}
	if rs = nextRefusals(rs, []*vrouterv1.Op{route}, nil, p, t0.Add(2*time.Second)); len(rs) != 0 {
		t.Errorf("an op that left the plan is still held: %v", rs)
	}
}
