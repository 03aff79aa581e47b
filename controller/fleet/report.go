package fleet

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"
	"github.com/weftnet/weft/controller/httpx"
	"github.com/weftnet/weft/controller/inventory"
)

// Reports serves POST /weft/v1/nodes/{name}/report: a node's
// fleetapi.Report, recorded in State.
type Reports struct {
	Inv   func() *inventory.Inventory
	State *State
	Log   *slog.Logger
	Now   func() time.Time
}

func (h *Reports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	inv := h.Inv()
	name := r.PathValue("name")
	node := inv.Node(name)
	if node == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no node %q in the inventory %s", name, inv.Path)
		return
	}
	rep, ok := httpx.Document(w, r, fleetapi.MaxReportBytes, "report", fleetapi.DecodeReport)
	if !ok {
		return
	}
	macs, err := fleetapi.ParseMACHeader(r.Header)
	if err != nil {
		httpx.Plain(w, http.StatusBadRequest, "weft controller: %v", err)
		return
	}
	addr := httpx.RemoteAddr(r)
	if len(macs) > 0 {
		// MACs are unambiguous (an address may be a NAT's): a report that
		// names another node's NICs is a mix-up worth refusing.
		if other, err := inv.Match(macs, netip.Addr{}); err == nil && other.Name != node.Name {
			httpx.Plain(w, http.StatusConflict, "weft controller: a report for node %s, but %s %s are node %s's in the inventory %s", node.Name, fleetapi.MACHeader, fleetapi.FormatMACHeader(macs), other.Name, inv.Path)
			return
		}
	}
	prev := h.State.LastStep(node.Name)
	h.State.Report(node.Name, rep, addr, h.Now())
	if cur := summary(rep); cur != prev {
		h.Log.Info("node report", "node", node.Name, "addr", addr.String(), "last_step", cur)
	} else {
		h.Log.Debug("node report", "node", node.Name, "addr", addr.String(), "last_step", cur)
	}
	w.WriteHeader(http.StatusNoContent)
}
