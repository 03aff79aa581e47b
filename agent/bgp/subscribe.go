package bgp

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
)

// Subscriptions: GoBGP's watch events turned into Events, delivered to
// each subscriber in order on a goroutine of its own.

func (s *Speaker) endSubscriptions() {
	s.mu.Lock()
	subs := s.subs
	s.subs = make(map[*subscription]struct{})
	s.mu.Unlock()
	for sub := range subs {
		sub.cancel()
	}
}

// Subscribe calls fn with every best-path change (RouteAdded,
// RouteWithdrawn), starting with the current table and an
// InitialTableDone, with the peers' state changes (PeerState, starting
// with each peer's current state) and their End-of-RIB markers. Every
// best path counts: the same prefix under three RDs is three routes. Our
// own announcements are not reported.
//
// fn runs on a goroutine of its own, one event at a time, in order; events
// queue without bound while it runs, so it never holds up BGP. The
// returned function ends the subscription, as Stop does; an fn already
// running finishes, and no later event is delivered.
func (s *Speaker) Subscribe(fn func(Event)) (cancel func()) {
	ctx, stop := context.WithCancel(context.Background())
	sub := &subscription{s: s, fn: fn, ctx: ctx, cancel: stop, wake: make(chan struct{}, 1), delivered: make(map[Key]struct{})}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		stop()
		return func() {}
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go sub.run()
	err := s.srv.WatchEvent(ctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, sub.onWatch)
	if err != nil {
		s.log.Error("bgp: subscribing", "err", err)
		stop()
	}
	return func() {
		stop()
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}
}

type subscription struct {
	s      *Speaker
	fn     func(Event)
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	queue []Event
	wake  chan struct{}

	// Owned by the GoBGP watcher goroutine that calls onWatch.
	delivered map[Key]struct{}
	attrs     attrCache
	tableInit bool
}

func (sub *subscription) run() {
	for {
		select {
		case <-sub.ctx.Done():
			return
		case <-sub.wake:
		}
		sub.mu.Lock()
		q := sub.queue
		sub.queue = nil
		sub.mu.Unlock()
		for _, ev := range q {
			if sub.ctx.Err() != nil {
				return
			}
			sub.fn(ev)
		}
	}
}

func (sub *subscription) push(evs []Event) {
	if len(evs) == 0 {
		return
	}
	sub.mu.Lock()
	sub.queue = append(sub.queue, evs...)
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// onWatch runs on GoBGP's watcher goroutine: it decodes, and leaves the
// calling of fn to run.
func (sub *subscription) onWatch(r *api.WatchEventResponse) {
	var evs []Event
	switch e := r.Event.(type) {
	case *api.WatchEventResponse_Peer:
		pe := e.Peer
		if pe == nil || pe.Peer == nil || pe.Peer.State == nil || pe.Type == api.WatchEventResponse_PeerEvent_END_OF_INIT {
			return
		}
		a, err := netip.ParseAddr(pe.Peer.State.NeighborAddress)
		if err != nil {
			return
		}
		a = sub.s.addrs.realAddr(a.Unmap())
		ev := Event{Kind: PeerState, Peer: a, State: stateFromAPI(pe.Peer.State.SessionState)}
		if ev.State != StateEstablished {
			ev.Reason = sub.s.diag.get(a).lastError
		}
		evs = append(evs, ev)
	case *api.WatchEventResponse_Table:
		if e.Table != nil {
			for _, p := range e.Table.Paths {
				evs = sub.path(p, evs)
			}
		}
		// GoBGP sends the table as it is at watch time first, in one
		// event, before any change.
		if !sub.tableInit {
			sub.tableInit = true
			evs = append(evs, Event{Kind: InitialTableDone})
		}
	}
	sub.push(evs)
}

func (sub *subscription) path(p *api.Path, evs []Event) []Event {
	if p == nil || p.Family == nil {
		return evs
	}
	peer := sub.s.peerOf(p)
	if p.Nlri == nil && len(p.NlriBinary) == 0 {
		if f, ok := familyOf(apiutil.ToRouteFamily(p.Family)); ok && peer.IsValid() {
			evs = append(evs, Event{Kind: EndOfRIB, Peer: peer, Family: f})
		}
		return evs
	}
	withdraw := func() []Event {
		k, ok := keyOf(p)
		if !ok {
			return evs
		}
		if _, had := sub.delivered[k]; !had {
			return evs
		}
		delete(sub.delivered, k)
		return append(evs, Event{Kind: RouteWithdrawn, Route: Route{Family: k.Family, RD: k.RD, Prefix: k.Prefix, Peer: peer}})
	}
	if p.IsWithdraw || !peer.IsValid() {
		// Gone, or our own path is now the best one for the key.
		return withdraw()
	}
	rt, err := sub.attrs.route(p)
	if err != nil {
		if !errors.Is(err, errUnsupported) {
			sub.s.log.Warn("bgp: ignoring an undecodable best path", "peer", peer.String(), "family", apiutil.ToRouteFamily(p.Family).String(), "err", err)
		}
		// An unusable best path hides any earlier one for the key.
		return withdraw()
	}
	rt.Peer = peer
	sub.delivered[rt.Key()] = struct{}{}
	return append(evs, Event{Kind: RouteAdded, Route: rt, Peer: peer})
}

func keyOf(p *api.Path) (Key, bool) {
	f, ok := familyOf(apiutil.ToRouteFamily(p.Family))
	if !ok {
		return Key{}, false
	}
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return Key{}, false
	}
	r, err := routeFromNative(f, nlri, nil, false)
	if err != nil {
		return Key{}, false
	}
	return r.Key(), true
}
