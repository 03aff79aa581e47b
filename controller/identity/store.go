// Package identity is who a node is, to the controller: the claim that
// mints a node's credential (armed by a boot's DHCP lease, the
// controller's start or an operator, accepted once per arming and only
// from the armed address), the store of credentials, and the middleware
// that resolves a request's node from its credential. The X-Weft-MAC
// header alone selects no node any more: anyone can write it.
package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"
)

// What arms a claim (fleetapi.Arming.By).
const (
	ByDHCP     = "dhcp"     // the controller's DHCP server leased the node an address for a boot
	ByStart    = "start"    // the controller started, or the node joined the inventory
	ByOperator = "operator" // POST /weft/v1/nodes/{name}/arm
)

// A credential is "<id>.<secret>": id (8 random bytes, hex) finds the
// entry, the secret (32 random bytes, base64url) is compared in constant
// time against the SHA-256 the store keeps (it never keeps the secret).
const (
	idBytes     = 8
	secretBytes = 32
)

type entry struct {
	node   string // as the inventory writes it
	sum    [sha256.Size]byte
	issued time.Time
	from   netip.Addr
}

// Store holds the nodes' credentials and armed claims, in memory: a
// restarted controller forgets them, arms every node with an inventory
// address again, and the nodes claim anew (their 401 says so). Safe for
// concurrent use.
type Store struct {
	mu     sync.Mutex
	byID   map[string]*entry
	idOf   map[string]string // node key -> credential id
	arms   map[string]fleetapi.Arming
	claims map[string]time.Time // node key -> when last claimed (since its last arming or ever)
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{byID: map[string]*entry{}, idOf: map[string]string{}, arms: map[string]fleetapi.Arming{}, claims: map[string]time.Time{}}
}

func key(node string) string { return strings.ToLower(node) }

// Arm arms node's next claim, from addr.
func (s *Store) Arm(node string, addr netip.Addr, by string, now time.Time) fleetapi.Arming {
	a := fleetapi.Arming{Node: node, Address: addr, By: by, Time: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arms[key(node)] = a
	return a
}

// Armed returns node's armed claim, if any.
func (s *Store) Armed(node string) (fleetapi.Arming, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.arms[key(node)]
	return a, ok
}

// Refusal is a refused claim: Reason says why, Twice whether the node's
// identity was claimed already since its last arming.
type Refusal struct {
	Node   string
	Twice  bool
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// Claim accepts node's claim from from when it is armed for that address,
// disarms it and returns the node's new credential (any older one stops
// working). Otherwise it returns a *Refusal; a claim from another
// address leaves the arming in place (the node itself may still come).
func (s *Store) Claim(node string, from netip.Addr, now time.Time) (string, fleetapi.Arming, error) {
	k := key(node)
	s.mu.Lock()
	defer s.mu.Unlock()
	a, armed := s.arms[k]
	if !armed {
		if last, ok := s.claims[k]; ok {
			return "", a, &Refusal{Node: node, Twice: true, Reason: fmt.Sprintf(
				"node %s's identity was claimed already, at %s, and no boot (a DHCP lease from this controller) or operator (weft ctl fleet arm %s) armed a new claim since: refused, and shown in the fleet view",
				node, last.Format(time.RFC3339), node)}
		}
		return "", a, &Refusal{Node: node, Reason: fmt.Sprintf(
			"node %s's claim is not armed: it is armed by a boot (a DHCP lease from this controller), the controller's start (for a node with an inventory address), or an operator (weft ctl fleet arm %s)", node, node)}
	}
	if a.Address != from {
		return "", a, &Refusal{Node: node, Reason: fmt.Sprintf("node %s's claim is armed for address %s (%s, %s), not for %s",
			node, a.Address, a.By, a.Time.Format(time.RFC3339), from)}
	}
	cred, e, err := mint(node, from, now)
	if err != nil {
		return "", a, err
	}
	id, _, _ := strings.Cut(cred, ".")
	if old, ok := s.idOf[k]; ok {
		delete(s.byID, old)
	}
	s.byID[id] = e
	s.idOf[k] = id
	delete(s.arms, k)
	s.claims[k] = now
	return cred, a, nil
}

func mint(node string, from netip.Addr, now time.Time) (string, *entry, error) {
	var b [idBytes + secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("minting a credential: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b[idBytes:])
	e := &entry{node: node, sum: sha256.Sum256([]byte(secret)), issued: now, from: from}
	return hex.EncodeToString(b[:idBytes]) + "." + secret, e, nil
}

// Node returns the node whose credential cred is.
func (s *Store) Node(cred string) (string, bool) {
	id, secret, ok := strings.Cut(cred, ".")
	if !ok || len(id) != 2*idBytes || secret == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	e := s.byID[id]
	s.mu.Unlock()
	if e == nil || subtle.ConstantTimeCompare(sum[:], e.sum[:]) != 1 {
		return "", false
	}
	return e.node, true
}

// Forget drops the credentials and armings of nodes keep says are gone
// (removed from the inventory).
func (s *Store) Forget(keep func(node string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.byID {
		if !keep(e.node) {
			delete(s.byID, id)
			delete(s.idOf, key(e.node))
		}
	}
	for k, a := range s.arms {
		if !keep(a.Node) {
			delete(s.arms, k)
		}
	}
	for k := range s.claims {
		if !keep(k) {
			delete(s.claims, k)
		}
	}
}
