package pid1

import (
	"context"
	"fmt"

	"github.com/weftnet/weft/init/steps"
)

// fallBack runs DHCP on the NICs present when the declared underlay left
// no usable link (why says how): the metadata-service path keeps its DHCP
// default in that case, and a wrong or truncated description must not
// leave the node offline either. The verdict is a warning while the
// fallback holds, naming why.
func (b *Bringup) fallBack(ctx context.Context, why string) bool {
	u, err := b.DefaultUnderlay(b.Cmdline.BootIF)
	if err != nil {
		b.report(StepUnderlay, steps.Failed, fmt.Sprintf("%s; no DHCP fallback either: %v", why, err))
		return false
	}
	if u.Source == "" {
		u.Source = "default (DHCP)"
	}
	b.report(StepUnderlay, steps.Failed, why+"; falling back to DHCP on the NICs present")
	if b.PrepareUnderlay != nil {
		b.PrepareUnderlay(u)
	}
	if err := b.Underlay.Apply(ctx, u); err != nil {
		b.report(StepUnderlay, steps.Failed, fmt.Sprintf("%s; the DHCP fallback has no usable link either: %v", why, err), "source", u.Source)
		return false
	}
	// A network_data.json or weft.yaml underlay from the network may
	// replace the fallback, as it replaces the DHCP default.
	b.usingDefault = true
	b.report(StepUnderlay, steps.Warning, "DHCP fallback: "+why, "source", u.Source, "links", len(u.Links))
	return true
}
