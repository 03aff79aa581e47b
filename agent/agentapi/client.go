package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	vrouterv1 "github.com/weftnet/weft/vrouter/api/v1"
)

// clientTimeout is the longest a Client waits for an answer; a probe
// (MaxProbeDuration) fits in it.
const clientTimeout = MaxProbeDuration + 5*time.Second

// Client talks to an agent's local API (what `weft ctl` and CNI use).
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, hc: &http.Client{Timeout: clientTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}}
}

func (c *Client) do(method, path string, body, out any) error {
	return c.doContext(context.Background(), method, path, body, out)
}

func (c *Client) doContext(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w (is `weft agent` running?)", c.Socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("agent: %s", e.Error)
		}
		return fmt.Errorf("agent: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if s, ok := out.(*[]byte); ok {
		*s = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// Status is GET /v1/status.
func (c *Client) Status() (Status, error) {
	var s Status
	return s, c.do("GET", PathStatus, nil, &s)
}

// Peers is GET /v1/peers.
func (c *Client) Peers() ([]Peer, error) {
	var p []Peer
	return p, c.do("GET", PathPeers, nil, &p)
}

// Routes is GET /v1/routes, of one network ("" = all).
func (c *Client) Routes(network string) ([]Route, error) {
	var r []Route
	return r, c.do("GET", PathRoutes+"?network="+url.QueryEscape(network), nil, &r)
}

// Endpoints is GET /v1/endpoints.
func (c *Client) Endpoints() ([]Endpoint, error) {
	var e []Endpoint
	return e, c.do("GET", PathEndpoints, nil, &e)
}

// AddEndpoint is POST /v1/endpoints.
func (c *Client) AddEndpoint(e Endpoint) error { return c.do("POST", PathEndpoints, e, nil) }

// RemoveEndpoint is DELETE /v1/endpoints/NAME.
func (c *Client) RemoveEndpoint(name string) error {
	return c.do("DELETE", PathEndpoints+"/"+url.PathEscape(name), nil, nil)
}

// Flows is GET /v1/flows (the vRouter's flow table).
func (c *Client) Flows() (*vrouterv1.FlowsReply, error) {
	var f vrouterv1.FlowsReply
	return &f, c.do("GET", PathFlows, nil, &f)
}

// Counters is GET /v1/counters (the vRouter's counters).
func (c *Client) Counters() (*vrouterv1.CountersReply, error) {
	var r vrouterv1.CountersReply
	return &r, c.do("GET", PathCounters, nil, &r)
}

// Config returns the running weft.yaml.
func (c *Client) Config() ([]byte, error) {
	var b []byte
	return b, c.do("GET", PathConfig, nil, &b)
}

// Reload asks the agent to read its config file again.
func (c *Client) Reload() error { return c.do("POST", PathReload, nil, nil) }

// Probe asks the agent to run a reachability check from one of its
// endpoints. When ctx ends first, the request is abandoned and the agent
// stops the probe.
func (c *Client) Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	var r ProbeResult
	return r, c.doContext(ctx, "POST", PathProbe, req, &r)
}
