package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/agent/bgp"
	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
	"github.com/weftnet/weft/vrouter/packet"
)

// The agent's local API: JSON over HTTP on a unix socket (mode 0600), for
// `weft ctl` and for CNI. The types below are its documents.

// Status is GET /v1/status.
type Status struct {
	Version    string    `json:"version"`
	Hostname   string    `json:"hostname"`
	RouterID   string    `json:"routerID"`
	Underlay   string    `json:"underlay"`
	Encaps     []string  `json:"encaps"`
	Config     string    `json:"config"`
	ConfigErr  string    `json:"configError,omitempty"`
	Synced     bool      `json:"synced"`
	Peers      int       `json:"peers"`
	PeersUp    int       `json:"peersUp"`
	Endpoints  int       `json:"endpoints"`
	Routes     int       `json:"routes"`
	Announced  int       `json:"announced"`
	Reconciles uint64    `json:"reconciles"`
	LastRun    time.Time `json:"lastReconcile"`
	LastTook   string    `json:"lastReconcileTook"`
	LastErr    string    `json:"lastReconcileError,omitempty"`
}

// Peer is one entry of GET /v1/peers.
type Peer struct {
	Address          string   `json:"address"`
	ASN              uint32   `json:"asn"`
	State            string   `json:"state"`
	Uptime           string   `json:"uptime,omitempty"`
	Flaps            uint32   `json:"flaps"`
	LastError        string   `json:"lastError,omitempty"`
	MalformedUpdates uint64   `json:"malformedUpdates"`
	Families         []string `json:"families"` // "l3vpn-ipv4-unicast 3/3/2" received/accepted/advertised
}

// Route is one entry of GET /v1/routes: what the vRouter has installed.
type Route struct {
	Network string `json:"network"`
	Prefix  string `json:"prefix"`
	Via     string `json:"via"` // "local pg1", "mplsoudp 192.0.2.2 label 17", "ecmp [...]"
}

// Endpoint is one entry of GET /v1/endpoints, and the body of POST.
type Endpoint struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	Address string `json:"address"`
	Netns   string `json:"netns,omitempty"`
	MAC     string `json:"mac,omitempty"`
	Label   uint32 `json:"label,omitempty"`
	Source  string `json:"source,omitempty"` // "config" or "api"
	Port    uint32 `json:"port,omitempty"`
}

func (a *Agent) serveAPI() (*http.Server, error) {
	if err := os.MkdirAll(filepath.Dir(a.opt.APISocket), 0o755); err != nil {
		return nil, fmt.Errorf("agent: api socket directory: %w", err)
	}
	os.Remove(a.opt.APISocket)
	ln, err := net.Listen("unix", a.opt.APISocket)
	if err != nil {
		return nil, fmt.Errorf("agent: api: %w", err)
	}
	if err := os.Chmod(a.opt.APISocket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.handle(func(r *http.Request) (any, error) { return a.Status(), nil }))
	mux.HandleFunc("GET /v1/peers", a.handle(func(r *http.Request) (any, error) { return a.Peers(), nil }))
	mux.HandleFunc("GET /v1/routes", a.handle(func(r *http.Request) (any, error) { return a.Routes(r.URL.Query().Get("network")), nil }))
	mux.HandleFunc("GET /v1/endpoints", a.handle(func(r *http.Request) (any, error) { return a.Endpoints(), nil }))
	mux.HandleFunc("POST /v1/endpoints", a.handle(func(r *http.Request) (any, error) {
		var e Endpoint
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		ep, err := e.local()
		if err != nil {
			return nil, badRequest(err)
		}
		if err := a.AddEndpoint(ep); err != nil {
			return nil, badRequest(err)
		}
		return e, nil
	}))
	mux.HandleFunc("DELETE /v1/endpoints/{name}", a.handle(func(r *http.Request) (any, error) {
		if err := a.RemoveEndpoint(r.PathValue("name")); err != nil {
			return nil, badRequest(err)
		}
		return map[string]string{"removed": r.PathValue("name")}, nil
	}))
	mux.HandleFunc("GET /v1/flows", a.handle(func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		return a.vr.Flows(ctx, &vrouterv1.FlowsRequest{})
	}))
	mux.HandleFunc("GET /v1/counters", a.handle(func(r *http.Request) (any, error) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		return a.vr.Counters(ctx, &vrouterv1.CountersRequest{})
	}))
	mux.HandleFunc("POST /v1/probe", a.handle(func(r *http.Request) (any, error) {
		var req ProbeRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return nil, badRequest(fmt.Errorf("body: %w", err))
		}
		ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
		defer cancel()
		res, err := a.Probe(ctx, req)
		if err != nil {
			return nil, badRequest(err)
		}
		return res, nil
	}))
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		raw, cerr := a.cfg.Raw(), a.cfgErr
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/yaml")
		if cerr != nil {
			w.Header().Set("X-Weft-Config-Error", strings.ReplaceAll(cerr.Error(), "\n", "; "))
		}
		w.Write(raw)
	})
	mux.HandleFunc("POST /v1/config/reload", a.handle(func(r *http.Request) (any, error) {
		if err := a.Reload(); err != nil {
			return nil, badRequest(err)
		}
		return map[string]string{"reloaded": a.opt.ConfigPath}, nil
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

func (a *Agent) handle(fn func(*http.Request) (any, error)) http.HandlerFunc {
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
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	}
}

func (e Endpoint) local() (LocalEndpoint, error) {
	p, err := netip.ParsePrefix(e.Address)
	if err != nil {
		return LocalEndpoint{}, fmt.Errorf("address: %w", err)
	}
	ep := LocalEndpoint{Name: e.Name, Network: e.Network, Address: p, Netns: e.Netns}
	if e.MAC != "" {
		m, err := packet.ParseMAC(e.MAC)
		if err != nil {
			return LocalEndpoint{}, fmt.Errorf("mac: %w", err)
		}
		ep.MAC = m
	}
	return ep, nil
}

// Status is the agent's summary.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{Version: a.opt.Version, Hostname: a.opt.Hostname, RouterID: a.routerID.String(), Underlay: a.underlay.String(),
		Config: a.opt.ConfigPath, Synced: a.synced, Endpoints: len(a.endpointsLocked()),
		Reconciles: a.stats.Count, LastRun: a.stats.Last, LastTook: a.stats.Duration.String(), LastErr: a.stats.Err}
	for _, e := range a.tunnels {
		s.Encaps = append(s.Encaps, e.String())
	}
	if a.cfgErr != nil {
		s.ConfigErr = a.cfgErr.Error()
	}
	if a.installed != nil {
		s.Routes = len(a.installed.Routes)
	}
	if a.speaker != nil {
		s.Announced = len(a.speaker.Announced())
		for _, p := range a.speaker.Peers() {
			s.Peers++
			if p.State == bgp.StateEstablished {
				s.PeersUp++
			}
		}
	}
	return s
}

// Peers lists the BGP sessions.
func (a *Agent) Peers() []Peer {
	a.mu.Lock()
	sp := a.speaker
	a.mu.Unlock()
	out := []Peer{}
	if sp == nil {
		return out
	}
	for _, p := range sp.Peers() {
		e := Peer{Address: p.Address.String(), ASN: p.ASN, State: p.State.String(), Flaps: p.Flaps,
			LastError: p.LastError, MalformedUpdates: p.MalformedUpdates}
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

// Routes lists the installed routes, of one network or all.
func (a *Agent) Routes(network string) []Route {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []Route{}
	if a.installed == nil {
		return out
	}
	in := a.installed
	for _, ir := range sortedInstalledRoutes(in.Routes) {
		vrf := in.VRFs[ir.VRF].GetName()
		if network != "" && vrf != network {
			continue
		}
		out = append(out, Route{Network: vrf, Prefix: ir.Prefix.String(), Via: a.describeNH(in.Routes[ir])})
	}
	return out
}

func (a *Agent) describeNH(id uint32) string {
	nh := a.installed.NextHops[id]
	switch nh.GetKind() {
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_PORT:
		return "local " + a.installed.Ports[nh.GetPort()].GetName()
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_TUNNEL:
		if nh.GetEncap() == vrouterv1.Encap_ENCAP_VXLAN {
			return fmt.Sprintf("vxlan %s vni %d", nh.GetUnderlay(), nh.GetVni())
		}
		return fmt.Sprintf("%s %s label %d", nh.GetEncap().Packet(), nh.GetUnderlay(), nh.GetLabel())
	case vrouterv1.NextHopKind_NEXT_HOP_KIND_COMPOSITE:
		var ms []string
		for _, m := range nh.GetMembers() {
			ms = append(ms, a.describeNH(m))
		}
		return "ecmp [" + strings.Join(ms, ", ") + "]"
	}
	return nh.GetKind().String()
}

// Endpoints lists this node's endpoints with their label and port.
func (a *Agent) Endpoints() []Endpoint {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []Endpoint{}
	for _, e := range a.endpointsLocked() {
		ep := Endpoint{Name: e.Name, Network: e.Network, Address: e.Address.String(), Netns: e.Netns, Source: "config"}
		if _, ok := a.runtime[e.Name]; ok {
			ep.Source = "api"
		}
		if a.plan != nil {
			ep.Label, ep.Port = a.plan.LabelOf[e.Name], a.plan.PortIDs[e.Name]
			if p := a.installed.Ports[ep.Port]; p != nil && len(p.GetMac()) == 6 {
				ep.MAC = packet.MAC(p.GetMac()).String()
			}
		}
		out = append(out, ep)
	}
	return out
}
