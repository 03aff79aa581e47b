package fastpath

import (
	"errors"
	"maps"
	"time"

	"github.com/weftnet/weft/vrouter/dataplane"
	"github.com/weftnet/weft/vrouter/flow"
)

// A vRouter that finds the maps of one that died (pinned, still read by
// the programs that stay attached) adopts them: until its client has
// programmed it again, it writes what its tables hold and deletes
// nothing, so the kernel keeps forwarding the established flows; then it
// re-decides the flows the maps hold with its own policy, and the next
// Sync deletes what its tables no longer have.
const (
	// adoptSettle is how long after the latest Apply the tables count as
	// programmed again (a client applies its whole state in one burst).
	adoptSettle = 2 * time.Second
	// adoptMax ends an adoption no client came back for.
	adoptMax = 60 * time.Second
)

type adoption struct {
	on      bool
	started time.Time
	applied time.Time // the latest Apply; zero before the first
}

// startAdoption reads what the maps hold as what was synced, so that the
// first Syncs write only what differs and the last one deletes the rest.
func (d *Datapath) startAdoption() {
	o := &d.objs
	d.synced = syncState{
		routes: readMap[fpLpmKey, uint32](o.Routes), sources: readMap[fpLpmKey, uint32](o.Sources),
		nhs: readMap[uint32, fpNexthop](o.Nexthops), members: readMap[uint32, fpMembers](o.Composites),
		labels: readMap[uint32, uint32](o.Labels), vnis: readMap[uint32, uint32](o.Vnis),
		remotes: readMap[uint32, fpRemote](o.Remotes), ports: readMap[uint32, fpPortInfo](o.PortsById),
		byIf: readMap[uint32, fpPortInfo](o.PortsByIfindex), flows: readMap[fpFlowKey, fpFlowVal](o.Flows),
	}
	d.adopt = adoption{on: true, started: time.Now()}
	d.log.Info("fastpath: adopted the pinned maps and links; the kernel forwards established flows while the tables are programmed again",
		"dir", d.cfg.PinDir, "flows", len(d.synced.flows), "ports", len(d.synced.ports))
}

// Programmed tells the fast path its tables were just changed by a
// client (Apply), which ends an adoption once the client is done.
func (d *Datapath) Programmed() {
	d.mu.Lock()
	d.adopt.applied = time.Now()
	d.mu.Unlock()
}

// adoptionDue reports an adoption whose client has programmed the tables
// (or never came back). Called with d.mu held.
func (d *Datapath) adoptionDue(now time.Time) bool {
	a := d.adopt
	return a.on && (now.Sub(a.started) >= adoptMax || (!a.applied.IsZero() && now.Sub(a.applied) >= adoptSettle))
}

// endAdoption gives the engine the flows the maps hold that it does not
// know, decided by its own policy (a denied one leaves the kernel at the
// next Sync) and credited with what the kernel carried of them, and removes the pins and veth pairs of ports that were not
// created again. Called with d.mu held.
func (d *Datapath) endAdoption(ft *flow.Table) error {
	now := time.Now().UnixNano()
	for k, v := range d.synced.flows {
		// The kernel's count so far goes to the new entry: a flow's
		// counters go on across the restart.
		if fk := flowKeyOf(k); !ft.Credit(fk, 0, 0, 0) {
			ft.Decide(fk, v.SrcNet, v.DstNet, 0, 0, now)
			ft.Credit(fk, v.Packets, v.Bytes, now)
		}
	}
	var errs []error
	if d.cfg.PinDir != "" {
		for _, id := range pinnedPorts(d.cfg.PinDir) {
			if _, ok := d.ports[id]; ok {
				continue
			}
			errs = append(errs, removePortPins(d.portPins(id), d.synced.ports[id].VethIfindex))
			d.log.Info("fastpath: removed a port deleted while no vRouter ran", "port", id)
		}
	}
	// The TAPs of the vRouter before are gone with it.
	taps := map[uint32]uint32{}
	for _, a := range d.ports {
		taps[uint32(a.tap)] = uint32(a.veth)
	}
	errs = append(errs, apply(d.objs.Taps, readMap[uint32, uint32](d.objs.Taps), taps))
	d.adopt.on = false
	d.log.Info("fastpath: adoption done; entries the tables no longer hold are removed")
	return errors.Join(errs...)
}

// keepStale adds to want what had holds and want does not, while
// adopting: nothing is deleted before the tables are programmed again.
func keepStale[K, V comparable](adopting bool, had, want map[K]V) map[K]V {
	if !adopting {
		return want
	}
	out := maps.Clone(want)
	for k, v := range had {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// syncAdoption ends a due adoption before a Sync. Called with d.mu held.
func (d *Datapath) syncAdoption(e *dataplane.Engine) error {
	if !d.adoptionDue(time.Now()) {
		return nil
	}
	return d.endAdoption(e.Flows())
}
