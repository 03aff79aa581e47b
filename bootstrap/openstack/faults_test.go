package openstack

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/regions"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/weftnet/weft/agent/agentapi"
	"github.com/weftnet/weft/config"
)

// Keystone unreachable: the error names the call and says there was no
// answer.
func TestKeystoneUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	j := &config.OpenStackJoin{AuthURL: "http://" + addr + "/v3", ApplicationCredential: config.ApplicationCredential{ID: "a", Secret: "b"}}
	_, err = Dial(context.Background(), j, quiet())
	var e *Error
	if !errors.As(err, &e) || e.Call != "keystone POST /v3/auth/tokens" || e.Status != 0 {
		t.Fatalf("Dial to a closed port: %v, want an *Error for keystone POST /v3/auth/tokens without status", err)
	}
	if !strings.Contains(err.Error(), "no answer") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q: want it to say there was no answer and why", err)
	}
}

// faultyNeutron puts a proxy in front of the cloud's Neutron, listed in
// Keystone's catalog as region "Faulty"; fail makes it answer 500, slow
// makes it answer after 3 s.
func faultyNeutron(t *testing.T, neutronURL, authURL string, admin func() (*gophercloud.ProviderClient, error)) (fail, slow *atomic.Bool) {
	t.Helper()
	ctx := context.Background()
	target, _ := url.Parse(neutronURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	fail, slow = new(atomic.Bool), new(atomic.Bool)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		if fail.Load() {
			w.Header().Set("X-Openstack-Request-Id", "req-injected-500")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"NeutronError": {"type": "HTTPInternalServerError", "message": "injected failure", "detail": ""}}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	pc, err := admin()
	if err != nil {
		t.Fatal(err)
	}
	id, err := gopenstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regions.Get(ctx, id, "Faulty").Extract(); err != nil {
		if _, err := regions.Create(ctx, id, regions.CreateOpts{ID: "Faulty"}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	pages, err := services.List(id, services.ListOpts{ServiceType: "network"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := services.ExtractServices(pages)
	if err != nil || len(svcs) == 0 {
		t.Fatalf("no network service: %v", err)
	}
	ep, err := endpoints.Create(ctx, id, endpoints.CreateOpts{Availability: gophercloud.AvailabilityPublic, Region: "Faulty",
		URL: srv.URL, ServiceID: svcs[0].ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { endpoints.Delete(ctx, id, ep.ID) })
	return fail, slow
}

// Neutron answering 500: the poll's error names the call, the status and
// the request id; the endpoints stay; once Neutron answers again, ports
// are followed again.
func TestNeutronFailureKeepsEndpoints(t *testing.T) {
	c := needCloud(t)
	n := admin(t, c)
	fail, slow := faultyNeutron(t, c.NeutronURL, c.AuthURL, func() (*gophercloud.ProviderClient, error) { return c.Admin(context.Background()) })
	suffix := uuid()[:8]
	netID, subnetID := makeNetwork(t, n, "flt-"+suffix, 1401, "10.14.0.0/24")
	instance := uuid()
	p1 := makePort(t, n, ports.CreateOpts{NetworkID: netID, DeviceID: instance, FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: "10.14.0.5"}}})
	j := adminJoin(c)
	j.Region = "Faulty"
	cfg := &config.Config{Networks: []config.VirtualNetwork{{Name: "db", VNI: 1401}}, Join: config.Join{OpenStack: &config.OpenStackJoin{MatchVNI: true}}}
	s, err := Dial(context.Background(), j, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ag := &memAgent{eps: map[string]agentapi.Endpoint{}}
	f := &Follower{Session: s, Agent: ag, Mapping: NewMapping(cfg), Instance: instance, Interval: 100 * time.Millisecond, Log: quiet()}
	if err := f.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := ag.get(EndpointName(p1.ID)); !ok {
		t.Fatal("the port was not attached through the proxy")
	}

	fail.Store(true)
	err = f.Sync(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Call != "neutron GET /v2.0/ports" || e.Status != 500 || e.RequestID != "req-injected-500" || e.Message != "injected failure" {
		t.Fatalf("sync against a failing Neutron: %v; want neutron GET /v2.0/ports, HTTP 500, request req-injected-500, injected failure", err)
	}
	t.Logf("failing neutron: %v", err)
	// While Neutron fails, the follower backs off and removes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan struct{})
	go func() { f.Run(ctx); close(runDone) }()
	time.Sleep(time.Second)
	if _, ok := ag.get(EndpointName(p1.ID)); !ok {
		t.Fatal("the endpoint was removed while Neutron failed")
	}
	p2 := makePort(t, n, ports.CreateOpts{NetworkID: netID, DeviceID: instance, FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: "10.14.0.6"}}})
	fail.Store(false)
	waitFor(t, "a port added while Neutron failed, attached once it answers", func() bool { _, ok := ag.get(EndpointName(p2.ID)); return ok })
	if _, ok := ag.get(EndpointName(p1.ID)); !ok {
		t.Error("the first endpoint went after Neutron recovered")
	}

	// Neutron answering slower than the request timeout: no answer, and
	// the endpoints stay.
	cancel()
	<-runDone
	s.pc.HTTPClient.Timeout = time.Second
	slow.Store(true)
	err = f.Sync(context.Background())
	if !errors.As(err, &e) || e.Call != "neutron GET /v2.0/ports" || e.Status != 0 || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("sync against a slow Neutron: %v; want neutron GET /v2.0/ports with no answer", err)
	}
	t.Logf("slow neutron: %v", err)
	if eps, _ := ag.Endpoints(); len(eps) != 2 {
		t.Errorf("endpoints after a slow Neutron: %v, want both kept", eps)
	}
}
