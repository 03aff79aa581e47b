package bgp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Defaults where a Config or Peer field is zero.
const (
	DefaultHoldTime     = 90 * time.Second
	DefaultConnectRetry = 5 * time.Second // GoBGP's own 120 s leaves a node without routes for minutes
	DefaultRestartTime  = 120 * time.Second
	// selectionDeferral bounds how long a restarting speaker waits for
	// its peers' End-of-RIB before it sends its own routes (RFC 4724
	// 4.1); peers keep our stale routes meanwhile.
	selectionDeferral = 30 * time.Second
)

// TunnelEncapMode is how Route.Encaps becomes the Tunnel Encapsulation
// attribute.
type TunnelEncapMode int

const (
	// TunnelEncapFirst sends one TLV, for the most preferred
	// encapsulation. FRR 8.4 reads only the first TLV of the attribute
	// and misparses the rest as sub-TLVs: depending on the bytes it
	// keeps garbage or resets the session (NOTIFICATION 3/9), so more
	// than one TLV is not safe where FRR may be on the path. The
	// extended communities still carry every encapsulation, but
	// reflectors may reorder them (FRR sorts them).
	TunnelEncapFirst TunnelEncapMode = iota
	// TunnelEncapAll sends one TLV per encapsulation, in priority order:
	// the whole order reaches receivers through gobgpd and BIRD.
	TunnelEncapAll
	// TunnelEncapNone sends no attribute: communities only.
	TunnelEncapNone
)

// Peer is one BGP neighbour: a route reflector, a gateway router or a
// Contrail control node.
type Peer struct {
	Address netip.Addr
	Port    int    // 0 = 179
	ASN     uint32 // 0 = Config.ASN (iBGP)
	// LocalAddress is the session's source address; zero = the kernel's
	// choice. A connection the peer opens must arrive on it. Set it for
	// eBGP peers: it is the next hop GoBGP puts on routes it passes on to
	// them (unset, GoBGP only knows the guard's loopback address, see
	// relay.go).
	LocalAddress netip.Addr
	// Password enables TCP MD5 (RFC 2385) on the session, both on the
	// connections we open and on the listener.
	Password string
	// Timers, rounded up to whole seconds: 0 = DefaultHoldTime, hold/3,
	// DefaultConnectRetry.
	HoldTime, Keepalive, ConnectRetry time.Duration
	// Families negotiated with the peer; empty = AllFamilies.
	Families []Family
	// Passive: never connect, wait for the peer to.
	Passive bool
}

// Config is what Start needs.
type Config struct {
	RouterID netip.Addr // BGP identifier, IPv4
	ASN      uint32
	// Hostname goes in the hostname capability of the OPENs (peers show
	// it); "" = the machine's.
	Hostname string
	// ListenPort: 0 = 179, -1 = do not listen. The speaker listens so
	// that a controller can dial in.
	ListenPort int
	// ListenAddresses; empty = all (0.0.0.0 and ::).
	ListenAddresses []string
	Peers           []Peer
	// GracefulRestart (RFC 4724) makes peers keep our routes, marked
	// stale, for RestartTime (0 = DefaultRestartTime) when the session
	// drops without a NOTIFICATION; Stop sends one (Cease), Abandon and
	// a crash do not.
	GracefulRestart bool
	RestartTime     time.Duration
	// Restarting: this start follows an unclean exit. The OPEN carries
	// the restart bit so that peers keep our stale routes until we have
	// re-announced and sent End-of-RIB; put the routes to re-announce in
	// Routes, so that they go out before the End-of-RIB.
	Restarting bool
	// Routes are announced before any session comes up.
	Routes []Route
	// TunnelEncap chooses how much of Route.Encaps goes into the RFC 9012
	// Tunnel Encapsulation attribute (the extended communities always
	// carry them all).
	TunnelEncap TunnelEncapMode
	// RouteTargetConstraint offers every peer the rtc family (RFC 4684,
	// rtc.go); SetImportTargets then says which route targets the node
	// wants routes of.
	RouteTargetConstraint bool
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

func seconds(d time.Duration) uint64 { return uint64((d + time.Second - 1) / time.Second) }

// normalize validates c and fills in the defaults.
func (c Config) normalize() (Config, error) {
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		return c, fmt.Errorf("router ID %v: want a non-zero IPv4 address", c.RouterID)
	}
	if c.ASN == 0 {
		return c, fmt.Errorf("asn: 0 is reserved (RFC 7607)")
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		return c, fmt.Errorf("listen port %d: want -1 (none), 0 (179) or 1..65535", c.ListenPort)
	}
	for i, a := range c.ListenAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return c, fmt.Errorf("listen addresses[%d] %q: %w", i, a, err)
		}
	}
	if c.GracefulRestart {
		if c.RestartTime == 0 {
			c.RestartTime = DefaultRestartTime
		}
		if c.RestartTime < 0 || c.RestartTime > 4095*time.Second {
			return c, fmt.Errorf("restart time %v: want 1s..4095s (a 12-bit field)", c.RestartTime)
		}
	} else if c.Restarting {
		return c, fmt.Errorf("restarting: needs graceful restart")
	}
	peers, err := normalizePeers(c.Peers, c.ASN)
	if err != nil {
		return c, err
	}
	c.Peers = peers
	for i, r := range c.Routes {
		if err := r.Validate(); err != nil {
			return c, fmt.Errorf("routes[%d]: %w", i, err)
		}
	}
	if c.TunnelEncap < TunnelEncapFirst || c.TunnelEncap > TunnelEncapNone {
		return c, fmt.Errorf("tunnel encap: unknown mode %d", int(c.TunnelEncap))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func normalizePeers(in []Peer, localASN uint32) ([]Peer, error) {
	out := make([]Peer, len(in))
	seen := make(map[netip.Addr]int)
	for i, p := range in {
		p, err := p.normalize(localASN)
		if err != nil {
			return nil, fmt.Errorf("peers[%d]: %w", i, err)
		}
		if j, dup := seen[p.Address]; dup {
			return nil, fmt.Errorf("peers[%d] %v: same address as peers[%d]", i, p.Address, j)
		}
		seen[p.Address] = i
		out[i] = p
	}
	return out, nil
}

func (p Peer) normalize(localASN uint32) (Peer, error) {
	p.Address = p.Address.Unmap()
	if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() {
		return p, fmt.Errorf("address %v: want a unicast address", p.Address)
	}
	if p.Port < 0 || p.Port > 65535 {
		return p, fmt.Errorf("%v: port %d: want 0 (179) or 1..65535", p.Address, p.Port)
	}
	if p.ASN == 0 {
		p.ASN = localASN
	}
	if p.LocalAddress.IsValid() {
		p.LocalAddress = p.LocalAddress.Unmap()
		if p.LocalAddress.Is4() != p.Address.Is4() {
			return p, fmt.Errorf("%v: local address %v: not of the peer's address family", p.Address, p.LocalAddress)
		}
	}
	if p.HoldTime == 0 {
		p.HoldTime = DefaultHoldTime
	}
	if h := seconds(p.HoldTime); h < 3 || h > 65535 {
		return p, fmt.Errorf("%v: hold time %v: want 3s..65535s (RFC 4271)", p.Address, p.HoldTime)
	}
	if p.Keepalive == 0 {
		p.Keepalive = p.HoldTime / 3
	}
	if p.Keepalive < 0 || seconds(p.Keepalive) >= seconds(p.HoldTime) {
		return p, fmt.Errorf("%v: keepalive %v: must be below the hold time %v", p.Address, p.Keepalive, p.HoldTime)
	}
	if p.ConnectRetry == 0 {
		p.ConnectRetry = DefaultConnectRetry
	}
	if p.ConnectRetry < 0 || seconds(p.ConnectRetry) > 65535 {
		return p, fmt.Errorf("%v: connect retry %v: want 1s..65535s", p.Address, p.ConnectRetry)
	}
	if len(p.Families) == 0 {
		p.Families = AllFamilies
	}
	p.Families = slices.Clone(p.Families)
	for i, f := range p.Families {
		if !f.valid() {
			return p, fmt.Errorf("%v: families[%d]: unknown family %d", p.Address, i, int(f))
		}
		if slices.Index(p.Families, f) != i {
			return p, fmt.Errorf("%v: families[%d] %v: given twice", p.Address, i, f)
		}
	}
	return p, nil
}

func (p Peer) equal(o Peer) bool {
	return p.Address == o.Address && p.Port == o.Port && p.ASN == o.ASN &&
		p.LocalAddress == o.LocalAddress && p.Password == o.Password &&
		p.HoldTime == o.HoldTime && p.Keepalive == o.Keepalive && p.ConnectRetry == o.ConnectRetry &&
		slices.Equal(p.Families, o.Families) && p.Passive == o.Passive
}

// apiPeer is GoBGP's configuration of p, which GoBGP knows as lo (see
// relay.go): passive, no password, port or source address, since the
// relay holds the real connection; restarting sets the restart bit (only
// for the peers configured at Start: one added later never had our
// routes).
func (c *Config) apiPeer(p Peer, lo netip.Addr, restarting bool) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: lo.String(),
			PeerAsn:         p.ASN,
			AllowOwnAsn:     allowOwnASN, // looped paths are refused by policy (loop.go)
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      seconds(p.ConnectRetry),
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.Keepalive),
		}},
		Transport: &api.Transport{PassiveMode: true},
	}
	if p.LocalAddress.IsValid() {
		// GoBGP takes a configured local address as the session's (next
		// hop self toward eBGP peers, its loopback next-hop check,
		// ListPeer), though the relay's connection arrives on loopback;
		// a bind interface, which a passive neighbour never uses to
		// dial, stops it from refusing that connection for the
		// mismatch.
		ap.Transport.LocalAddress = p.LocalAddress.String()
		ap.Transport.BindInterface = "lo"
	}
	if c.GracefulRestart {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(seconds(c.RestartTime)),
			DeferralTime:    uint32(seconds(selectionDeferral)),
			LocalRestarting: restarting,
		}
	}
	for _, f := range p.Families {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f.apiFamily(), Enabled: true}}
		if c.GracefulRestart {
			// Per-family forwarding state: without it a peer drops the
			// family's routes at once instead of keeping them stale.
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		ap.AfiSafis = append(ap.AfiSafis, af)
	}
	if c.RouteTargetConstraint {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: rtcFamily, Enabled: true}}
		if c.GracefulRestart {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		ap.AfiSafis = append(ap.AfiSafis, af)
	}
	return ap
}
