package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/atomicfile"
)

// The CNI attachments and the addresses they hold: the IPAM. An address
// is in use while an attachment holds it or any endpoint of the node
// (static or runtime) has it, and every search starts after the last
// address handed out in that subnet, so a released address is the last
// to come back. The records are kept in the state file when the agent
// has a state directory (written whole and renamed into place); a
// diskless node rebuilds them from the vRouter's ports, whose names carry
// the container ID and interface (attachmentName), and the search then
// starts after the highest address in use.

// attachmentsFile is the state file's name in the state directory.
const attachmentsFile = "attachments.json"

// attachmentsVersion is the state file's format.
const attachmentsVersion = 1

// attachment is one CNI attachment: one endpoint.
type attachment struct {
	ContainerID  string         `json:"containerID"`
	IfName       string         `json:"ifName"`
	Netns        string         `json:"netns"`
	Network      string         `json:"network"`
	PodNamespace string         `json:"podNamespace,omitempty"`
	PodName      string         `json:"podName,omitempty"`
	Addresses    []netip.Prefix `json:"addresses"` // IPv4 first
}

func (at attachment) name() string { return attachmentName(at.ContainerID, at.IfName) }

// endpoint is the attachment's endpoint.
func (at attachment) endpoint() LocalEndpoint {
	ep := LocalEndpoint{Name: at.name(), Network: at.Network, Netns: at.Netns, IfName: at.IfName}
	for _, a := range at.Addresses {
		if a.Addr().Is6() && ep.Address.IsValid() {
			ep.Address6 = a
		} else if !ep.Address.IsValid() {
			ep.Address = a
		}
	}
	return ep
}

// cniPrefix starts the name of every endpoint that is a CNI attachment.
const cniPrefix = "cni:"

// attachmentName is the endpoint name of a CNI attachment: neither a
// container ID (CNI: letters, digits, '_', '.', '-') nor an interface
// name (Linux) has a ':', so the name splits back (parseAttachmentName).
func attachmentName(containerID, ifName string) string {
	return cniPrefix + containerID + ":" + ifName
}

func parseAttachmentName(name string) (containerID, ifName string, ok bool) {
	rest, ok := strings.CutPrefix(name, cniPrefix)
	if !ok {
		return "", "", false
	}
	containerID, ifName, ok = strings.Cut(rest, ":")
	return containerID, ifName, ok && containerID != "" && ifName != ""
}

// attachments is the IPAM. Lock order: it may take declared's lock (to
// read the endpoints' addresses) while holding its own.
type attachments struct {
	path string // the state file; "" = none (a diskless node)
	log  *slog.Logger
	// saved is when the state file read at start was written (zero: none).
	saved time.Time

	mu     sync.Mutex
	byName map[string]attachment
	next   map[netip.Prefix]netip.Addr // per subnet, where the next search starts
}

type attachmentsDoc struct {
	Version     int                   `json:"version"`
	Attachments []attachment          `json:"attachments"`
	Next        map[string]netip.Addr `json:"next"`
}

// newAttachments reads the state file in stateDir ("" = no state
// directory). A damaged file is logged and set aside (renamed .bad):
// the attachments are then rebuilt from the vRouter as on a diskless node.
func newAttachments(stateDir string, log *slog.Logger) *attachments {
	at := &attachments{log: log, byName: map[string]attachment{}, next: map[netip.Prefix]netip.Addr{}}
	if stateDir == "" {
		return at
	}
	at.path = filepath.Join(stateDir, attachmentsFile)
	b, err := os.ReadFile(at.path)
	if errors.Is(err, os.ErrNotExist) {
		return at
	}
	var doc attachmentsDoc
	if fi, serr := os.Stat(at.path); err == nil && serr == nil {
		at.saved = fi.ModTime()
	}
	if err == nil {
		err = json.Unmarshal(b, &doc)
		if err == nil && doc.Version != attachmentsVersion {
			err = fmt.Errorf("version %d, want %d", doc.Version, attachmentsVersion)
		}
	}
	if err != nil {
		log.Error("attachments state unreadable; set aside, rebuilding from the vRouter", "file", at.path, "err", err)
		os.Rename(at.path, at.path+".bad")
		return at
	}
	for _, a := range doc.Attachments {
		at.byName[a.name()] = a
	}
	for s, a := range doc.Next {
		if p, err := netip.ParsePrefix(s); err == nil {
			at.next[p] = a
		}
	}
	return at
}

// adopt takes the CNI endpoints found in the vRouter that the state file
// lacks (a diskless node, or a lost file), and moves every subnet's
// search past the addresses in use. Of the recorded attachments the
// vRouter lacks, it returns those to declare again: when the vRouter
// started after the file was written, it lost them (it restarted while
// the agent was down). When it has run since before, its ports are the
// truth: the record is stale (a DEL the file missed, as when the agent
// ran for a while without its state directory) and is forgotten, so its
// address is free again rather than held by a pod that is gone.
// vrouterStarted is the vRouter's start (zero: unknown, as if it had
// just started).
func (at *attachments) adopt(eps []LocalEndpoint, vrouterStarted time.Time) []attachment {
	at.mu.Lock()
	defer at.mu.Unlock()
	present := map[string]bool{}
	for _, ep := range eps {
		present[ep.Name] = true
		cid, ifn, ok := parseAttachmentName(ep.Name)
		if !ok {
			continue
		}
		if _, known := at.byName[ep.Name]; known {
			continue
		}
		rec := attachment{ContainerID: cid, IfName: ifn, Netns: ep.Netns, Network: ep.Network, Addresses: ep.addresses()}
		at.byName[ep.Name] = rec
		at.log.Info("attachment rebuilt from the vRouter", "endpoint", ep.Name, "addresses", fmt.Sprint(rec.Addresses))
	}
	// The vRouter's start is in whole seconds: only one a second or more
	// before the file's write certainly ran when it was written.
	ranSince := !vrouterStarted.IsZero() && !at.saved.IsZero() && !vrouterStarted.Add(time.Second).After(at.saved)
	var missing []attachment
	for name, rec := range at.byName {
		if !present[name] {
			if ranSince {
				at.log.Warn("attachment forgotten: the vRouter, running since before the state was saved, has no port for it",
					"endpoint", name, "addresses", fmt.Sprint(rec.Addresses))
				delete(at.byName, name)
				continue
			}
			missing = append(missing, rec)
		}
		for _, a := range rec.Addresses {
			at.advanceLocked(a)
		}
	}
	if err := at.saveLocked(); err != nil {
		at.log.Error("attachments state", "err", err)
	}
	return missing
}

// advanceLocked moves the search of a's subnet past a if it is behind,
// so that a rebuilt cursor starts after the highest address in use.
func (at *attachments) advanceLocked(a netip.Prefix) {
	s := a.Masked()
	if cur, ok := at.next[s]; !ok || cur.Compare(a.Addr()) <= 0 {
		at.next[s] = a.Addr().Next()
	}
}

// get returns an attachment by endpoint name.
func (at *attachments) get(name string) (attachment, bool) {
	at.mu.Lock()
	defer at.mu.Unlock()
	a, ok := at.byName[name]
	return a, ok
}

// list returns the attachments by name.
func (at *attachments) list() []attachment {
	at.mu.Lock()
	defer at.mu.Unlock()
	out := make([]attachment, 0, len(at.byName))
	for _, a := range at.byName {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name() < out[j].name() })
	return out
}

// errExists refuses a second attachment of one container interface.
var errExists = errors.New("exists")

// assign gives rec one address from the first IPv4 and the first IPv6
// subnet of network n (whichever it has), records it and saves the file.
// inUse are the node's endpoints' addresses.
func (at *attachments) assign(rec attachment, n *config.VirtualNetwork, inUse map[netip.Addr]bool) (attachment, error) {
	at.mu.Lock()
	defer at.mu.Unlock()
	if _, ok := at.byName[rec.name()]; ok {
		return rec, errExists
	}
	for _, r := range at.byName {
		for _, a := range r.Addresses {
			inUse[a.Addr()] = true
		}
	}
	var v4, v6 netip.Prefix
	for _, s := range n.Subnets {
		switch {
		case s.Addr().Is4() && !v4.IsValid():
			v4 = s.Masked()
		case s.Addr().Is6() && !v6.IsValid():
			v6 = s.Masked()
		}
	}
	if !v4.IsValid() && !v6.IsValid() {
		return rec, fmt.Errorf("network %q has no subnets: give it subnets: in weft.yaml, pods take their addresses from them", n.Name)
	}
	rec.Addresses = nil
	for _, s := range []netip.Prefix{v4, v6} {
		if !s.IsValid() {
			continue
		}
		a, err := at.searchLocked(s, n, inUse)
		if err != nil {
			return rec, err
		}
		rec.Addresses = append(rec.Addresses, netip.PrefixFrom(a, s.Bits()))
		at.next[s] = a.Next()
	}
	at.byName[rec.name()] = rec
	if err := at.saveLocked(); err != nil {
		delete(at.byName, rec.name())
		return rec, err
	}
	return rec, nil
}

// maxSearch bounds one search: an IPv6 /64 is never walked whole.
const maxSearch = 1 << 16

// searchLocked finds the first free host address of s from its cursor,
// round the subnet: not the subnet's own address, not the gateway, not
// IPv4's broadcast, not in use.
func (at *attachments) searchLocked(s netip.Prefix, n *config.VirtualNetwork, inUse map[netip.Addr]bool) (netip.Addr, error) {
	bits := s.Addr().BitLen()
	if s.Bits() > bits-2 {
		return netip.Addr{}, fmt.Errorf("network %q: subnet %s is too small for pods (want at most /%d)", n.Name, s, bits-2)
	}
	first := s.Addr()
	size := new(big.Int).Lsh(big.NewInt(1), uint(bits-s.Bits()))
	tries := maxSearch
	if size.IsInt64() && size.Int64() < int64(tries) {
		tries = int(size.Int64())
	}
	gw, _ := endpointGateway(n, first.Next())
	a, ok := at.next[s]
	if !ok || !s.Contains(a) {
		a = first
	}
	for range tries {
		if a != first && a != gw && !inUse[a] && !(a.Is4() && !s.Contains(a.Next())) {
			return a, nil
		}
		if a = a.Next(); !s.Contains(a) {
			a = first
		}
	}
	return netip.Addr{}, fmt.Errorf("network %q: subnet %s has no free address (%d tried): add a subnet or remove pods", n.Name, s, tries)
}

// release forgets an attachment; false if there was none.
func (at *attachments) release(name string) (bool, error) {
	at.mu.Lock()
	defer at.mu.Unlock()
	if _, ok := at.byName[name]; !ok {
		return false, nil
	}
	delete(at.byName, name)
	return true, at.saveLocked()
}

// saveLocked writes the state file whole: a temporary file, synced, then
// renamed over the old one and the directory synced, so a crash leaves
// the old file or the new one, never a part.
func (at *attachments) saveLocked() error {
	if at.path == "" {
		return nil
	}
	doc := attachmentsDoc{Version: attachmentsVersion, Attachments: make([]attachment, 0, len(at.byName)), Next: map[string]netip.Addr{}}
	for _, a := range at.byName {
		doc.Attachments = append(doc.Attachments, a)
	}
	sort.Slice(doc.Attachments, func(i, j int) bool { return doc.Attachments[i].name() < doc.Attachments[j].name() })
	for s, a := range at.next {
		doc.Next[s.String()] = a
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("attachments state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(at.path), 0o700); err != nil {
		return fmt.Errorf("attachments state: %w", err)
	}
	if err := atomicfile.WriteFile(at.path, b, 0o600); err != nil {
		return fmt.Errorf("attachments state: %w", err)
	}
	return nil
}
