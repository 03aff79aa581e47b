package cni

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// ConflistName is the file `weft cni install` writes in the CNI
// configuration directory.
const ConflistName = "10-weft.conflist"

// InstallOptions say where `weft cni install` puts the plugin and what
// its conflist says.
type InstallOptions struct {
	// Self is the running binary, copied as BinDir/weft.
	Self   string
	BinDir string // /opt/cni/bin
	// ConfDir gets ConflistName; /etc/cni/net.d.
	ConfDir string
	// Network is the conflist's default network; AgentSocket the agent's
	// local API.
	Network     string
	AgentSocket string
	// CNIVersion is the conflist's cniVersion, the version of the results
	// the runtime gets; "" is 1.1.0. containerd 1.6 and 1.7 read results
	// up to 1.0.0 only ("unsupported CNI result version 1.1.0").
	CNIVersion string
}

// Conflist is the network configuration list the install writes.
func Conflist(network, agentSocket, cniVersion string) ([]byte, error) {
	if cniVersion == "" {
		cniVersion = "1.1.0"
	}
	if !slices.Contains(Versions.SupportedVersions(), cniVersion) || !strings.HasPrefix(cniVersion, "1.") {
		return nil, fmt.Errorf("cniVersion %q: give 1.0.0 or 1.1.0", cniVersion)
	}
	plugin := map[string]any{"type": "weft", "network": network}
	if agentSocket != "" {
		plugin["agentSocket"] = agentSocket
	}
	b, err := json.MarshalIndent(map[string]any{"cniVersion": cniVersion, "name": "weft", "plugins": []any{plugin}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Install writes the plugin binary and then the conflist, each whole (a
// temporary file in the same directory, synced, renamed over the old
// one): a runtime never runs half a binary or reads half a conflist, and
// the conflist names a plugin that is there.
func Install(o InstallOptions) error {
	if o.Network == "" {
		return fmt.Errorf("network: required: the Weft network pods join by default (--network)")
	}
	src, err := os.Open(o.Self)
	if err != nil {
		return fmt.Errorf("plugin: %w", err)
	}
	defer src.Close()
	if err := writeAtomic(filepath.Join(o.BinDir, "weft"), 0o755, func(w io.Writer) error { _, err := io.Copy(w, src); return err }); err != nil {
		return fmt.Errorf("plugin: %w", err)
	}
	conf, err := Conflist(o.Network, o.AgentSocket, o.CNIVersion)
	if err != nil {
		return fmt.Errorf("conflist: %w", err)
	}
	if err := writeAtomic(filepath.Join(o.ConfDir, ConflistName), 0o644, func(w io.Writer) error { _, err := w.Write(conf); return err }); err != nil {
		return fmt.Errorf("conflist: %w", err)
	}
	return nil
}

// writeAtomic replaces path, making its directory (a fresh host may not
// have /opt/cni/bin or /etc/cni/net.d yet).
func writeAtomic(path string, mode os.FileMode, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, mode, fill)
}
