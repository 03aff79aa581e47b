package identity

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/httpx"
	"github.com/weftnet/weft/controller/inventory"
)

type nodeKey struct{}

// NodeOf is the node whose credential the request carries, as Require
// resolved it; "" outside Require.
func NodeOf(r *http.Request) string {
	n, _ := r.Context().Value(nodeKey{}).(string)
	return n
}

// bearer is the request's Authorization: Bearer credential; "" without.
func bearer(r *http.Request) string {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// Require serves next only to a request with a node's credential
// (Authorization: Bearer), 401 otherwise; next reads the node with NodeOf.
func (s *Store) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := bearer(r)
		node, ok := s.Node(cred)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weft node"`)
			why := "no node credential (Authorization: Bearer): a node claims one first (POST " + fleetapi.ClaimPath + ")"
			if cred != "" {
				why = "the node credential is not (or no longer) valid: claim again (POST " + fleetapi.ClaimPath + ")"
			}
			httpx.Plain(w, http.StatusUnauthorized, "weft controller: %s", why)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nodeKey{}, node)))
	})
}

// Own is Require for a route with {name}: only the credential's own node
// is served, 403 for another's.
func (s *Store) Own(next http.Handler) http.Handler {
	return s.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if node, name := NodeOf(r), r.PathValue("name"); !strings.EqualFold(node, name) {
			httpx.Plain(w, http.StatusForbidden, "weft controller: the credential is node %s's, not node %s's", node, name)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// Handlers serve the claim and the operator's re-arming.
type Handlers struct {
	Inv   func() *inventory.Inventory
	Store *Store
	State *fleet.State // claims, and refused ones, are shown in the fleet view
	Log   *slog.Logger
	Now   func() time.Time
}

// maxClaimBody bounds a claim's (and an arming's) body: {} or an address.
const maxClaimBody = 4096

// readObject reads a small JSON object body into v; an empty body is {}.
func readObject(w http.ResponseWriter, r *http.Request, what string, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxClaimBody))
	if err != nil {
		httpx.Plain(w, http.StatusRequestEntityTooLarge, "weft controller: reading the %s: %v", what, err)
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %s: %v", what, err)
		return false
	}
	return true
}

// Claim serves POST /weft/v1/nodes/claim.
func (h *Handlers) Claim(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(fleetapi.ControllerHeader, "1") // whatever the answer
	var body struct{}
	if !readObject(w, r, "claim", &body) {
		return
	}
	macs, err := fleetapi.ParseMACHeader(r.Header)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	inv := h.Inv()
	from := httpx.RemoteAddr(r)
	node, err := inv.Match(macs, from)
	if err != nil {
		// With ControllerHeader, a 404 says "not in the inventory" (a
		// bare one: no weft controller here).
		code := http.StatusNotFound
		if errors.Is(err, inventory.ErrAmbiguousNode) {
			code = http.StatusConflict
		}
		h.Log.Warn("identity claim from a node the inventory lacks", "macs", fleetapi.FormatMACHeader(macs), "addr", from.String(), "err", err)
		httpx.Plain(w, code, "weft controller: %v", err)
		return
	}
	now := h.Now()
	cred, arm, err := h.Store.Claim(node.Name, from, now)
	var ref *Refusal
	switch {
	case errors.As(err, &ref):
		h.State.ClaimRefused(node.Name, fleetapi.RefusedClaim{From: from, Time: now, Twice: ref.Twice, Reason: ref.Reason})
		msg := "identity claim refused"
		if ref.Twice {
			msg = "identity claimed twice: refused; someone else holds, or held, the node's credential"
		}
		h.Log.Warn(msg, "node", node.Name, "addr", from.String(), "macs", fleetapi.FormatMACHeader(macs), "why", ref.Reason)
		httpx.Plain(w, http.StatusForbidden, "weft controller: %s", ref.Reason)
		return
	case err != nil:
		httpx.Plain(w, http.StatusInternalServerError, "weft controller: %v", err)
		return
	}
	h.State.Claimed(node.Name, from, now)
	h.Log.Info("identity claimed: credential issued", "node", node.Name, "addr", from.String(), "armed_by", arm.By)
	httpx.JSON(w, http.StatusOK, fleetapi.Claim{Node: node.Name, Credential: cred})
}

// Arm serves POST /weft/v1/nodes/{name}/arm, an operator's request.
func (h *Handlers) Arm(w http.ResponseWriter, r *http.Request) {
	var req fleetapi.ArmRequest
	if !readObject(w, r, "arming", &req) {
		return
	}
	inv := h.Inv()
	node := inv.Node(r.PathValue("name"))
	if node == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no node %q in the inventory %s", r.PathValue("name"), inv.Path)
		return
	}
	addr := req.Address
	if !addr.IsValid() {
		addr = node.Address
	}
	if !addr.IsValid() {
		httpx.Plain(w, http.StatusConflict, "weft controller: node %s has no address in the inventory %s: name the address its claim will come from (weft ctl fleet arm %s --address ADDR)", node.Name, inv.Path, node.Name)
		return
	}
	a := h.Store.Arm(node.Name, addr.Unmap(), ByOperator, h.Now())
	h.Log.Info("identity claim armed by an operator", "node", node.Name, "addr", a.Address.String(), "operator_addr", httpx.RemoteAddr(r).String())
	httpx.JSON(w, http.StatusOK, a)
}

// ArmAll arms the claim of every node of inv with an address that keep
// selects, from that address (the controller's start, nodes added).
func (s *Store) ArmAll(inv *inventory.Inventory, keep func(node string) bool, by string, now time.Time) {
	for _, n := range inv.Nodes {
		if n.Address.IsValid() && keep(n.Name) {
			s.Arm(n.Name, n.Address, by, now)
		}
	}
}
