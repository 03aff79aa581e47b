package pid1

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/steps"
)

// reportFetched reports a bundle a source returned: the source's verdict,
// then one verdict per file it could not use, naming the file, the error
// and what the node does without it. A file reported broken earlier that
// is fine now gets its ok.
func (b *Bringup) reportFetched(step string, bundle *config.Bundle, src string) {
	attrs := []any{"source", src,
		"meta_data", bundle.MetaData != nil, "network_data", bundle.NetworkData != nil,
		"user_data", config.ClassifyUserData(bundle.UserData).String()}
	var names []string
	for _, f := range bundle.Broken {
		names = append(names, f.File)
	}
	if len(names) > 0 {
		attrs = append(attrs, "broken", strings.Join(names, ","))
	}
	b.report(step, steps.OK, "", attrs...)
	now := map[string]bool{}
	for _, f := range bundle.Broken {
		key := steps.Key(step, "file", f.File)
		now[key], b.broken[key] = true, true
		b.report(step, steps.Failed, fmt.Sprintf("%s: %v; %s", src, f, withoutFile(f.File)), "source", src, "file", f.File)
	}
	for _, name := range []string{"meta_data.json", "network_data.json", "user_data"} {
		if key := steps.Key(step, "file", name); b.broken[key] && !now[key] {
			delete(b.broken, key)
			b.report(step, steps.OK, "readable again", "source", src, "file", name)
		}
	}
}

// withoutFile says what the node does without a file of the OpenStack layout.
func withoutFile(name string) string {
	switch name {
	case "network_data.json":
		return "its links are not used: the underlay comes from weft.yaml's underlay section, else DHCP on every NIC"
	case "meta_data.json":
		return "not used: the hostname comes from weft.yaml or the NIC's MAC"
	}
	return "not used: no weft.yaml from this source"
}

// underlayAddr is the address the vRouter would bind now, for cfg.
func (b *Bringup) underlayAddr(cfg *config.Config) (netip.Addr, error) {
	if b.UnderlayAddr == nil {
		return netip.Addr{}, nil
	}
	return b.UnderlayAddr(cfg)
}

// reportReady reports ready once there is a usable link with an underlay
// address the vRouter can bind and a config, and else what is missing. A
// config applied while the address was missing (the vRouter could not
// start) is applied again once it is there. It returns whether the node is
// ready.
func (b *Bringup) reportReady(ctx context.Context) bool {
	var missing []string
	var addr netip.Addr
	if !b.linksUp {
		missing = append(missing, "no usable underlay link (step=underlay)")
	} else {
		var cfg *config.Config
		if b.current != nil {
			cfg = b.current.Config
		}
		var err error
		if addr, err = b.underlayAddr(cfg); err != nil {
			missing = append(missing, fmt.Sprintf("no underlay address the vRouter can bind (%v): the links are up but none has an address; check step=dhcp for a lease, or the addresses of the links (step=link, step=network-data)", err))
		}
	}
	if b.current == nil {
		missing = append(missing, "no valid config (step=config)")
	}
	if len(missing) > 0 {
		b.report(StepReady, steps.Waiting, strings.Join(missing, "; "))
		return false
	}
	if b.appliedNoAddr {
		b.Log.Info("the underlay has an address now: applying the config again to start the services", "address", addr)
		if !b.apply(ctx, *b.current) {
			b.report(StepReady, steps.Waiting, "the config could not be applied again with the underlay address (step=config)")
			return false
		}
	}
	attrs := []any{"config", b.current.Source}
	if addr.IsValid() {
		attrs = append(attrs, "underlay", addr.String())
	}
	b.report(StepReady, steps.OK, "", attrs...)
	return true
}
