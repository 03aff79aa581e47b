package fleetapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"
)

// ClaimPath is where a node claims its identity: POST, a JSON body ({}),
// the node's MACs in X-Weft-MAC. The controller answers a Claim when the
// claim is armed (its DHCP server leased the node an address for a boot,
// or it started, or an operator re-armed the node) and comes from the
// armed address; once per arming. Anything else is refused with 403 and
// a message saying why; a second claim shows in the fleet view.
const ClaimPath = "/weft/v1/nodes/claim"

// ControllerHeader is on every answer of a weft controller to a claim
// (value "1"): an answer without it (a 404, a portal's page) comes from a
// server that is no weft controller, and the node goes on without a
// credential. With it, a 404 means the inventory lacks the node.
const ControllerHeader = "X-Weft-Controller"

// ErrUnknownNode is Claimer's error when the controller's inventory has
// no node with the claim's MACs or address.
var ErrUnknownNode = errors.New("the controller's inventory lacks this node")

// Claim is the controller's answer to a claim: the node's name in the
// inventory and its credential, sent as "Authorization: Bearer
// <credential>" on every later request of the node.
type Claim struct {
	Node       string `json:"node"`
	Credential string `json:"credential"`
}

// ArmRequest re-arms a node's claim (POST /weft/v1/nodes/{name}/arm, an
// operator's request): the next claim from Address is accepted. The zero
// Address means the node's inventory address.
type ArmRequest struct {
	Address netip.Addr `json:"address,omitzero"`
}

// Arming is an armed claim: node's next claim is accepted from Address.
type Arming struct {
	Node    string     `json:"node"`
	Address netip.Addr `json:"address"`
	// By is what armed it: "dhcp" (a boot's lease), "start" (the
	// controller started, or the node was added to the inventory) or
	// "operator".
	By   string    `json:"by"`
	Time time.Time `json:"time"`
}

// Identity is what the fleet view shows of a node's identity.
type Identity struct {
	// Claimed is when the node's current credential was issued, and
	// ClaimedFrom the address that claimed it.
	Claimed     time.Time  `json:"claimed,omitzero"`
	ClaimedFrom netip.Addr `json:"claimedFrom,omitzero"`
	// Armed is set while a claim is armed and not yet made.
	Armed *Arming `json:"armed,omitempty"`
	// Refused is the latest claim the controller refused for the node.
	Refused *RefusedClaim `json:"refused,omitempty"`
}

// RefusedClaim is a claim the controller refused.
type RefusedClaim struct {
	From netip.Addr `json:"from"`
	Time time.Time  `json:"time"`
	// Twice is set when the node's identity had been claimed already
	// since its last arming: someone else holds (or held) its credential.
	Twice  bool   `json:"twice"`
	Reason string `json:"reason"`
}

// Alert is the refused claim in one line, as the fleet view shows it.
func (r *RefusedClaim) Alert() string {
	if r.Twice {
		return fmt.Sprintf("identity claimed twice: from %s at %s", r.From, r.Time.Format(time.RFC3339))
	}
	return fmt.Sprintf("identity claim refused: from %s at %s: %s", r.From, r.Time.Format(time.RFC3339), r.Reason)
}

// errNotController is Claim's error for an answer without ControllerHeader.
var errNotController = errors.New("not a weft controller")

// Claim claims the identity of the node whose NICs are c.MACs.
func (c *Client) Claim(ctx context.Context) (Claim, error) {
	data, hdr, err := c.exchange(ctx, http.MethodPost, ClaimPath, []byte("{}"))
	var se *StatusError
	if errors.As(err, &se) {
		hdr = se.Header
	}
	switch {
	case hdr != nil && hdr.Get(ControllerHeader) == "":
		return Claim{}, errNotController
	case err != nil:
		return Claim{}, err
	}
	var cl Claim
	if err := json.Unmarshal(data, &cl); err != nil || cl.Credential == "" || cl.Node == "" {
		return Claim{}, fmt.Errorf("controller: the claim's answer %.200q: want {\"node\": ..., \"credential\": ...}", data)
	}
	return cl, nil
}

// Arm re-arms node's claim for a claim from addr (the zero Addr: the
// node's inventory address).
func (c *Client) Arm(ctx context.Context, node string, addr netip.Addr) (Arming, error) {
	b, err := json.Marshal(ArmRequest{Address: addr})
	if err != nil {
		return Arming{}, fmt.Errorf("arm: %w", err)
	}
	data, err := c.do(ctx, http.MethodPost, "/weft/v1/nodes/"+url.PathEscape(node)+"/arm", b)
	if err != nil {
		return Arming{}, err
	}
	var a Arming
	if err := json.Unmarshal(data, &a); err != nil {
		return Arming{}, fmt.Errorf("controller: the arming: %w", err)
	}
	return a, nil
}

// StatusError is a controller's answer other than 2xx.
type StatusError struct {
	Method, URL string
	Code        int
	Status      string
	Message     string // the answer's body, trimmed
	Header      http.Header
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("controller %s %s: HTTP %s: %s", e.Method, e.URL, e.Status, e.Message)
}

// IsStatus reports whether err is a controller's answer with HTTP code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

// Claimer holds a node's credential with one controller: it claims it on
// first use, and again after the controller refused it (401: a restarted
// controller forgot it). A server whose answer to the claim lacks
// ControllerHeader (an OpenStack metadata service, an older controller)
// is no weft controller: requests go without a credential. Safe for concurrent use; claims are
// made one at a time, since a controller accepts one per arming.
type Claimer struct {
	URL string // the controller's base URL
	// MACs lists the node's NICs for the claim's X-Weft-MAC; nil = none.
	MACs func() []net.HardwareAddr
	// HTTP; nil = the Client's default.
	HTTP *http.Client

	mu            sync.Mutex
	cred          string
	notController bool
}

// Credential returns the node's credential, claiming it if need be; ""
// (and no error) when the server is no weft controller.
func (c *Claimer) Credential(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cred != "" || c.notController {
		return c.cred, nil
	}
	cl := &Client{URL: c.URL, HTTP: c.HTTP}
	if c.MACs != nil {
		cl.MACs = c.MACs()
	}
	got, err := cl.Claim(ctx)
	switch {
	case errors.Is(err, errNotController):
		c.notController = true
		return "", nil
	case IsStatus(err, http.StatusNotFound):
		return "", fmt.Errorf("claiming the node's identity: %w: %w", err, ErrUnknownNode)
	case err != nil:
		return "", fmt.Errorf("claiming the node's identity: %w", err)
	}
	c.cred = got.Credential
	return c.cred, nil
}

// Refused drops cred after the controller answered 401 to it: the next
// Credential claims again.
func (c *Claimer) Refused(cred string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cred != "" && c.cred == cred {
		c.cred = ""
	}
}

// SetAuth adds cred to a request, as the controller expects it.
func SetAuth(h http.Header, cred string) {
	if cred != "" {
		h.Set("Authorization", "Bearer "+cred)
	}
}
