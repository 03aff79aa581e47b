package pid1

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/init/kmod"
	"github.com/weftnet/weft/init/steps"
)

// eagerModules are loaded at boot besides what coldplug finds: filesystems
// for the config drive (a filesystem has no modalias), with the code page
// and character sets vfat needs to mount at all (the kernel asks modprobe
// for them, and there is none: "FAT-fs: codepage cp437 not found", EINVAL;
// Debian's defaults are code page 437 and iocharset ascii),
// and tun for the vRouter, which cannot load modules itself. bonding and 8021q are loaded on
// demand when an underlay declares a bond or VLAN (prepareUnderlay);
// kmod.DefaultParams gives bonding max_bonds=0, so no stray bond0 appears.
var eagerModules = []string{"isofs", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8", "tun"}

// fastPathModules are what the vRouter's fast path needs of a kernel
// that has them as modules (Debian's): tc's clsact qdisc (sch_ingress)
// and BPF classifier for kernels without TCX, and veth for endpoints.
// Loaded at boot with weft.fastpath, as the vRouter cannot load them.
var fastPathModules = []string{"sch_ingress", "cls_bpf", "veth"}

// modules loads the drivers of the devices present (by modalias), then
// keeps loading for devices that appear later (hotplugged or slow NICs).
func (n *node) modules() {
	n.kernel = kernelRelease()
	dir := "/lib/modules/" + n.kernel
	l, err := kmod.NewLoader(dir, n.log)
	if err != nil {
		n.rec.Report(StepModules, steps.Failed, fmt.Sprintf("%s: %v; without drivers no NIC or config drive appears: check that the image was built for kernel %s", dir, err, n.kernel), "kernel", n.kernel)
		return
	}
	n.modMu.Lock()
	n.loader = l
	n.modMu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
	loaded, err := l.Coldplug(ctx)
	cancel()
	n.modMu.Lock()
	n.modLoaded += len(loaded)
	if err != nil {
		n.modFailures = append(n.modFailures, "coldplug: "+err.Error())
	}
	n.modMu.Unlock()
	for _, m := range eagerModules {
		n.loadModule(m)
	}
	if n.fastPath {
		for _, m := range fastPathModules {
			n.loadModule(m)
		}
	}
	// Then the uevent listener for devices that appear later. Watch rescans
	// /sys once it listens, so a device created between the two is not
	// missed; started after coldplug so that coldplug, which rescans until
	// a pass loads nothing (virtio_pci creates the virtio-net device), has
	// the NIC drivers loaded before the underlay looks for NICs.
	n.keeper.once("modules watch", func() {
		err := l.Watch(n.ctx, func(m string) {
			n.modHot.Add(1)
			n.log.Info("module loaded for a new device", "module", m)
		})
		if err != nil && n.ctx.Err() == nil {
			n.rec.Report("modules-hotplug", steps.Failed, fmt.Sprintf("%v; devices that appear from now on get no driver", err))
		}
	})
	n.reportModules()
}

func (n *node) reportModules() {
	n.modMu.Lock()
	defer n.modMu.Unlock()
	attrs := []any{"kernel", n.kernel, "loaded", n.modLoaded, "hotplug", n.modHot.Load()}
	if len(n.modFailures) > 0 {
		n.rec.Report(StepModules, steps.Failed, strings.Join(n.modFailures, "; "), attrs...)
		return
	}
	n.rec.Report(StepModules, steps.OK, "", attrs...)
}

// loadModule loads one module by name unless it is already there (loaded
// or built in); newly reports whether it loaded it now.
func (n *node) loadModule(name string) (newly bool) {
	if moduleLoaded(name) {
		return false
	}
	n.modMu.Lock()
	defer n.modMu.Unlock()
	if n.loader == nil {
		n.modFailures = append(n.modFailures, name+": no module loader")
		return false
	}
	if err := n.loader.Load(name); err != nil {
		n.modFailures = append(n.modFailures, fmt.Sprintf("%s: %v", name, err))
		return false
	}
	n.modLoaded++
	return true
}

// moduleLoaded reports whether /sys/module knows name (loaded, or built in
// with parameters).
func moduleLoaded(name string) bool {
	_, err := os.Stat("/sys/module/" + strings.ReplaceAll(name, "-", "_"))
	return err == nil
}

// prepareUnderlay loads bonding and 8021q when the underlay declares bonds
// or VLANs.
func (n *node) prepareUnderlay(u config.Underlay) {
	need := map[string]bool{}
	for _, l := range u.Links {
		switch l.Kind {
		case config.LinkBond:
			need["bonding"] = true
		case config.LinkVLAN:
			need["8021q"] = true
		}
	}
	changed := false
	for _, m := range []string{"bonding", "8021q"} {
		if need[m] {
			n.modMu.Lock()
			before := len(n.modFailures)
			n.modMu.Unlock()
			newly := n.loadModule(m)
			n.modMu.Lock()
			changed = changed || newly || len(n.modFailures) != before
			n.modMu.Unlock()
		}
	}
	if changed {
		n.reportModules()
	}
}
