package cni

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/agent/agentapi"
)

// Conf is the plugin's entry of a conflist:
//
//	{"type": "weft", "network": "leonardo", "agentSocket": "/run/weft/agent.sock"}
type Conf struct {
	types.PluginConf
	// Network is the Weft network a pod joins when nothing names another.
	Network string `json:"network,omitempty"`
	// AgentSocket is the agent's local API; "" = /run/weft/agent.sock.
	AgentSocket string `json:"agentSocket,omitempty"`
}

// ParseConf decodes and checks the plugin's configuration (CNI's stdin).
func ParseConf(b []byte) (*Conf, error) {
	var c Conf
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("network configuration: %w", err)
	}
	if c.CNIVersion == "" {
		return nil, fmt.Errorf("network configuration: cniVersion: required")
	}
	if c.AgentSocket == "" {
		c.AgentSocket = agentapi.DefaultSocket
	}
	if !filepath.IsAbs(c.AgentSocket) {
		return nil, fmt.Errorf("network configuration: agentSocket: %q is not an absolute path", c.AgentSocket)
	}
	return &c, nil
}

// Args are the CNI_ARGS the plugin reads: Kubernetes' pod identity and
// the explicit network. Other keys are ignored (runtimes pass more, with
// IgnoreUnknown).
type Args struct {
	PodNamespace, PodName string
	Network               string // weft.network
}

// ArgNetwork is the CNI_ARGS key that names the pod's Weft network.
const ArgNetwork = "weft.network"

// ParseArgs decodes CNI_ARGS ("K=V;K=V").
func ParseArgs(s string) (Args, error) {
	var a Args
	if s == "" {
		return a, nil
	}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return a, fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		case "K8S_POD_NAME":
			a.PodName = v
		case ArgNetwork:
			a.Network = v
		}
	}
	return a, nil
}

// network is the pod's Weft network (see the package's doc for the order).
func network(c *Conf, a Args) string {
	if a.Network != "" {
		return a.Network
	}
	return c.Network
}
