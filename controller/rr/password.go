package rr

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/weftnet/weft/internal/bgpguard"
)

// A password per node: derived from the reflector's secret and the
// node's name, keyed on the listeners for the node's address, and what
// that makes of the sessions.

// SecretFile is the reflector's secret in the controller's state
// directory: each node's BGP password is derived from it and the node's
// name (NodePassword). Replacing it changes every node's password.
const SecretFile = "bgp.secret"

// LoadSecret reads the reflector's secret from dir, creating it (32
// random bytes, hex, 0600) when it does not exist; created says it was
// made now. A damaged file is an error naming it, never replaced: every
// node's password would change.
func LoadSecret(dir string) (secret []byte, created bool, err error) {
	path := filepath.Join(dir, SecretFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var b [32]byte
		rand.Read(b[:])
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("reflector secret: %w", err)
		}
		if _, err := f.WriteString(hex.EncodeToString(b[:]) + "\n"); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("reflector secret %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("reflector secret %s: %w", path, err)
		}
		return b[:], true, nil
	case err != nil:
		return nil, false, fmt.Errorf("reflector secret: %w", err)
	}
	secret, err = hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(secret) < 16 {
		return nil, false, fmt.Errorf("reflector secret %s: want at least 16 bytes in hex on one line (delete the file to have a new one made at start; every node's BGP password then changes)", path)
	}
	return secret, false, nil
}

// NodePassword is node's TCP MD5 password for the reflector:
// HMAC-SHA256 of its name under the secret, 32 characters (192 bits) of
// URL-safe base64, well inside TCP MD5's 80 and plain in YAML. A node
// learns only its own: the secret stays in the controller.
func NodePassword(secret []byte, node string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("weft reflector password\x00" + node))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// acceptedLocked says whether a session from a is relayed. With
// per-node passwords, a must be a known node's (the kernel has checked
// its password: the listener holds its key), within Clients when these
// are given; or, with the fleet password, within Clients. Without, a
// must be within Clients.
func (r *Reflector) acceptedLocked(a netip.Addr) bool {
	inClients := slices.ContainsFunc(r.clients, func(p netip.Prefix) bool { return p.Contains(a) })
	if r.set.Secret == nil {
		return inClients
	}
	_, known := r.keys[a]
	return (known && (inClients || !r.set.Fixed)) || (r.set.FleetPassword && inClients)
}

// prefixPassword is the key set for the client prefixes: the fleet's
// password, unless each node has its own and the fleet's is not asked
// for.
func (r *Reflector) prefixPassword() string {
	if r.set.Secret != nil && !r.set.FleetPassword {
		return ""
	}
	return r.set.Password
}

// SetNodes sets each node's own password (NodePassword) on the listeners
// for the address it is known by (nodes: address to name); an address no
// longer given loses its key, and an address whose node changed its
// session. Nothing without a Secret.
func (r *Reflector) SetNodes(ctx context.Context, nodes map[netip.Addr]string) error {
	if r.set.Secret == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	changed := map[netip.Addr]bool{}
	for a, name := range nodes {
		pw := NodePassword(r.set.Secret, name)
		old, had := r.keys[a]
		if old == pw {
			continue
		}
		if err := r.listenerMD5(netip.PrefixFrom(a, a.BitLen()), pw); err != nil {
			errs = append(errs, fmt.Errorf("reflector: the password of node %s (%v): %w", name, a, err))
			continue
		}
		r.keys[a] = pw
		changed[a] = had
	}
	for a := range r.keys {
		if _, ok := nodes[a]; ok {
			continue
		}
		if err := r.listenerMD5(netip.PrefixFrom(a, a.BitLen()), ""); err != nil {
			errs = append(errs, fmt.Errorf("reflector: removing the password for %v: %w", a, err))
		}
		delete(r.keys, a)
	}
	errs = append(errs, r.dropLocked(ctx, changed)...)
	return errors.Join(errs...)
}

// dropLocked closes the sessions no longer accepted, and those of the
// addresses marked true in rekeyed (another node's now).
func (r *Reflector) dropLocked(ctx context.Context, rekeyed map[netip.Addr]bool) []error {
	var drop []netip.Addr
	r.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		lo := peerAddr(p)
		a := r.realLocked(lo)
		if a.IsValid() && (!r.acceptedLocked(a) || rekeyed[a]) {
			drop = append(drop, lo)
		}
	})
	var errs []error
	for _, lo := range drop {
		a := r.realLocked(lo)
		r.log.Info("reflector: closing the session of a node no longer accepted", "peer", a.String())
		if err := r.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: lo.String()}); err != nil {
			errs = append(errs, fmt.Errorf("reflector: closing the session with %v: %w", a, err))
		}
	}
	return errs
}

// listenerMD5 sets (or, with an empty password, removes) the key for a
// prefix of nodes on every listener.
func (r *Reflector) listenerMD5(p netip.Prefix, password string) error {
	for _, ln := range r.listeners {
		if err := bgpguard.ListenerMD5(ln, p, password); err != nil {
			return fmt.Errorf("%w (Go >= 1.24 listens with MPTCP, which has no TCP MD5: build with //go:debug multipathtcp=0)", err)
		}
	}
	return nil
}
