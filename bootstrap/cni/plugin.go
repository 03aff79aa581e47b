package cni

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/agent/agentapi"
)

// Plugin-specific error codes (CNI reserves 0-99 for the spec's).
const (
	// ErrAttached: ADD for a container interface that is attached already.
	ErrAttached uint = 100
	// ErrInterface: CHECK found the interface missing or different.
	ErrInterface uint = 101
	// ErrVRouter: the vRouter did not create or remove the interface.
	ErrVRouter uint = 102
)

// Funcs are the plugin's commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
}

// Versions are the spec versions the plugin speaks.
var Versions = version.All

// parse reads the configuration and CNI_ARGS into spec errors.
func parse(args *skel.CmdArgs) (*Conf, Args, error) {
	c, err := ParseConf(args.StdinData)
	if err != nil {
		return nil, Args{}, types.NewError(types.ErrDecodingFailure, err.Error(),
			`give the plugin a JSON object with "cniVersion" (and "network", "agentSocket"), see weft cni install`)
	}
	a, err := ParseArgs(args.Args)
	if err != nil {
		return nil, Args{}, types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "CNI_ARGS is KEY=VALUE pairs separated by ';'")
	}
	return c, a, nil
}

// agentError turns an agent call's failure into a spec error.
func agentError(c *Conf, what string, err error) error {
	var se *agentapi.StatusError
	if !errors.As(err, &se) {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: the Weft agent does not answer on %s: %v", what, c.AgentSocket, err),
			"start the agent (weft agent, or its systemd unit) or set agentSocket in the conflist to where it listens")
	}
	switch se.Code {
	case http.StatusBadRequest:
		return types.NewError(types.ErrInvalidNetworkConfig, what+": "+se.Msg,
			"fix the conflist's network or CNI_ARGS "+ArgNetwork+", or the network's subnets in weft.yaml")
	case http.StatusConflict:
		return types.NewError(ErrAttached, what+": "+se.Msg, "the runtime must DEL an attachment before it is added again")
	case http.StatusNotFound:
		return types.NewError(ErrInterface, what+": "+se.Msg, "ADD the container's interface again")
	case http.StatusServiceUnavailable:
		return types.NewError(ErrVRouter, what+": "+se.Msg, "weft ctl status shows the vRouter's refusals; check that weft vrouter runs")
	}
	return types.NewError(types.ErrInternal, what+": "+se.Msg, "the agent's log says more")
}

func cmdAdd(args *skel.CmdArgs) error {
	c, a, err := parse(args)
	if err != nil {
		return err
	}
	nw := network(c, a)
	// A pod's network may be the agent's to choose (join.kubernetes).
	if nw == "" && a.PodName == "" {
		return types.NewError(types.ErrInvalidNetworkConfig, "no Weft network for the pod",
			`set "network" in the conflist (weft cni install --network NAME) or CNI_ARGS `+ArgNetwork+"=NAME")
	}
	att, err := agentapi.NewClient(c.AgentSocket).Attach(agentapi.AttachRequest{ContainerID: args.ContainerID, IfName: args.IfName,
		Netns: args.Netns, Network: nw, PodNamespace: a.PodNamespace, PodName: a.PodName})
	if err != nil {
		return agentError(c, "ADD", err)
	}
	link, err := readLink(args.Netns, args.IfName)
	if err != nil {
		return types.NewError(ErrInterface, fmt.Sprintf("ADD: the agent attached %s but the plugin cannot read it: %v", args.IfName, err), "")
	}
	res, err := result(c, args, att, link)
	if err != nil {
		return types.NewError(types.ErrInternal, "ADD: "+err.Error(), "")
	}
	return types.PrintResult(res, c.CNIVersion)
}

// result is ADD's answer: the interface in the sandbox, its addresses
// with their gateways, a default route per family, the conflist's DNS.
func result(c *Conf, args *skel.CmdArgs, att agentapi.Attachment, link linkInfo) (*types100.Result, error) {
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, DNS: c.DNS}
	res.Interfaces = []*types100.Interface{{Name: args.IfName, Mac: link.MAC.String(), Mtu: link.MTU, Sandbox: args.Netns}}
	for i, s := range att.Addresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("the agent's address %q: %w", s, err)
		}
		ipc := &types100.IPConfig{Interface: types100.Int(0), Address: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		dst := "0.0.0.0/0"
		if p.Addr().Is6() {
			dst = "::/0"
		}
		_, def, _ := net.ParseCIDR(dst)
		route := &types.Route{Dst: *def}
		if i < len(att.Gateways) {
			gw, err := netip.ParseAddr(att.Gateways[i])
			if err != nil {
				return nil, fmt.Errorf("the agent's gateway %q: %w", att.Gateways[i], err)
			}
			ipc.Gateway = gw.AsSlice()
			route.GW = gw.AsSlice()
		}
		res.IPs = append(res.IPs, ipc)
		res.Routes = append(res.Routes, route)
	}
	return res, nil
}

func cmdDel(args *skel.CmdArgs) error {
	c, _, err := parse(args)
	if err != nil {
		return err
	}
	if err := agentapi.NewClient(c.AgentSocket).Detach(agentapi.AttachmentKey{ContainerID: args.ContainerID, IfName: args.IfName}); err != nil {
		return agentError(c, "DEL", err)
	}
	return nil
}

// cmdCheck: the agent has the attachment, the vRouter its port, and the
// interface is in the namespace with the attachment's addresses (and, if
// the runtime passed the ADD's result, with that MAC).
func cmdCheck(args *skel.CmdArgs) error {
	c, _, err := parse(args)
	if err != nil {
		return err
	}
	att, err := agentapi.NewClient(c.AgentSocket).Attachment(agentapi.AttachmentKey{ContainerID: args.ContainerID, IfName: args.IfName})
	if err != nil {
		return agentError(c, "CHECK", err)
	}
	if !att.Installed {
		return types.NewError(ErrInterface, fmt.Sprintf("CHECK: the vRouter has no port for %s", att.Endpoint),
			"weft ctl status shows the vRouter's refusals")
	}
	link, err := readLink(args.Netns, args.IfName)
	if err != nil {
		return types.NewError(ErrInterface, fmt.Sprintf("CHECK: %v", err), "DEL and ADD the container's interface again")
	}
	for _, s := range att.Addresses {
		p, err := netip.ParsePrefix(s)
		if err != nil || !slices.Contains(link.Addresses, p) {
			return types.NewError(ErrInterface, fmt.Sprintf("CHECK: %s in %s lacks its address %s", args.IfName, args.Netns, s),
				"DEL and ADD the container's interface again")
		}
	}
	if prev, err := prevResult(c); err == nil && prev != nil {
		for _, i := range prev.Interfaces {
			if i.Name == args.IfName && i.Mac != "" && i.Mac != link.MAC.String() {
				return types.NewError(ErrInterface, fmt.Sprintf("CHECK: %s has MAC %s, the ADD's result said %s", args.IfName, link.MAC, i.Mac), "")
			}
		}
	}
	return nil
}

// prevResult is the ADD's result the runtime passed to CHECK, if any.
func prevResult(c *Conf) (*types100.Result, error) {
	if c.RawPrevResult == nil {
		return nil, nil
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(c.PrevResult)
}

func cmdGC(args *skel.CmdArgs) error {
	c, _, err := parse(args)
	if err != nil {
		return err
	}
	valid := []agentapi.AttachmentKey{}
	for _, v := range c.ValidAttachments {
		valid = append(valid, agentapi.AttachmentKey{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	if _, err := agentapi.NewClient(c.AgentSocket).GC(valid); err != nil {
		return agentError(c, "GC", err)
	}
	return nil
}

// cmdStatus: ready when the agent answers and it has its vRouter.
func cmdStatus(args *skel.CmdArgs) error {
	c, _, err := parse(args)
	if err != nil {
		return err
	}
	st, err := agentapi.NewClient(c.AgentSocket).Status()
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("STATUS: the Weft agent does not answer on %s: %v", c.AgentSocket, err),
			"start the agent (weft agent, or its systemd unit); pods cannot be added until it answers")
	}
	if !st.VRouterReady {
		return types.NewError(types.ErrPluginNotAvailable, "STATUS: the agent has no vRouter: "+st.VRouterError,
			"start the vRouter (weft vrouter, or its systemd unit)")
	}
	return nil
}
