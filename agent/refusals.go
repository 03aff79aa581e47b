package agent

import (
	"sort"
	"strings"
	"time"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/objects"
)

// An op the vRouter refuses (an endpoint whose namespace already has an
// interface of that name, a port it cannot create) must not stop the rest
// of the plan: the reconciler applies every op it can, holds the refused
// one back and tries it again with a growing delay, and says which
// endpoint suffers in `weft ctl status` and the metrics. Ops that need a
// refused one (a route through its port) are held with it: the agent's
// mirror of the vRouter refuses them by the vRouter's own rules
// (vrouter/objects), without asking the vRouter.

// refusal is an op the vRouter (or the mirror, for an op that names a
// refused object) refused, and when it is tried again.
type refusal struct {
	object   string // objects.Name: "put_port 3"
	endpoint string // the endpoint the op is for, "" if none
	err      string
	attempts int
	since    time.Time // first refused
	next     time.Time // not tried again before
}

// Backoff of a refused op: 1 s after the first refusal, doubling up to
// refusalMaxDelay.
const (
	refusalFirstDelay = time.Second
	refusalMaxDelay   = time.Minute
)

func refusalDelay(attempts int) time.Duration {
	d := refusalFirstDelay
	for i := 1; i < attempts && d < refusalMaxDelay; i++ {
		d *= 2
	}
	return min(d, refusalMaxDelay)
}

// holdBack splits ops into those to try now and those whose refusal's
// retry time has not come.
func holdBack(ops []*vrouterv1.Op, refused map[string]*refusal, now time.Time) (try []*vrouterv1.Op, held int) {
	for _, op := range ops {
		if rf, ok := refused[objects.Name(op)]; ok && now.Before(rf.next) {
			held++
			continue
		}
		try = append(try, op)
	}
	return try, held
}

// nextRefusals is the refusal bookkeeping after a reconcile: the ops of
// plan ops still held, and those refused now (one more attempt each);
// what succeeded or left the plan is forgotten.
func nextRefusals(prev map[string]*refusal, ops []*vrouterv1.Op, refusedNow []opRefusal, p *Plan, now time.Time) map[string]*refusal {
	inPlan := map[string]bool{}
	for _, op := range ops {
		inPlan[objects.Name(op)] = true
	}
	out := map[string]*refusal{}
	for name, rf := range prev {
		if inPlan[name] && now.Before(rf.next) {
			out[name] = rf
		}
	}
	for _, o := range refusedNow {
		name := objects.Name(o.op)
		rf := &refusal{object: name, since: now, attempts: 1, endpoint: opEndpoint(p, o.op), err: o.err.Error()}
		if old := prev[name]; old != nil {
			rf.since, rf.attempts = old.since, old.attempts+1
		}
		rf.next = now.Add(refusalDelay(rf.attempts))
		out[name] = rf
	}
	return out
}

// earliestRetry is when the next held op may be tried; zero if none.
func earliestRetry(refused map[string]*refusal) time.Time {
	var t time.Time
	for _, rf := range refused {
		if t.IsZero() || rf.next.Before(t) {
			t = rf.next
		}
	}
	return t
}

// sortedRefusals lists the refusals by endpoint, then object.
func sortedRefusals(refused map[string]*refusal) []*refusal {
	out := make([]*refusal, 0, len(refused))
	for _, rf := range refused {
		out = append(out, rf)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].endpoint != out[j].endpoint {
			return out[i].endpoint < out[j].endpoint
		}
		return out[i].object < out[j].object
	})
	return out
}

// opEndpoint names the endpoint an op is for: its port, its port's next
// hop, or a route or label through that next hop.
func opEndpoint(p *Plan, op *vrouterv1.Op) string {
	switch o := op.GetOp().(type) {
	case *vrouterv1.Op_PutPort:
		return o.PutPort.GetName()
	case *vrouterv1.Op_PutNextHop:
		return endpointOfNextHop(p, o.PutNextHop.GetId())
	case *vrouterv1.Op_PutRoute:
		return endpointOfNextHop(p, o.PutRoute.GetNextHop())
	case *vrouterv1.Op_PutLabel:
		return endpointOfNextHop(p, o.PutLabel.GetNextHop())
	}
	return ""
}

func endpointOfNextHop(p *Plan, id uint32) string {
	if p == nil {
		return ""
	}
	for k, v := range p.NextHopIDs {
		if v == id && strings.HasPrefix(k, "port:") {
			return k[len("port:"):]
		}
	}
	return ""
}
