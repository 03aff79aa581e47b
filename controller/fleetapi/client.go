package fleetapi

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
)

// Client talks to a controller: a node's phone-home, `weft ctl fleet`.
type Client struct {
	// URL is the controller's base URL, as on the kernel command line
	// (http://10.0.2.2/).
	URL string
	// MACs are sent in the X-Weft-MAC header (a node's NICs); nil = none.
	MACs []net.HardwareAddr
	// Token is sent as "Authorization: Bearer <Token>": the operator's
	// token (the controller's operator.token); "" = none.
	Token string
	// HTTP; nil = HTTPClient(Pin{}, nil): no pin, the system's roots for
	// https. A controller's https is verified with HTTPClient(pin, ...).
	// Calls without a deadline on their context get 30 s.
	HTTP *http.Client
	// Node, when set, gives every request the node's credential (see
	// Claimer): a node's reports, task polls and probe results.
	Node *Claimer
}

var defaultHTTP = HTTPClient(Pin{}, nil)

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *Client) url(path string) (string, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("controller URL %q: want http://HOST[:PORT]/ or https://HOST[:PORT]/", c.URL)
	}
	return strings.TrimSuffix(u.String(), "/") + path, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	data, _, err := c.exchange(ctx, method, path, body)
	return data, err
}

// exchange is do, with the answer's header (also on a *StatusError).
func (c *Client) exchange(ctx context.Context, method, path string, body []byte) ([]byte, http.Header, error) {
	u, err := c.url(path)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("controller %s: %w", u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(c.MACs) > 0 {
		req.Header.Set(MACHeader, FormatMACHeader(c.MACs))
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("User-Agent", "weft")
	var cred string
	if c.Node != nil {
		if cred, err = c.Node.Credential(ctx); err != nil {
			return nil, nil, err
		}
		SetAuth(req.Header, cred)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("controller: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("controller %s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 1000 {
			msg = msg[:1000] + "…"
		}
		if resp.StatusCode == http.StatusUnauthorized && c.Node != nil {
			c.Node.Refused(cred) // claimed again next time
		}
		return nil, nil, &StatusError{Method: method, URL: u, Code: resp.StatusCode, Status: resp.Status, Message: msg, Header: resp.Header}
	}
	return data, resp.Header, nil
}

// Report sends node's report.
func (c *Client) Report(ctx context.Context, node string, r *Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, "/weft/v1/nodes/"+url.PathEscape(node)+"/report", b)
	return err
}

// Fleet fetches the fleet view.
func (c *Client) Fleet(ctx context.Context) (*Fleet, error) {
	data, err := c.do(ctx, http.MethodGet, "/weft/v1/fleet", nil)
	if err != nil {
		return nil, err
	}
	var f Fleet
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("controller: the fleet view: %w", err)
	}
	return &f, nil
}

// longPoll runs a request that waits up to wait on the controller. A
// Client.HTTP, if set, serves it too: its Timeout must exceed the wait.
func (c *Client) longPoll(ctx context.Context, path string, wait time.Duration) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		// Answered before the caller gives up, rather than cut off.
		if left := time.Until(dl) - time.Second; left < wait {
			wait = max(left, 0)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
	defer cancel()
	return c.do(ctx, http.MethodGet, path+"?wait="+wait.Round(time.Millisecond).String(), nil)
}

// Tasks waits up to TaskWait (less when ctx ends sooner) for tasks for
// node, and returns them: the node's agent runs each probe and sends its
// ProbeResult. It returns an empty list when the wait ends without any;
// the agent calls it again at once. c.MACs should be the node's, as for
// reports: the controller refuses a node that names another's NICs.
func (c *Client) Tasks(ctx context.Context, node string) ([]ProbeTask, error) {
	data, err := c.longPoll(ctx, "/weft/v1/nodes/"+url.PathEscape(node)+"/tasks", TaskWait)
	if err != nil {
		return nil, err
	}
	var t Tasks
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("controller: tasks: %w", err)
	}
	return t.Probes, nil
}

// ProbeResult sends the result of the probe with id (a ProbeTask's ID).
func (c *Client) ProbeResult(ctx context.Context, id string, r ProbeResult) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("probe result: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, "/weft/v1/probes/"+url.PathEscape(id)+"/result", b)
	return err
}

// Probe asks for a probe and returns it as the controller took it:
// pending, with its ID and the defaults filled in. WaitProbe waits for
// its result.
func (c *Client) Probe(ctx context.Context, req ProbeRequest) (Probe, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Probe{}, fmt.Errorf("probe: %w", err)
	}
	data, err := c.do(ctx, http.MethodPost, "/weft/v1/probes", b)
	if err != nil {
		return Probe{}, err
	}
	var p Probe
	if err := json.Unmarshal(data, &p); err != nil {
		return Probe{}, fmt.Errorf("controller: the probe: %w", err)
	}
	return p, nil
}

// WaitProbe waits until the probe with id is done or expired, and
// returns it; p.OK says whether the address was reached. The controller
// expires every probe in bounded time (ProbePickupTimeout to be taken,
// then Count×TimeoutMillis plus ProbeResultGrace for the result), so
// WaitProbe returns without a deadline on ctx too. When ctx ends first,
// it returns the probe as last seen and ctx's error.
func (c *Client) WaitProbe(ctx context.Context, id string) (Probe, error) {
	var last Probe
	for {
		t0 := time.Now()
		data, err := c.longPoll(ctx, "/weft/v1/probes/"+url.PathEscape(id), TaskWait)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, err
		}
		var p Probe
		if err := json.Unmarshal(data, &p); err != nil {
			return last, fmt.Errorf("controller: probe %s: %w", id, err)
		}
		if p.Final() {
			return p, nil
		}
		last = p
		if time.Since(t0) < 200*time.Millisecond {
			// An answer without a wait: ctx's deadline is close.
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err := ctx.Err(); err != nil {
			return last, err
		}
	}
}

// Probes lists the probes the controller keeps, newest first.
func (c *Client) Probes(ctx context.Context) ([]Probe, error) {
	data, err := c.do(ctx, http.MethodGet, "/weft/v1/probes", nil)
	if err != nil {
		return nil, err
	}
	var l ProbeList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("controller: probes: %w", err)
	}
	return l.Probes, nil
}
