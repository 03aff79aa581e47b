package main

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/bootstrap/cni"
)

func init() {
	register("cni", "the CNI plugin (what a runtime runs as /opt/cni/bin/weft); cni install writes it and its conflist", runCNI)
}

func runCNI(args []string) error {
	if len(args) > 0 && args[0] == "install" {
		return runCNIInstall(args[1:])
	}
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q: the plugin reads CNI_COMMAND and stdin; did you mean weft cni install?", args[0])
	}
	// skel prints a spec-shaped error on stdout and exits 1 itself.
	skel.PluginMainFuncs(cni.Funcs(), cni.Versions, "Weft CNI plugin "+version)
	return nil
}

func runCNIInstall(args []string) error {
	fs := newFlags("cni install", "cni install --network NAME [flags]")
	o := cni.InstallOptions{}
	fs.StringVar(&o.BinDir, "bin-dir", "/opt/cni/bin", "where the runtime looks for CNI plugins")
	fs.StringVar(&o.ConfDir, "conf-dir", "/etc/cni/net.d", "where the runtime reads network configurations ("+cni.ConflistName+" is written there)")
	fs.StringVar(&o.Network, "network", "", "the Weft network pods join unless CNI_ARGS "+cni.ArgNetwork+" names another")
	fs.StringVar(&o.AgentSocket, "agent-socket", agentapi.DefaultSocket, "the agent's local API")
	fs.StringVar(&o.CNIVersion, "cni-version", "1.1.0", "the conflist's cniVersion: 1.0.0 for runtimes that read no 1.1.0 result (containerd 1.6 and 1.7)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("the weft binary: %w", err)
	}
	o.Self = self
	if err := cni.Install(o); err != nil {
		return err
	}
	fmt.Printf("installed %s/weft and %s/%s (network %s)\n", o.BinDir, o.ConfDir, cni.ConflistName, o.Network)
	return nil
}
