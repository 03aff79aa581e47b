package pid1

import (
	"github.com/weftnet/weft/bootstrap/ironic"
	"github.com/weftnet/weft/init/steps"
)

// StepIronic is reported when Ironic's agent contract cannot run.
const StepIronic = "ironic"

// runIronic speaks Ironic's agent contract when the node was booted with
// ipa-api-url= (Ironic's ramdisk and custom-agent deploy interfaces): the
// lookup, heartbeats, and the agent API on port 9999 of the underlay
// address, whose power_off and run_image PID 1 carries out with its own
// orderly shutdown, ending in reboot(2).
func (n *node) runIronic(apiURL string) {
	a := &ironic.Agent{
		APIURL:  apiURL,
		MACs:    nicMACs,
		Power:   func(reboot bool) error { n.requestShutdown(reboot, "ironic"); return nil },
		Version: "weft " + n.opts.Version,
		Log:     n.log,
	}
	if err := a.Run(n.ctx); err != nil && n.ctx.Err() == nil {
		n.rec.Report(StepIronic, steps.Failed, err.Error())
	}
}
