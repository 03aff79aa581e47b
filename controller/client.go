package controller

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
	// HTTP; nil = a client with a 10 s timeout and no proxy.
	HTTP *http.Client
}

var defaultHTTP = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second},
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *Client) url(path string) (string, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("controller URL %q: want http://HOST[:PORT]/", c.URL)
	}
	return strings.TrimSuffix(u.String(), "/") + path, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	u, err := c.url(path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(c.MACs) > 0 {
		req.Header.Set(MACHeader, FormatMACHeader(c.MACs))
	}
	req.Header.Set("User-Agent", "weft")
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("controller %s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 1000 {
			msg = msg[:1000] + "…"
		}
		return nil, fmt.Errorf("controller %s %s: HTTP %s: %s", method, u, resp.Status, msg)
	}
	return data, nil
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
