package controller

import (
	"context"
	"net/netip"
	"path/filepath"

	"github.com/weftnet/weft/controller/inventory"
	"github.com/weftnet/weft/controller/rr"
)

// The embedded reflector's per-node passwords: derived from the
// reflector's secret and the node's name, served only in that node's
// user_data, and keyed on the reflector's listeners for the addresses the
// node is known by (its inventory address, the address the controller's
// DHCP leased it).

// secretDir is where the reflector's secret (rr.SecretFile) is kept: the
// controller's state directory, beside its CA and the operator token.
func (s *Server) secretDir() string { return s.opt.State }

// perNodePasswords gives set a secret, so that each node has a password
// of its own, when the fleet's weft.yaml has an entry for the reflector
// (nodes without one do not dial it, and nothing would carry them a
// password).
func (s *Server) perNodePasswords(set *rr.Settings) error {
	if !set.Dialled.IsValid() {
		return nil
	}
	secret, created, err := rr.LoadSecret(s.secretDir())
	if err != nil {
		return err
	}
	if created {
		s.log.Info("reflector: created the secret the nodes' BGP passwords are derived from", "file", filepath.Join(s.secretDir(), rr.SecretFile))
	}
	set.Secret = secret
	return nil
}

// userData renders a node's user_data: the fleet's weft.yaml with the
// node's own password for the reflector. Nil without per-node passwords.
func (s *Server) userData() func(inv *inventory.Inventory, node *inventory.Node) ([]byte, error) {
	if s.rrSet == nil || s.rrSet.Secret == nil {
		return nil
	}
	dialled, secret := s.rrSet.Dialled, s.rrSet.Secret
	return func(inv *inventory.Inventory, node *inventory.Node) ([]byte, error) {
		return inv.UserDataWithPassword(dialled, rr.NodePassword(secret, node.Name))
	}
}

// leased records the address the controller's DHCP gave a node, and keys
// its password there.
func (s *Server) leased(node string, addr netip.Addr) {
	s.mu.Lock()
	if s.leases == nil {
		s.leases = map[string]netip.Addr{}
	}
	s.leases[node] = addr
	s.mu.Unlock()
	s.keyNodes()
}

// keyNodes sets the running reflector's per-node passwords for the
// addresses the inventory's nodes are known by now.
func (s *Server) keyNodes() {
	inv := s.inv.Load()
	nodes := map[netip.Addr]string{}
	s.mu.Lock()
	refl := s.rr
	for name, a := range s.leases {
		if inv.Node(name) != nil {
			nodes[a] = name
		}
	}
	s.mu.Unlock()
	if refl == nil {
		return
	}
	for _, n := range inv.Nodes {
		if n.Address.IsValid() {
			nodes[n.Address.Unmap()] = n.Name // the inventory's word wins
		}
	}
	if err := refl.SetNodes(context.Background(), nodes); err != nil {
		s.log.Error("reflector: setting the nodes' passwords", "err", err)
	}
}
