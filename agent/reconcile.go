package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftnet/weft/agent/bgp"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/objects"
	"github.com/weftnet/weft/vrouter/packet"
)

// reconciler turns the declared state and the RIB's paths into vRouter
// state and announcements, and keeps the agent's view of what the vRouter
// has installed. reconcile, applyOps and checkVRouter run on one goroutine
// (Run's, then the loop's); others only read, through view.
type reconciler struct {
	log  *slog.Logger
	vr   *client.Client
	decl *declared
	rib  *rib
	// endpoints counts received paths that cannot be tunnelled to; nil
	// = not checked.
	endpoints *endpointCheck
	// unreachable: the last check found no vRouter (the loop's goroutine
	// alone reads and writes it), so an outage is logged once.
	unreachable bool

	mu sync.Mutex
	fw forwarding
}

// forwarding is what the agent knows of its vRouter and of what it
// programmed and announced; reconciler.mu guards it.
type forwarding struct {
	info     *vrouterv1.InfoReply
	underlay netip.Addr
	tunnels  []packet.Encap
	rmac     packet.MAC
	routerID netip.Addr

	installed *Installed
	// plan is the last applied plan's IDs (Plan.ids: not its ops nor the
	// next hops', which are per remote path), imported its desired
	// state's path counts: what is kept of a reconcile between two.
	plan     *Plan
	imported map[string]PathCounts
	speaker  *bgp.Speaker
	stats    reconcileStats
	// refused are the ops the vRouter refused, by objects.Name, held
	// back until their retry time.
	refused map[string]*refusal
	// applying is true while a reconcile sends its ops: installed then
	// records an op before the vRouter has answered it (applyOneByOne),
	// so a reader that must know what the vRouter has waits it out.
	applying bool
}

type reconcileStats struct {
	Count    uint64
	Last     time.Time
	Duration time.Duration
	Ops      int
	Err      string
}

// view runs f with the forwarding state locked; f must only read it.
func (r *reconciler) view(f func(fw *forwarding)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.fw)
}

// start reads the vRouter's Info and installed state.
func (r *reconciler) start(ctx context.Context) (*Installed, error) {
	info, err := r.vr.Info(ctx, &vrouterv1.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("vrouter info: %w", err)
	}
	if err := r.adoptVRouter(info); err != nil {
		return nil, err
	}
	inst, err := r.dump(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.fw.installed = inst
	r.mu.Unlock()
	return inst, nil
}

// adoptVRouter takes the underlay and tunnels from the vRouter's Info.
func (r *reconciler) adoptVRouter(info *vrouterv1.InfoReply) error {
	u, err := netip.ParseAddr(info.GetUnderlay().GetAddress())
	if err != nil {
		return fmt.Errorf("the vRouter has no underlay address (%q): start it with --underlay or --underlay-dev", info.GetUnderlay().GetAddress())
	}
	var tunnels []packet.Encap
	for _, e := range info.GetUnderlay().GetEncaps() {
		if e := e.Packet(); e != packet.EncapNone {
			tunnels = append(tunnels, e)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fw.info = info
	r.fw.underlay = u
	r.fw.tunnels = tunnels
	copy(r.fw.rmac[:], info.GetUnderlay().GetRouterMac())
	return nil
}

func (r *reconciler) dump(ctx context.Context) (*Installed, error) {
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	objs, err := r.vr.DumpAll(dctx)
	if err != nil {
		return nil, fmt.Errorf("reading the vRouter's state: %w", err)
	}
	return FromDump(objs)
}

// checkVRouter notices a vRouter that restarted (it has lost every port)
// and reads it again; true means it must be programmed again from scratch.
func (r *reconciler) checkVRouter(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := r.vr.Info(cctx, &vrouterv1.InfoRequest{})
	if err != nil {
		if !r.unreachable {
			r.log.Warn("vrouter unreachable", "err", err)
		}
		r.unreachable = true
		return false
	}
	if r.unreachable {
		r.log.Info("vrouter reachable again")
		r.unreachable = false
	}
	r.mu.Lock()
	started := r.fw.info.GetStartedUnix()
	r.mu.Unlock()
	if info.GetStartedUnix() == started {
		return false
	}
	r.log.Warn("the vRouter restarted: programming it again", "started", time.Unix(info.GetStartedUnix(), 0))
	if err := r.adoptVRouter(info); err != nil {
		r.log.Error("vrouter", "err", err)
		return false
	}
	inst, err := r.dump(ctx)
	if err != nil {
		r.log.Error("vrouter", "err", err)
		return false
	}
	r.mu.Lock()
	r.fw.installed = inst
	r.mu.Unlock()
	return true
}

// setRouterID and setSpeaker complete the state once, at start.
func (r *reconciler) setRouterID(id netip.Addr) {
	r.mu.Lock()
	r.fw.routerID = id
	r.mu.Unlock()
}

func (r *reconciler) setSpeaker(sp *bgp.Speaker) {
	r.mu.Lock()
	r.fw.speaker = sp
	r.mu.Unlock()
}

// lastDuration is how long the last reconcile took.
func (r *reconciler) lastDuration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fw.stats.Duration
}

// announcementsLocked are the routes to advertise for plan p, from the
// endpoints declared now whose label the vRouter has: an endpoint whose
// port it refused is not announced, traffic to it would be dropped.
func (r *reconciler) announcementsLocked(p *Plan) []bgp.Route {
	if p == nil || r.fw.installed == nil {
		return nil
	}
	cfg, eps := r.decl.snapshot()
	ready := eps[:0:0]
	for _, ep := range eps {
		if _, ok := r.fw.installed.Labels[p.LabelOf[ep.Name]]; ok {
			ready = append(ready, ep)
		}
	}
	return announcements(cfg, ready, p, r.fw.routerID, r.fw.underlay, r.fw.tunnels, r.fw.rmac)
}

// maxOpsPerApply keeps each Apply well under gRPC's message limit.
const maxOpsPerApply = 4000

// reconcile computes desired state, applies the difference to the vRouter
// and updates the announcements: puts first, then announcements, then
// withdrawals, then deletes, so that traffic always finds what a route
// promises. An op the vRouter refuses does not stop the others (see
// refusals.go); it is held back and tried again after a delay. The error
// is for a vRouter that could not be asked at all; retry says when a held
// op is due (zero if none is).
func (r *reconciler) reconcile(ctx context.Context) (retry time.Time, err error) {
	start := time.Now()
	r.mu.Lock()
	cfg, eps := r.decl.snapshot()
	paths, synced := r.rib.now()
	in := Inputs{Config: cfg, Underlay: r.fw.underlay, Endpoints: eps, Tunnels: r.fw.tunnels, Paths: paths}
	d := Compute(in)
	p := MakePlan(d, r.fw.installed)
	prev := r.fw.refused
	r.fw.applying = true
	r.mu.Unlock()
	if r.endpoints != nil {
		r.endpoints.check(cfg, paths)
	}

	var puts, dels []*vrouterv1.Op
	for _, op := range p.Ops {
		if isDelete(op) {
			dels = append(dels, op)
		} else {
			puts = append(puts, op)
		}
	}
	if !synced {
		// Until BGP has relearnt the routes, what a restarted agent finds
		// in the vRouter stays: deleting it would blackhole traffic.
		dels = nil
	}
	try, held := holdBack(puts, prev, start)
	refused, err := r.applyOps(ctx, try)
	if err == nil {
		r.mu.Lock()
		r.fw.plan, r.fw.imported = p.ids(), d.Imported
		sp := r.fw.speaker
		var want []bgp.Route
		if sp != nil {
			want = r.announcementsLocked(p)
		}
		r.mu.Unlock()
		if sp != nil {
			r.announce(sp, want)
			if err := sp.SetImportTargets(d.ImportTargets); err != nil && !errors.Is(err, bgp.ErrStopped) {
				r.log.Warn("route target membership", "err", err)
			}
		}
		var tryDels []*vrouterv1.Op
		tryDels, heldDels := holdBack(dels, prev, start)
		held += heldDels
		var refusedDels []opRefusal
		refusedDels, err = r.applyOps(ctx, tryDels)
		refused = append(refused, refusedDels...)
	}
	now := time.Now()
	r.mu.Lock()
	if err == nil {
		r.fw.refused = nextRefusals(prev, append(puts, dels...), refused, p, now)
	}
	clean := err == nil && len(r.fw.refused) == 0
	retry = earliestRetry(r.fw.refused)
	r.fw.applying = false
	st := &r.fw.stats
	st.Count++
	st.Last, st.Duration, st.Ops = start, now.Sub(start), len(puts)+len(dels)
	st.Err = ""
	if err != nil {
		st.Err = err.Error()
	} else if len(r.fw.refused) > 0 {
		st.Err = fmt.Sprintf("the vRouter refused %d ops (see refused)", len(r.fw.refused))
	}
	r.mu.Unlock()
	if clean && r.rib.installed(start, now) {
		// A whole table came in: the reconciles that took it left
		// garbage several times the size of what stays. Collect it and
		// give it back to the system now, not at the Go runtime's pace.
		go debug.FreeOSMemory()
	}
	for _, o := range refused {
		r.log.Warn("vrouter refused an op; holding it back", "op", objects.Name(o.op), "endpoint", opEndpoint(p, o.op), "err", o.err)
	}
	if n := len(puts) + len(dels); n > 0 {
		applied := n - len(refused) - held
		if err != nil {
			applied = 0
		}
		r.log.Info("reconciled", "ops", n, "applied", applied, "refused", len(refused), "held", held, "kinds", opKinds(puts, dels),
			"took", now.Sub(start).Round(time.Microsecond), "synced", synced)
	}
	return retry, err
}

// opRefusal is an op the vRouter, or the mirror by the vRouter's rules,
// refused.
type opRefusal struct {
	op  *vrouterv1.Op
	err error
}

// applyOps sends ops in batches and mirrors what was applied. The vRouter
// applies a batch in order up to the first op it refuses; the agent then
// reads it back and goes on op by op, so that one refused op only holds
// back itself and what depends on it. The error is for anything but a
// refusal (the vRouter unreachable).
func (r *reconciler) applyOps(ctx context.Context, ops []*vrouterv1.Op) ([]opRefusal, error) {
	var refused []opRefusal
	for len(ops) > 0 {
		n := min(len(ops), maxOpsPerApply)
		batch := ops[:n]
		ops = ops[n:]
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := r.vr.Apply(actx, &vrouterv1.ApplyRequest{Ops: batch})
		cancel()
		if err == nil {
			r.mu.Lock()
			r.fw.installed.Apply(batch)
			r.mu.Unlock()
			continue
		}
		if err := r.readBack(ctx); err != nil {
			return refused, fmt.Errorf("vrouter apply: %w", err)
		}
		if status.Code(err) != codes.InvalidArgument {
			return refused, fmt.Errorf("vrouter apply: %w", err)
		}
		rs, err := r.applyOneByOne(ctx, batch)
		refused = append(refused, rs...)
		if err != nil {
			return refused, err
		}
	}
	return refused, nil
}

// applyOneByOne applies ops singly after a refused batch. An op the
// mirror refuses (it names an object the vRouter refused) is not sent.
func (r *reconciler) applyOneByOne(ctx context.Context, ops []*vrouterv1.Op) ([]opRefusal, error) {
	var refused []opRefusal
	stale := false
	defer func() {
		if stale {
			r.readBack(ctx)
		}
	}()
	for _, op := range ops {
		one := []*vrouterv1.Op{op}
		r.mu.Lock()
		_, err := r.fw.installed.Apply(one)
		r.mu.Unlock()
		if err != nil {
			refused = append(refused, opRefusal{op, err})
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = r.vr.Apply(actx, &vrouterv1.ApplyRequest{Ops: one})
		cancel()
		if err != nil {
			// The mirror recorded the op: read the vRouter back.
			stale = true
			if status.Code(err) != codes.InvalidArgument {
				return refused, fmt.Errorf("vrouter apply: %w", err)
			}
			refused = append(refused, opRefusal{op, errors.New(status.Convert(err).Message())})
			r.readBack(ctx)
			stale = false
		}
	}
	return refused, nil
}

// readBack replaces the mirror with what the vRouter holds.
func (r *reconciler) readBack(ctx context.Context) error {
	inst, err := r.dump(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.fw.installed = inst
	r.mu.Unlock()
	return nil
}

// announce makes the speaker advertise exactly want.
func (r *reconciler) announce(sp *bgp.Speaker, want []bgp.Route) {
	keep := map[bgp.Key]bool{}
	for _, rt := range want {
		keep[rt.Key()] = true
		if err := sp.Announce(rt); err != nil && !errors.Is(err, bgp.ErrStopped) {
			r.log.Warn("announce", "prefix", rt.Prefix, "family", rt.Family.String(), "err", err)
		}
	}
	for _, rt := range sp.Announced() {
		if !keep[rt.Key()] {
			if err := sp.Withdraw(rt); err != nil && !errors.Is(err, bgp.ErrStopped) {
				r.log.Warn("withdraw", "prefix", rt.Prefix, "family", rt.Family.String(), "err", err)
			}
		}
	}
}

// opKinds summarises ops for the log: "put_route:3 delete_next_hop:1".
func opKinds(lists ...[]*vrouterv1.Op) string {
	counts := map[string]int{}
	var order []string
	for _, ops := range lists {
		for _, op := range ops {
			k := fmt.Sprintf("%T", op.GetOp())
			k = strings.TrimPrefix(k, "*vrouterv1.Op_")
			if counts[k] == 0 {
				order = append(order, k)
			}
			counts[k]++
		}
	}
	var b strings.Builder
	for i, k := range order {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", k, counts[k])
	}
	return b.String()
}
