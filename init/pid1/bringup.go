package pid1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/config/source"
	"github.com/weftnet/weft/init/steps"
)

// Step names the bring-up reports, in the order a healthy boot prints them
// (after mounts, modules and cmdline, which Main reports). init/underlay
// reports "link" and "dhcp" per link between underlay and metadata; Apply
// reports "hostname" and "services" between config and ready.
const (
	StepConfigDrive = "config-drive"
	StepNetworkData = "network-data" // one verdict per problem in a network_data.json
	StepUnderlay    = "underlay"     // the underlay as a whole: at least one usable link or not
	StepMetadata    = "metadata"     // the OpenStack metadata service ...
	StepURL         = "url"          // ... or the weft.config= URL instead of it
	StepConfig      = "config"
	StepLastGood    = "last-good" // where the last good config is kept; its file's save and load
	StepReady       = "ready"
)

// Reporter records step verdicts; *steps.Recorder implements it.
type Reporter interface {
	Report(name string, v steps.Verdict, detail string, attrs ...any)
}

// UnderlayApplier brings the underlay links up; *underlay.Manager
// implements it. Apply returns an error only when no link is usable, and
// keeps the previous good state when a new Underlay fails.
type UnderlayApplier interface {
	Apply(ctx context.Context, u config.Underlay) error
}

// Applied is a configuration handed to Bringup.Apply.
type Applied struct {
	Bundle *config.Bundle
	Config *config.Config
	Source string // where it came from, for verdicts
	// LastGood is set when this is the saved last good config, used because
	// the current sources gave nothing valid.
	LastGood bool
}

// Bringup is the node bring-up after mounts and modules: config drive,
// underlay, config sources, then the hand-over to Apply. Its dependencies are
// fields so that tests drive the sequence with fakes; Main wires the real
// ones. Run owns the unexported state; a Bringup runs once.
//
// The sequence (DESIGN.md, "Node bring-up"):
//
//  1. config drive (local, read before any network);
//  2. underlay from the drive's network_data.json, else the underlay section
//     of the drive's weft.yaml, else DHCP on BOOTIF or every NIC; links up
//     and MTU set before any network fetch;
//  3. config: the drive's user_data if it is weft.yaml, else the weft.config=
//     URL, else the metadata service (whose network_data.json replaces the
//     DHCP default);
//  4. a valid config is saved as last good and applied; an invalid one keeps
//     the current or last good one, and the fetch is retried with backoff
//     until a valid one arrives;
//  5. ready once the underlay has an address the vRouter can bind (a link
//     that is up without one is not enough).
//
// Each file of a source's bundle stands alone: a broken one gets its own
// verdict (the step's, with attr file=) and the others are used.
type Bringup struct {
	Rec     Reporter
	Log     *slog.Logger
	Clock   Clock // nil: the wall clock
	Cmdline config.Cmdline

	Drive       source.Source                  // nil: no config drive lookup
	NewURL      func(url string) source.Source // the weft.config= source
	NewMetadata func() source.Source           // the metadata service

	Underlay        UnderlayApplier
	DefaultUnderlay func(bootif net.HardwareAddr) (config.Underlay, error)
	// PrepareUnderlay runs before each Apply (loads bonding, 8021q); may be nil.
	PrepareUnderlay func(u config.Underlay)

	// UnderlayAddr is the underlay address the vRouter binds for a config
	// (underlay.BindAddr); the node is ready only when there is one. nil:
	// not checked.
	UnderlayAddr func(cfg *config.Config) (netip.Addr, error)

	Store LastGood // nil: no last good config
	// Decode turns a bundle into a validated Config; nil: (*config.Bundle).Config.
	Decode func(b *config.Bundle) (*config.Config, error)
	// Apply publishes a config to the node: files for the agent, hostname,
	// services. It is called again when a later config replaces the first.
	Apply func(ctx context.Context, a Applied) error
	// Fetched, if set, sees every bundle a source returned, valid or not
	// (the phone-home learns the node's name from meta_data.json even when
	// its weft.yaml is refused).
	Fetched func(b *config.Bundle)

	FetchTimeout       time.Duration // per network fetch; 0: 45 s
	RetryMin, RetryMax time.Duration // retry backoff; 0: 1 s and 30 s

	// State, owned by Run.
	last         map[string]string // step key -> last reported line, to keep retries quiet
	driveState   driveState
	drive        *config.Bundle // the first read of the drive
	declared     *config.Underlay
	usingDefault bool
	linksUp      bool
	current      *Applied
	fresh        bool // current came from a source during this boot, not the store
	pass         int
	netStep      string
	netSrc       source.Source
	broken       map[string]bool // steps.Key of the files reported broken
	// appliedNoAddr: current was applied while the underlay had no address
	// (the vRouter could not start); it is applied again once there is one.
	appliedNoAddr bool
}

type driveState int

const (
	driveNone   driveState = iota // no lookup or nothing labelled config-2
	driveFound                    // read
	driveBroken                   // found but unreadable: retried
)

// Run executes the bring-up and retries what failed until the node has a
// usable link, an underlay address the vRouter can bind (UnderlayAddr) and
// a valid config from a source, or ctx is done. It never
// panics on bad input; every outcome is a verdict.
func (b *Bringup) Run(ctx context.Context) error {
	b.setDefaults()
	b.drive = b.fetchDrive(ctx)
	b.chooseUnderlay()
	bo := backoff{min: b.RetryMin, max: b.RetryMax}
	for b.pass = 0; ; b.pass++ {
		if !b.linksUp {
			b.linksUp = b.bringUpLinks(ctx)
		}
		if !b.fresh && ctx.Err() == nil {
			b.fetchConfig(ctx)
		}
		ready := b.reportReady(ctx)
		if ready && b.fresh {
			return nil
		}
		if b.linksUp && b.fresh {
			// Only the underlay address is missing: a lease or a late
			// link brings it any moment, so look again soon.
			bo.Reset()
		}
		d := bo.Next()
		b.Log.Debug("bring-up incomplete, retrying", "in", d, "links_up", b.linksUp, "config", b.current != nil)
		if err := b.Clock.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

func (b *Bringup) setDefaults() {
	if b.Log == nil {
		b.Log = slog.New(slog.DiscardHandler)
	}
	if b.Clock == nil {
		b.Clock = realClock{}
	}
	if b.Decode == nil {
		b.Decode = (*config.Bundle).Config
	}
	if b.FetchTimeout == 0 {
		b.FetchTimeout = 45 * time.Second
	}
	if b.RetryMin == 0 {
		b.RetryMin = time.Second
	}
	if b.RetryMax == 0 {
		b.RetryMax = 30 * time.Second
	}
	b.last = map[string]string{}
	b.broken = map[string]bool{}
}

// report passes a verdict on, unless it is the same as the last one of that
// step and subject (steps.Key): a retry loop then prints only changes.
func (b *Bringup) report(name string, v steps.Verdict, detail string, attrs ...any) {
	key, line := steps.Key(name, attrs...), string(v)+"\x00"+detail
	for i := 0; i+1 < len(attrs); i += 2 {
		line += "\x00" + fmt.Sprint(attrs[i]) + "=" + fmt.Sprint(attrs[i+1])
	}
	if b.last[key] == line {
		return
	}
	b.last[key] = line
	b.Rec.Report(name, v, detail, attrs...)
}

// fetchDrive reads the config drive and reports what it found.
func (b *Bringup) fetchDrive(ctx context.Context) *config.Bundle {
	if b.Drive == nil {
		b.driveState = driveNone
		b.report(StepConfigDrive, steps.Skipped, "no config drive lookup on this platform")
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, b.FetchTimeout)
	bundle, err := b.Drive.Fetch(fctx)
	cancel()
	switch {
	case errors.Is(err, config.ErrNotFound):
		b.driveState = driveNone
		b.report(StepConfigDrive, steps.Skipped, "no config drive (no filesystem labelled config-2 or CONFIG-2)")
		return nil
	case err != nil:
		b.driveState = driveBroken
		b.report(StepConfigDrive, steps.Failed, fmt.Sprintf("%s: %v; check the drive's filesystem (iso9660 or vfat, label config-2) and that isofs/vfat loaded (step=modules)", b.Drive.Name(), err))
		return nil
	case bundle == nil:
		b.driveState = driveBroken
		b.report(StepConfigDrive, steps.Failed, b.Drive.Name()+": returned no data")
		return nil
	}
	b.driveState = driveFound
	if b.Fetched != nil {
		b.Fetched(bundle)
	}
	b.reportFetched(StepConfigDrive, bundle, sourceName(bundle, b.Drive))
	return bundle
}

// chooseUnderlay settles where the underlay comes from (step 2 above).
func (b *Bringup) chooseUnderlay() {
	if d := b.drive; d != nil && d.NetworkData != nil {
		u, problems := d.NetworkData.Underlay()
		u.Source = qualify(sourceName(d, b.Drive), u.Source, "network_data.json")
		b.reportProblems(u.Source, problems)
		b.declared = &u
		return
	}
	if d := b.drive; d != nil && d.UserData != nil {
		// An invalid weft.yaml is reported by the config step; here it only
		// means there is no declared underlay.
		if c, err := b.Decode(d); err == nil && c != nil {
			if u, ok := c.Underlay(); ok {
				u.Source = qualify(sourceName(d, b.Drive), u.Source, "weft.yaml underlay")
				b.declared = &u
				return
			}
		}
	}
	b.usingDefault = true
}

// reportProblems turns network_data.json problems into verdicts: a warning
// where the link is used with a default, else failed. Each gets its own
// status entry: the recorder keys entries by their "link" attribute, so a
// problem not tied to a link is keyed by its path instead.
func (b *Bringup) reportProblems(src string, problems []config.Problem) {
	for _, p := range problems {
		key := p.Link
		if key == "" {
			key = p.Path
		}
		detail := p.Error()
		if p.Err != nil {
			detail = p.Err.Error()
		}
		v := steps.Failed
		if p.Warning {
			v = steps.Warning
		}
		b.report(StepNetworkData, v, detail, "source", src, "path", p.Path, "link", key)
	}
}

// bringUpLinks applies the chosen underlay; true when a link is usable.
func (b *Bringup) bringUpLinks(ctx context.Context) bool {
	var u config.Underlay
	if b.declared != nil {
		u = *b.declared
	} else {
		// Recomputed on every try: a NIC whose driver loads late shows up.
		var err error
		u, err = b.DefaultUnderlay(b.Cmdline.BootIF)
		if err != nil {
			b.report(StepUnderlay, steps.Failed, fmt.Sprintf("no underlay to apply: %v; check that the NIC drivers loaded (step=modules) and BOOTIF= on the kernel command line", err))
			return false
		}
		if u.Source == "" {
			u.Source = "default (DHCP)"
		}
	}
	if b.declared != nil && len(u.Links) == 0 {
		return b.fallBack(ctx, u.Source+": declares no link Weft can use (see step=network-data)")
	}
	if b.PrepareUnderlay != nil {
		b.PrepareUnderlay(u)
	}
	if err := b.Underlay.Apply(ctx, u); err != nil {
		why := fmt.Sprintf("%s: no usable link: %v; check the NIC drivers (step=modules), cabling and switch ports, the DHCP server, and the MACs/names in the underlay", u.Source, err)
		if b.declared != nil {
			return b.fallBack(ctx, why)
		}
		b.report(StepUnderlay, steps.Failed, why)
		return false
	}
	b.report(StepUnderlay, steps.OK, "", "source", u.Source, "links", len(u.Links))
	return true
}

// networkSource is the source consulted after the drive: the weft.config=
// URL when given, else the metadata service.
func (b *Bringup) networkSource() (step string, src source.Source) {
	if b.netSrc == nil {
		if b.Cmdline.ConfigURL != "" {
			b.netStep, b.netSrc = StepURL, b.NewURL(b.Cmdline.ConfigURL)
		} else {
			b.netStep, b.netSrc = StepMetadata, b.NewMetadata()
		}
	}
	return b.netStep, b.netSrc
}

// fetchConfig is one pass over the config sources (step 3 and 4 above).
func (b *Bringup) fetchConfig(ctx context.Context) {
	var tried []string
	switch b.driveState {
	case driveNone:
		tried = append(tried, "no config drive")
	default:
		bundle := b.drive
		if b.pass > 0 || bundle == nil {
			// Read again: virtual media can be swapped through a BMC, and a
			// drive that failed to read may work now.
			bundle = b.fetchDrive(ctx)
		}
		if bundle == nil {
			tried = append(tried, "config drive unreadable")
			break
		}
		// The network source is reported skipped before the config's own
		// verdicts, in the order of a boot that fetches it.
		skipNet := func() {
			step, src := b.networkSource()
			b.report(step, steps.Skipped, "the config drive has weft.yaml", "source", src.Name())
		}
		decided, note := b.consider(ctx, bundle, sourceName(bundle, b.Drive), skipNet)
		if decided {
			return
		}
		tried = append(tried, note)
	}

	step, src := b.networkSource()
	switch {
	case !b.linksUp:
		// Never fetch before the links are up with their MTU (DESIGN.md).
		b.report(step, steps.Waiting, "not tried: no usable underlay link yet", "source", src.Name())
		tried = append(tried, src.Name()+" not tried: no usable underlay link")
	default:
		fctx, cancel := context.WithTimeout(ctx, b.FetchTimeout)
		bundle, err := src.Fetch(fctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, config.ErrNotFound):
			b.report(step, steps.Waiting, err.Error(), "source", src.Name())
			tried = append(tried, fmt.Sprintf("%s: not found: %v", src.Name(), err))
		case err != nil:
			b.report(step, steps.Waiting, err.Error(), "source", src.Name())
			tried = append(tried, fmt.Sprintf("%s unreachable: %v", src.Name(), err))
		case bundle == nil:
			b.report(step, steps.Waiting, "returned no data", "source", src.Name())
			tried = append(tried, src.Name()+": returned no data")
		default:
			if b.Fetched != nil {
				b.Fetched(bundle)
			}
			b.reportFetched(step, bundle, sourceName(bundle, src))
			b.applyNetworkData(ctx, bundle, sourceName(bundle, src))
			decided, note := b.consider(ctx, bundle, sourceName(bundle, src), nil)
			if decided {
				return
			}
			tried = append(tried, note)
		}
	}

	detail := strings.Join(tried, ", ")
	switch {
	case b.current != nil:
		detail += b.keeping()
	default:
		if lg := b.lastGood(); lg != nil {
			detail += "; using the last good config from " + lg.Source
			b.report(StepConfig, steps.Waiting, detail)
			b.apply(ctx, *lg)
			return
		}
	}
	b.report(StepConfig, steps.Waiting, detail)
}

// consider decodes a bundle's user_data. decided is true when it held a
// weft.yaml, valid (applied) or not (reported, last good kept); otherwise
// note says why this source gave no config. decided, when not nil, runs
// first when the bundle decides.
func (b *Bringup) consider(ctx context.Context, bundle *config.Bundle, source string, decided func()) (bool, string) {
	cfg, err := b.Decode(bundle)
	weft := err == nil && cfg != nil || err != nil && !errors.Is(err, config.ErrNotFound) && !errors.Is(err, config.ErrNotWeft)
	if weft && decided != nil {
		decided()
	}
	switch {
	case err == nil && cfg != nil:
		b.report(StepConfig, steps.OK, "", "source", source)
		b.applyConfigUnderlay(ctx, cfg, source)
		b.saveLastGood(bundle, cfg, source)
		a := Applied{Bundle: bundle, Config: cfg, Source: source}
		if b.apply(ctx, a) {
			b.fresh = true
		}
		return true, ""
	case err == nil || errors.Is(err, config.ErrNotFound):
		return false, source + ": no user_data"
	case errors.Is(err, config.ErrNotWeft):
		b.Log.Warn("user_data is not weft.yaml, ignored", "source", source, "err", err)
		return false, describe(source, err, config.ErrNotWeft) + ", ignored"
	}
	detail := describe(source, err, nil)
	var lg *Applied
	switch {
	case b.current != nil:
		detail += b.keeping()
	default:
		if lg = b.lastGood(); lg != nil {
			detail += "; using the last good config from " + lg.Source
		} else {
			detail += "; no last good config: waiting for a valid one"
		}
	}
	b.report(StepConfig, steps.Failed, detail, "source", source)
	if lg != nil {
		b.apply(ctx, *lg)
	}
	return true, ""
}

// keeping says which config stays in use, worded as when it was first
// chosen so that a retry with the same outcome prints nothing new.
func (b *Bringup) keeping() string {
	if b.current.LastGood {
		return "; using the last good config from " + b.current.Source
	}
	return "; keeping the config from " + b.current.Source
}

// apply hands a config to Apply and makes it current when that worked.
func (b *Bringup) apply(ctx context.Context, a Applied) bool {
	_, addrErr := b.underlayAddr(a.Config)
	if err := b.Apply(ctx, a); err != nil {
		b.report(StepConfig, steps.Failed, fmt.Sprintf("%s: valid, but applying it failed: %v", a.Source, err), "source", a.Source)
		return false
	}
	b.current = &a
	b.appliedNoAddr = addrErr != nil
	return true
}

// applyNetworkData replaces the DHCP default underlay by the network_data.json
// that came with the metadata, once it applies.
func (b *Bringup) applyNetworkData(ctx context.Context, bundle *config.Bundle, source string) {
	if !b.usingDefault || bundle.NetworkData == nil {
		return
	}
	u, problems := bundle.NetworkData.Underlay()
	u.Source = qualify(source, u.Source, "network_data.json")
	b.reportProblems(u.Source, problems)
	b.replaceDefault(ctx, u)
}

// applyConfigUnderlay replaces the DHCP default underlay by the underlay
// section of a weft.yaml fetched over the network (the fleet's MTU, bonds,
// VLANs), unless a network_data.json already did.
func (b *Bringup) applyConfigUnderlay(ctx context.Context, cfg *config.Config, source string) {
	if !b.usingDefault {
		return
	}
	if u, ok := cfg.Underlay(); ok {
		u.Source = qualify(source, u.Source, "weft.yaml underlay")
		b.replaceDefault(ctx, u)
	}
}

// replaceDefault applies a declared underlay in place of the DHCP default;
// if it has no usable link the default stays.
func (b *Bringup) replaceDefault(ctx context.Context, u config.Underlay) {
	if b.PrepareUnderlay != nil {
		b.PrepareUnderlay(u)
	}
	if err := b.Underlay.Apply(ctx, u); err != nil {
		b.report(StepUnderlay, steps.Failed, fmt.Sprintf("%s: no usable link: %v; keeping the DHCP default", u.Source, err), "source", u.Source)
		return
	}
	b.usingDefault = false
	b.declared = &u
	b.report(StepUnderlay, steps.OK, "", "source", u.Source, "links", len(u.Links))
}

// describe renders err for a verdict: prefixed by source unless it already
// names it, without the sentinel's text that errors.Is needed
// ("...: not weft.yaml" at the end).
func describe(source string, err error, sentinel error) string {
	s := err.Error()
	if sentinel != nil {
		s = strings.TrimSuffix(s, ": "+sentinel.Error())
	}
	if !strings.HasPrefix(s, source) {
		s = source + ": " + s
	}
	return s
}

// qualify names an underlay by the bundle it came from:
// "config-drive /dev/vda network_data.json".
func qualify(bundle, what, fallback string) string {
	if what == "" {
		what = fallback
	}
	if strings.HasPrefix(what, bundle) {
		return what
	}
	return bundle + " " + what
}

func sourceName(b *config.Bundle, s source.Source) string {
	if b != nil && b.Source != "" {
		return b.Source
	}
	return s.Name()
}
