// Package metadata is the controller's metadata service: each node's
// configuration in the OpenStack layout (openstack/latest/...), the node
// the one whose credential the request carries (identity.Require runs
// first): a MAC or an address names no node here.
package metadata

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/weftnet/weft/controller/fleet"
	"github.com/weftnet/weft/controller/httpx"
	"github.com/weftnet/weft/controller/identity"
	"github.com/weftnet/weft/controller/inventory"
)

// The files of openstack/latest/.
const (
	metaDataFile    = "meta_data.json"
	networkDataFile = "network_data.json"
	userDataFile    = "user_data"
)

// Handler serves /openstack/ for the inventory's nodes, recording their
// meta_data fetches in State.
type Handler struct {
	Inv   func() *inventory.Inventory
	State *fleet.State
	Log   *slog.Logger
	Now   func() time.Time
	// UserData renders a node's user_data; nil = the fleet's weft.yaml
	// as written (inv.UserData) for every node.
	UserData func(inv *inventory.Inventory, node *inventory.Node) ([]byte, error)
}

func (s *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpx.Plain(w, http.StatusMethodNotAllowed, "weft controller: %s is not allowed here; the metadata is read with GET", r.Method)
		return
	}
	path := r.URL.Path
	if path == "/openstack/" || path == "/openstack" {
		// Only "latest": every document is served at its newest version.
		httpx.Send(w, "text/plain; charset=utf-8", []byte("latest"))
		return
	}
	file, ok := strings.CutPrefix(path, "/openstack/latest")
	if !ok {
		httpx.Plain(w, http.StatusNotFound, "weft controller: %s is not served: only openstack/latest/", path)
		return
	}
	file = strings.TrimPrefix(file, "/")
	switch file {
	case "", metaDataFile, networkDataFile, userDataFile:
	default:
		httpx.Plain(w, http.StatusNotFound, "weft controller: openstack/latest/%s is not served: only %s, %s and %s", file, metaDataFile, networkDataFile, userDataFile)
		return
	}
	inv := s.Inv()
	addr := httpx.RemoteAddr(r)
	name := identity.NodeOf(r)
	if name == "" {
		// Only a wiring mistake gets here: identity.Require runs first.
		httpx.Plain(w, http.StatusUnauthorized, "weft controller: no node credential")
		return
	}
	node := inv.Node(name)
	if node == nil {
		httpx.Plain(w, http.StatusNotFound, "weft controller: no node %q in the inventory %s", name, inv.Path)
		return
	}
	switch file {
	case "":
		// Nova's listing: one file a line, only those the node has.
		list := []string{metaDataFile, userDataFile}
		if node.NetworkData != nil {
			list = append(list, networkDataFile)
		}
		httpx.Send(w, "text/plain; charset=utf-8", []byte(strings.Join(list, "\n")))
	case metaDataFile:
		s.State.Fetched(node.Name, addr, s.Now())
		s.Log.Info("metadata served", "node", node.Name, "file", file, "addr", addr.String())
		httpx.Send(w, "application/json", node.MetaData)
	case networkDataFile:
		if node.NetworkData == nil {
			httpx.Plain(w, http.StatusNotFound, "weft controller: node %s has no networkData in the inventory %s", node.Name, inv.Path)
			return
		}
		s.Log.Debug("metadata served", "node", node.Name, "file", file, "addr", addr.String())
		httpx.Send(w, "application/json", node.NetworkData)
	case userDataFile:
		s.Log.Debug("metadata served", "node", node.Name, "file", file, "addr", addr.String())
		ud := inv.UserData
		if s.UserData != nil {
			b, err := s.UserData(inv, node)
			if err != nil {
				s.Log.Error("user_data of a node", "node", node.Name, "err", err)
				httpx.Plain(w, http.StatusInternalServerError, "weft controller: the user_data of node %s: %v", node.Name, err)
				return
			}
			ud = b
		}
		ct := "text/plain; charset=utf-8"
		if len(ud) > 1 && ud[0] == 0x1f && ud[1] == 0x8b {
			ct = "application/octet-stream" // gzip-compressed, as cloud-init allows
		}
		httpx.Send(w, ct, ud)
	}
}
