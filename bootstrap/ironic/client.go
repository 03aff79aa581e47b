package ironic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/oscall"
)

// APIVersion is the Ironic API microversion sent with every call: lookup
// needs 1.22, agent_version in a heartbeat 1.36, agent_token 1.62.
const APIVersion = "1.68"

const versionHeader = "X-OpenStack-Ironic-API-Version"

// Node is what a lookup tells the agent.
type Node struct {
	UUID             string
	HeartbeatTimeout time.Duration // config.heartbeat_timeout
	Token            string        // config.agent_token; Ironic hands it out once
}

type lookupDoc struct {
	Node struct {
		UUID string `json:"uuid"`
	} `json:"node"`
	Config struct {
		HeartbeatTimeout int    `json:"heartbeat_timeout"`
		AgentToken       string `json:"agent_token"`
	} `json:"config"`
}

// maskedToken is what Ironic answers a second lookup with.
const maskedToken = "******"

// lookup asks Ironic at base which node has one of macs.
func lookup(ctx context.Context, hc *http.Client, base string, macs []net.HardwareAddr) (Node, error) {
	addrs := make([]string, len(macs))
	for i, m := range macs {
		addrs[i] = m.String()
	}
	u := strings.TrimSuffix(base, "/") + "/v1/lookup?addresses=" + url.QueryEscape(strings.Join(addrs, ","))
	var doc lookupDoc
	if err := call(ctx, hc, "GET", u, nil, http.StatusOK, &doc); err != nil {
		return Node{}, err
	}
	n := Node{UUID: doc.Node.UUID, HeartbeatTimeout: time.Duration(doc.Config.HeartbeatTimeout) * time.Second, Token: doc.Config.AgentToken}
	switch {
	case n.UUID == "":
		return Node{}, fmt.Errorf("ironic GET %s: the answer names no node", u)
	case n.Token == "" || n.Token == maskedToken:
		// Another agent (or an earlier boot) took the token: the
		// conductor will not accept a heartbeat without it.
		return Node{}, fmt.Errorf("ironic GET %s: node %s came without its agent token (Ironic hands it to the first lookup only; another agent looked this node up before): power-cycle the node through Ironic", u, n.UUID)
	case n.HeartbeatTimeout <= 0:
		n.HeartbeatTimeout = 300 * time.Second // Ironic's default
	}
	return n, nil
}

type heartbeatDoc struct {
	CallbackURL  string `json:"callback_url"`
	AgentVersion string `json:"agent_version"`
	AgentToken   string `json:"agent_token"`
}

// heartbeat tells Ironic the agent is alive and where its API is.
func heartbeat(ctx context.Context, hc *http.Client, base string, n Node, callback, version string) error {
	u := strings.TrimSuffix(base, "/") + "/v1/heartbeat/" + url.PathEscape(n.UUID)
	return call(ctx, hc, "POST", u, heartbeatDoc{CallbackURL: callback, AgentVersion: version, AgentToken: n.Token}, http.StatusAccepted, nil)
}

// call does one request; any other status than want is an *Error.
func call(ctx context.Context, hc *http.Client, method, u string, in any, want int, out any) error {
	name := "ironic " + method + " " + u
	if i := strings.IndexByte(name, '?'); i >= 0 {
		name = name[:i]
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return &Error{Call: name, Message: err.Error(), Err: err}
	}
	req.Header.Set(versionHeader, APIVersion)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &Error{Call: name, Message: err.Error(), Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	rid := oscall.RequestID(resp.Header)
	if err != nil {
		return &Error{Call: name, Status: resp.StatusCode, RequestID: rid, Message: "reading the answer: " + err.Error(), Err: err}
	}
	if resp.StatusCode != want {
		return &Error{Call: name, Status: resp.StatusCode, RequestID: rid, Message: faultString(raw),
			Err: errors.New(http.StatusText(resp.StatusCode))}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return &Error{Call: name, Status: resp.StatusCode, RequestID: rid, Message: "decoding the answer: " + err.Error(), Err: err}
		}
	}
	return nil
}
