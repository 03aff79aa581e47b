package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
)

// CNI's attachments: one endpoint per container interface (container ID
// + interface name), its TAP created by the vRouter in the pod's
// namespace under the name CNI asked for, its addresses from the IPAM
// (ipam.go). Attach and Detach return once the vRouter has done it.

// portWait bounds how long an attach or detach waits for the vRouter.
const portWait = 10 * time.Second

var containerIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]*$`)

func checkKey(k agentapi.AttachmentKey) error {
	if !containerIDRe.MatchString(k.ContainerID) {
		return fmt.Errorf("containerID: %q: want letters, digits, '_', '.' or '-' (CNI_CONTAINERID)", k.ContainerID)
	}
	if k.IfName == "" || len(k.IfName) > 15 || k.IfName == "." || k.IfName == ".." ||
		strings.ContainsAny(k.IfName, "/: \t\n") {
		return fmt.Errorf("ifName: %q is not an interface name (at most 15 bytes, no '/', ':' or spaces; CNI_IFNAME)", k.IfName)
	}
	return nil
}

// Attach is CNI's ADD.
func (a *Agent) Attach(ctx context.Context, req agentapi.AttachRequest) (agentapi.Attachment, error) {
	k := agentapi.AttachmentKey{ContainerID: req.ContainerID, IfName: req.IfName}
	if err := checkKey(k); err != nil {
		return agentapi.Attachment{}, badRequest(err)
	}
	if !strings.HasPrefix(req.Netns, "/") {
		return agentapi.Attachment{}, badRequest(fmt.Errorf("netns: %q: want the namespace's path (CNI_NETNS)", req.Netns))
	}
	if _, err := os.Stat(req.Netns); err != nil {
		return agentapi.Attachment{}, badRequest(fmt.Errorf("netns: %w", err))
	}
	if err := a.podNetwork(ctx, &req); err != nil {
		return agentapi.Attachment{}, err
	}
	cfg, eps := a.decl.snapshot()
	if req.Network == "" {
		return agentapi.Attachment{}, badRequest(errors.New("network: none named: set the conflist's network, or (join.kubernetes) " +
			"the pod's annotation or its namespace's label weft.net/network, or join.kubernetes.defaultNetwork"))
	}
	n := cfg.Network(req.Network)
	if n == nil {
		var names []string
		for _, nw := range cfg.Networks {
			names = append(names, nw.Name)
		}
		return agentapi.Attachment{}, badRequest(fmt.Errorf("network: no network is called %q in weft.yaml (there are: %s)",
			req.Network, strings.Join(names, ", ")))
	}
	inUse := a.portAddresses()
	for _, ep := range eps {
		for _, p := range ep.addresses() {
			inUse[p.Addr()] = true
		}
	}
	rec, err := a.att.assign(attachment{ContainerID: req.ContainerID, IfName: req.IfName, Netns: req.Netns, Network: req.Network,
		PodNamespace: req.PodNamespace, PodName: req.PodName}, n, inUse)
	switch {
	case errors.Is(err, errExists):
		return agentapi.Attachment{}, &httpError{http.StatusConflict,
			fmt.Errorf("container %s interface %s is attached already: DEL it first", req.ContainerID, req.IfName)}
	case err != nil:
		return agentapi.Attachment{}, badRequest(err)
	}
	ep := rec.endpoint()
	if _, err := a.decl.add(ep); err != nil {
		a.att.release(ep.Name)
		return agentapi.Attachment{}, badRequest(err)
	}
	since := a.reconciles()
	a.schedule()
	if err := a.waitPort(ctx, ep.Name, true, since); err != nil {
		a.decl.remove(ep.Name)
		a.att.release(ep.Name)
		a.schedule()
		return agentapi.Attachment{}, &httpError{http.StatusServiceUnavailable, err}
	}
	a.log.Info("attached", "endpoint", ep.Name, "network", ep.Network, "addresses", fmt.Sprint(rec.Addresses),
		"pod", req.PodNamespace+"/"+req.PodName)
	return a.attachmentDoc(rec), nil
}

// podNetwork sets req's network from the pod's (PodNetworks), when the
// request names a pod and the node watches them; the request's own
// network stays when the pod names none.
func (a *Agent) podNetwork(ctx context.Context, req *agentapi.AttachRequest) error {
	if a.opt.PodNetworks == nil || req.PodName == "" {
		return nil
	}
	start := time.Now()
	nw, err := a.opt.PodNetworks.PodNetwork(ctx, req.PodNamespace, req.PodName)
	if err != nil {
		return &httpError{http.StatusServiceUnavailable, fmt.Errorf("the pod's network: %w", err)}
	}
	if nw != "" {
		req.Network = nw
	}
	a.log.Info("pod network resolved", "pod", req.PodNamespace+"/"+req.PodName, "network", req.Network,
		"took", time.Since(start).Round(time.Microsecond))
	return nil
}

// Attachment is one attachment, for CNI's CHECK.
func (a *Agent) Attachment(k agentapi.AttachmentKey) (agentapi.Attachment, error) {
	rec, ok := a.att.get(attachmentName(k.ContainerID, k.IfName))
	if !ok {
		return agentapi.Attachment{}, &httpError{http.StatusNotFound,
			fmt.Errorf("container %s interface %s: not attached", k.ContainerID, k.IfName)}
	}
	return a.attachmentDoc(rec), nil
}

// Attachments lists them.
func (a *Agent) Attachments() []agentapi.Attachment {
	out := []agentapi.Attachment{}
	for _, rec := range a.att.list() {
		out = append(out, a.attachmentDoc(rec))
	}
	return out
}

// Detach is CNI's DEL: an unknown attachment is not an error.
func (a *Agent) Detach(ctx context.Context, k agentapi.AttachmentKey) error {
	if err := checkKey(k); err != nil {
		return badRequest(err)
	}
	name := attachmentName(k.ContainerID, k.IfName)
	_, err := a.att.release(name)
	if a.decl.remove(name) {
		since := a.reconciles()
		a.schedule()
		if !a.rib.isSynced() {
			// A restarted agent deletes nothing in the vRouter until BGP
			// has relearnt its routes; the port goes then, and its
			// addresses stay in use until it has (Attach counts the
			// vRouter's ports).
			a.log.Info("detached; the port is removed once BGP has synced", "endpoint", name)
			return err
		}
		if werr := a.waitPort(ctx, name, false, since); werr != nil {
			return &httpError{http.StatusServiceUnavailable, werr}
		}
		a.log.Info("detached", "endpoint", name)
	}
	return err
}

// GC is CNI's GC: every attachment not in valid is detached.
func (a *Agent) GC(ctx context.Context, valid []agentapi.AttachmentKey) (agentapi.GCReply, error) {
	keep := map[string]bool{}
	for _, k := range valid {
		keep[attachmentName(k.ContainerID, k.IfName)] = true
	}
	names := map[string]bool{}
	for _, rec := range a.att.list() {
		names[rec.name()] = true
	}
	eps, _ := a.decl.endpoints()
	for _, ep := range eps {
		if _, _, ok := parseAttachmentName(ep.Name); ok {
			names[ep.Name] = true
		}
	}
	reply := agentapi.GCReply{Removed: []agentapi.AttachmentKey{}}
	for name := range names {
		if keep[name] {
			continue
		}
		cid, ifn, _ := parseAttachmentName(name)
		k := agentapi.AttachmentKey{ContainerID: cid, IfName: ifn}
		if err := a.Detach(ctx, k); err != nil {
			return reply, err
		}
		reply.Removed = append(reply.Removed, k)
	}
	return reply, nil
}

func (a *Agent) attachmentDoc(rec attachment) agentapi.Attachment {
	d := agentapi.Attachment{ContainerID: rec.ContainerID, IfName: rec.IfName, Netns: rec.Netns, Network: rec.Network,
		PodNamespace: rec.PodNamespace, PodName: rec.PodName, Endpoint: rec.name(), Addresses: []string{}, Gateways: []string{}}
	n := a.decl.config().Network(rec.Network)
	for _, p := range rec.Addresses {
		d.Addresses = append(d.Addresses, p.String())
		if n != nil {
			if gw, ok := endpointGateway(n, p.Addr()); ok {
				d.Gateways = append(d.Gateways, gw.String())
			}
		}
	}
	if n == nil {
		d.Gateways = nil
	}
	_, d.Installed, _ = a.portState(rec.name())
	return d
}

// portAddresses are the addresses of the vRouter's ports: a detached
// endpoint's stay in use until its port is gone.
func (a *Agent) portAddresses() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	a.r.view(func(fw *forwarding) {
		if fw.installed == nil {
			return
		}
		for _, p := range fw.installed.Ports {
			for _, s := range p.GetAddresses() {
				if pr, err := netip.ParsePrefix(s); err == nil {
					out[pr.Addr()] = true
				}
			}
		}
	})
	return out
}

// reconciles counts the reconciles done so far.
func (a *Agent) reconciles() (n uint64) {
	a.r.view(func(fw *forwarding) { n = fw.stats.Count })
	return n
}

// portState says whether the vRouter has the endpoint's port, the error
// of an op of it the vRouter refused, and how many reconciles were done
// (0 while one is sending its ops: the mirror is not yet the vRouter's).
func (a *Agent) portState(name string) (refused string, present bool, count uint64) {
	a.r.view(func(fw *forwarding) {
		if !fw.applying {
			count = fw.stats.Count
		}
		for _, rf := range fw.refused {
			if rf.endpoint == name {
				refused = rf.err
			}
		}
		if fw.installed == nil {
			return
		}
		for _, p := range fw.installed.Ports {
			if p.GetName() == name {
				present = true
			}
		}
	})
	return refused, present, count
}

// waitPort waits until the vRouter has (present) or no longer has the
// endpoint's port; a refusal seen by a reconcile after since (not one
// left from an earlier attempt) ends an attach at once with its reason.
func (a *Agent) waitPort(ctx context.Context, name string, present bool, since uint64) error {
	ctx, cancel := context.WithTimeout(ctx, portWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		refused, has, count := a.portState(name)
		switch {
		case count <= since:
			// no reconcile has taken the change yet, or one is applying it
		case has == present:
			return nil
		case present && refused != "":
			return fmt.Errorf("the vRouter refused the interface: %s", refused)
		}
		select {
		case <-ctx.Done():
			what := "create"
			if !present {
				what = "remove"
			}
			return fmt.Errorf("the vRouter did not %s the interface within %v (weft ctl status shows why; is `weft vrouter` running?)", what, portWait)
		case <-tick.C:
		}
	}
}
