package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"time"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/agent/bgp"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/client"
	"github.com/weftnet/weft/vrouter/packet"
)

// The agent's local API: JSON over HTTP on a unix socket (mode 0600), for
// `weft ctl` and for CNI. Its documents and client are package agentapi.

// control is what the local API changes in the agent.
type control interface {
	AddEndpoint(LocalEndpoint) error
	RemoveEndpoint(name string) error
	Reload() error
	Attach(context.Context, agentapi.AttachRequest) (agentapi.Attachment, error)
	Attachment(agentapi.AttachmentKey) (agentapi.Attachment, error)
	Attachments() []agentapi.Attachment
	Detach(context.Context, agentapi.AttachmentKey) error
	GC(context.Context, []agentapi.AttachmentKey) (agentapi.GCReply, error)
}

// apiServer serves the local API: it reads the agent's parts and asks
// the agent (control) for changes.
type apiServer struct {
	version, hostname, configPath, lastGood string

	ctl  control
	decl *declared
	rib  *rib
	r    *reconciler
	att  *attachments
	vr   *client.Client
	// probes holds a token per running probe (agentapi.MaxRunningProbes).
	probes chan struct{}
}

// maxProbeBody is the largest probe request the API reads.
const maxProbeBody = 64 << 10

func newAPIServer(a *Agent) *apiServer {
	return &apiServer{version: a.opt.Version, hostname: a.opt.Hostname, configPath: a.opt.ConfigPath, lastGood: a.opt.LastGood,
		ctl: a, decl: a.decl, rib: a.rib, r: a.r, att: a.att, vr: a.r.vr, probes: make(chan struct{}, agentapi.MaxRunningProbes)}
}

// serve listens on socket and serves until the returned server is closed.
func (s *apiServer) serve(socket string) (*http.Server, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, fmt.Errorf("api socket directory: %w", err)
	}
	os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathStatus, handle(func(r *http.Request) (any, error) { return s.status(r.Context()), nil }))
	mux.HandleFunc("GET "+agentapi.PathPeers, handle(func(r *http.Request) (any, error) { return s.peers(), nil }))
	mux.HandleFunc("GET "+agentapi.PathRoutes, handle(func(r *http.Request) (any, error) { return s.routes(r.URL.Query().Get("network")), nil }))
	mux.HandleFunc("GET "+agentapi.PathEndpoints, handle(func(r *http.Request) (any, error) { return s.endpoints(), nil }))
	mux.HandleFunc("POST "+agentapi.PathEndpoints, handle(func(r *http.Request) (any, error) {
		var e agentapi.Endpoint
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		ep, err := localEndpoint(e)
		if err != nil {
			return nil, badRequest(err)
		}
		if err := s.ctl.AddEndpoint(ep); err != nil {
			return nil, badRequest(err)
		}
		return e, nil
	}))
	mux.HandleFunc("DELETE "+agentapi.PathEndpoints+"/{name}", handle(func(r *http.Request) (any, error) {
		if err := s.ctl.RemoveEndpoint(r.PathValue("name")); err != nil {
			return nil, badRequest(err)
		}
		return map[string]string{"removed": r.PathValue("name")}, nil
	}))
	s.serveAttachments(mux)
	mux.HandleFunc("GET "+agentapi.PathFlows, handle(func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		return s.vr.Flows(ctx, &vrouterv1.FlowsRequest{})
	}))
	mux.HandleFunc("GET "+agentapi.PathCounters, handle(func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		return s.vr.Counters(ctx, &vrouterv1.CountersRequest{})
	}))
	mux.HandleFunc("POST "+agentapi.PathProbe, handle(func(r *http.Request) (any, error) {
		// The whole body is read, so that the server watches the
		// connection and ends r's context when the client goes.
		b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxProbeBody))
		if err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		var req agentapi.ProbeRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		ctx, cancel := context.WithTimeout(r.Context(), agentapi.MaxProbeDuration+time.Second)
		defer cancel()
		return s.probe(ctx, req)
	}))
	mux.HandleFunc("GET "+agentapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		raw, cerr := s.decl.raw()
		w.Header().Set("Content-Type", "application/yaml")
		if cerr != nil {
			w.Header().Set(agentapi.ConfigErrorHeader, strings.ReplaceAll(cerr.Error(), "\n", "; "))
		}
		w.Write(raw)
	})
	mux.HandleFunc("POST "+agentapi.PathReload, handle(func(r *http.Request) (any, error) {
		if err := s.ctl.Reload(); err != nil {
			return nil, badRequest(err)
		}
		return map[string]string{"reloaded": s.configPath}, nil
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}

type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

func badRequest(err error) error { return &httpError{http.StatusBadRequest, err} }

// handle writes fn's answer as JSON, or its error as agentapi.Error.
func handle(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := http.StatusInternalServerError
			var he *httpError
			if errors.As(err, &he) {
				code = he.code
			}
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(agentapi.Error{Error: err.Error()})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	}
}

func localEndpoint(e agentapi.Endpoint) (LocalEndpoint, error) {
	p, err := netip.ParsePrefix(e.Address)
	if err != nil {
		return LocalEndpoint{}, fmt.Errorf("address: %w", err)
	}
	ep := LocalEndpoint{Name: e.Name, Network: e.Network, Address: p, Netns: e.Netns, NeutronPort: e.NeutronPort, Device: e.Device}
	for i, s := range e.AllowedSources {
		a, err := netip.ParsePrefix(s)
		if err != nil {
			return LocalEndpoint{}, fmt.Errorf("allowedSources[%d]: %w", i, err)
		}
		ep.AllowedSources = append(ep.AllowedSources, a)
	}
	if e.MAC != "" {
		m, err := packet.ParseMAC(e.MAC)
		if err != nil {
			return LocalEndpoint{}, fmt.Errorf("mac: %w", err)
		}
		ep.MAC = m
	}
	return ep, nil
}

// status is the agent's summary.
func (s *apiServer) status(ctx context.Context) agentapi.Status {
	st := agentapi.Status{Version: s.version, Hostname: s.hostname, Config: s.configPath, LastGood: s.lastGood, Synced: s.rib.isSynced()}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := s.vr.Info(ictx, &vrouterv1.InfoRequest{}); err != nil {
		st.VRouterError = err.Error()
	} else {
		st.VRouterReady = true
	}
	cancel()
	if s.r.endpoints != nil {
		st.NextHopWarnings = s.r.endpoints.report()
	}
	eps, _ := s.decl.endpoints()
	st.Endpoints = len(eps)
	if err := s.decl.lastErr(); err != nil {
		st.ConfigErr = err.Error()
	}
	s.r.view(func(fw *forwarding) {
		st.RouterID, st.Underlay = fw.routerID.String(), fw.underlay.String()
		st.FastPath, st.FastPathNotes = fw.info.GetFastPath(), fw.info.GetFastPathNotes()
		st.Reconciles, st.LastRun, st.LastTook, st.LastErr = fw.stats.Count, fw.stats.Last, fw.stats.Duration.String(), fw.stats.Err
		for _, e := range fw.tunnels {
			st.Encaps = append(st.Encaps, e.String())
		}
		if fw.installed != nil {
			st.Routes = len(fw.installed.Routes)
		}
		for _, rf := range sortedRefusals(fw.refused) {
			st.Refused = append(st.Refused, agentapi.Refusal{Op: rf.object, Endpoint: rf.endpoint, Error: rf.err,
				Attempts: rf.attempts, Since: rf.since, NextRetry: rf.next})
		}
		for _, n := range perNetwork(fw.imported, fw.installed) {
			st.Networks = append(st.Networks, agentapi.NetworkRoutes{Network: n.Network, Received: n.Received, Accepted: n.Accepted, Installed: n.Installed})
		}
		if fw.speaker != nil {
			for _, rt := range fw.speaker.ImportTargets() {
				st.RouteTargets = append(st.RouteTargets, rt.String())
			}
			st.Announced = len(fw.speaker.Announced())
			for _, p := range fw.speaker.Peers() {
				st.Peers++
				if p.State == bgp.StateEstablished {
					st.PeersUp++
				}
			}
		}
	})
	st.HeapLive = heapLive()
	if c, ok := s.rib.lastConvergence(); ok {
		st.LastConvergence = &agentapi.Convergence{Peer: c.Peer.String(), Established: c.Established,
			EndOfRIB: c.EndOfRIB.Sub(c.Established).String(), Took: c.Took().String(), Seconds: c.Took().Seconds()}
	}
	return st
}

// peers lists the BGP sessions.
func (s *apiServer) peers() []agentapi.Peer {
	var sp *bgp.Speaker
	s.r.view(func(fw *forwarding) { sp = fw.speaker })
	out := []agentapi.Peer{}
	if sp == nil {
		return out
	}
	for _, p := range sp.Peers() {
		e := agentapi.Peer{Address: p.Address.String(), ASN: p.ASN, State: p.State.String(), Flaps: p.Flaps,
			LastError: p.LastError, MalformedUpdates: p.MalformedUpdates,
			TreatAsWithdraw: p.TreatAsWithdraw, AttributeDiscards: p.AttributeDiscards, MalformedResets: p.MalformedResets}
		if p.Uptime > 0 {
			e.Uptime = p.Uptime.Round(time.Second).String()
		}
		for _, f := range p.Families {
			e.Families = append(e.Families, fmt.Sprintf("%s %d/%d/%d", f.Family, f.Received, f.Accepted, f.Advertised))
		}
		out = append(out, e)
	}
	return out
}

// routes lists the installed routes, of one network or all.
func (s *apiServer) routes(network string) []agentapi.Route {
	out := []agentapi.Route{}
	s.r.view(func(fw *forwarding) {
		in := fw.installed
		if in == nil {
			return
		}
		irs := make([]installedRoute, 0, len(in.Routes))
		for ir := range in.Routes {
			irs = append(irs, ir)
		}
		sortInstalledRoutes(irs)
		for _, ir := range irs {
			vrf := in.VRFs[ir.VRF].GetName()
			if network != "" && vrf != network {
				continue
			}
			out = append(out, agentapi.Route{Network: vrf, Prefix: ir.Prefix.String(), Via: describeNH(in, in.Routes[ir])})
		}
	})
	return out
}

// describeNH says where next hop id sends traffic, for `weft ctl routes`.
func describeNH(in *Installed, id uint32) string {
	nh := in.NextHops[id]
	switch nh.GetKind() {
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT:
		return "local " + in.Ports[nh.GetPort()].GetName()
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL:
		if nh.GetEncap() == vrouterv1.Encap_ENCAP_VXLAN {
			return fmt.Sprintf("vxlan %s vni %d", nh.GetUnderlay(), nh.GetVni())
		}
		return fmt.Sprintf("%s %s label %d", nh.GetEncap().Packet(), nh.GetUnderlay(), nh.GetLabel())
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE:
		var ms []string
		for _, m := range nh.GetMembers() {
			ms = append(ms, describeNH(in, m))
		}
		return "ecmp [" + strings.Join(ms, ", ") + "]"
	}
	return nh.GetKind().String()
}

// endpoints lists this node's endpoints with their label and port.
func (s *apiServer) endpoints() []agentapi.Endpoint {
	eps, runtime := s.decl.endpoints()
	out := []agentapi.Endpoint{}
	s.r.view(func(fw *forwarding) {
		for _, e := range eps {
			ep := agentapi.Endpoint{Name: e.Name, Network: e.Network, Address: e.Address.String(), Netns: e.Netns, Source: "config", NeutronPort: e.NeutronPort,
				Device: e.Device}
			for _, a := range e.AllowedSources {
				ep.AllowedSources = append(ep.AllowedSources, a.String())
			}
			if runtime[e.Name] {
				ep.Source = "api"
			}
			if e.Address6.IsValid() {
				ep.Address6 = e.Address6.String()
			}
			if cid, ifn, ok := parseAttachmentName(e.Name); ok && runtime[e.Name] {
				ep.Source, ep.ContainerID, ep.IfName = "cni", cid, ifn
				if rec, ok := s.att.get(e.Name); ok {
					ep.PodNamespace, ep.PodName = rec.PodNamespace, rec.PodName
				}
			}
			if !e.MAC.IsZero() {
				ep.MAC = e.MAC.String()
			}
			if fw.plan != nil {
				ep.Label, ep.Port = fw.plan.LabelOf[e.Name], fw.plan.PortIDs[e.Name]
				if p := fw.installed.Ports[ep.Port]; p != nil && len(p.GetMac()) == 6 {
					ep.MAC = packet.MAC(p.GetMac()).String()
				}
			}
			out = append(out, ep)
		}
	})
	return out
}

// heapLive is the heap in use after the last garbage collection.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
