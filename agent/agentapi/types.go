package agentapi

import "time"

// The paths of the local API (Go 1.22 ServeMux patterns without the method).
const (
	PathStatus    = "/v1/status"
	PathPeers     = "/v1/peers"
	PathRoutes    = "/v1/routes"    // ?network=NAME narrows to one network
	PathEndpoints = "/v1/endpoints" // GET lists, POST adds, DELETE /v1/endpoints/NAME removes
	PathFlows     = "/v1/flows"     // the vRouter's FlowsReply
	PathCounters  = "/v1/counters"  // the vRouter's CountersReply
	PathProbe     = "/v1/probe"
	PathConfig    = "/v1/config" // the running weft.yaml (application/yaml)
	PathReload    = "/v1/config/reload"
	// PathAttachments are CNI's: POST attaches, GET lists,
	// GET and DELETE PathAttachments/CONTAINER/IFNAME read and detach one,
	// POST PathAttachmentsGC detaches all but the valid ones.
	PathAttachments   = "/v1/attachments"
	PathAttachmentsGC = "/v1/attachments-gc"
)

// ConfigErrorHeader carries, on GET /v1/config, why the last reload was
// refused (newlines replaced by "; ").
const ConfigErrorHeader = "X-Weft-Config-Error"

// Status is GET /v1/status.
type Status struct {
	Version   string   `json:"version"`
	Hostname  string   `json:"hostname"`
	RouterID  string   `json:"routerID"`
	Underlay  string   `json:"underlay"`
	Encaps    []string `json:"encaps"`
	Config    string   `json:"config"`
	ConfigErr string   `json:"configError,omitempty"`
	// LastGood is where weft init keeps the node's last good config:
	// "persistent: /dev/vdb1 (WEFT-STATE)" or "RAM only: lost at reboot";
	// empty on a host without weft init.
	LastGood string `json:"lastGood,omitempty"`
	// FastPath is the vRouter's in-kernel fast path: "" when not asked
	// for, "on", or "off: " and why.
	FastPath string `json:"fastPath,omitempty"`
	// FastPathNotes are what the vRouter found the kernel has and lacks
	// for the fast path, one finding a line.
	FastPathNotes []string  `json:"fastPathNotes,omitempty"`
	Synced        bool      `json:"synced"`
	Peers         int       `json:"peers"`
	PeersUp       int       `json:"peersUp"`
	Endpoints     int       `json:"endpoints"`
	Routes        int       `json:"routes"`
	Announced     int       `json:"announced"`
	Reconciles    uint64    `json:"reconciles"`
	LastRun       time.Time `json:"lastReconcile"`
	LastTook      string    `json:"lastReconcileTook"`
	LastErr       string    `json:"lastReconcileError,omitempty"`
	// NextHopWarnings: per peer, the received paths whose next hop is not
	// a tunnel endpoint (traffic to them is blackholed).
	NextHopWarnings []NextHopWarning `json:"nextHopWarnings,omitempty"`
	// VRouterReady says the vRouter answered the agent just now (its
	// Info call); VRouterError is why not. CNI's STATUS reads both.
	VRouterReady bool   `json:"vrouterReady"`
	VRouterError string `json:"vrouterError,omitempty"`
	// Refused are the vRouter ops it refused, held back and retried with
	// a growing delay; every other op is applied.
	Refused []Refusal `json:"refused,omitempty"`
	// Networks are, per network with a VRF on this node, the BGP paths it
	// imports, those that became a route, and the remote routes installed.
	Networks []NetworkRoutes `json:"networks,omitempty"`
	// LastConvergence is the last time a session brought in its whole
	// table; nil before the first.
	LastConvergence *Convergence `json:"lastConvergence,omitempty"`
	// HeapLive is the agent's Go heap still in use after the last
	// garbage collection (runtime/metrics /gc/heap/live:bytes): the
	// memory its state takes, without the garbage that waits for the
	// next collection (which the process's RSS includes).
	HeapLive uint64 `json:"heapLiveBytes"`
	// RouteTargets are the route targets whose routes this node asks for
	// (RFC 4684 memberships), when route target constraint is on.
	RouteTargets []string `json:"routeTargets,omitempty"`
}

// NetworkRoutes counts one network's routes along the pipeline: Received,
// the best paths from BGP its VRF imports (by route target, or the origin
// VN of a network joined to it); Accepted, those with an encapsulation
// both ends have, which became routes; Installed, the remote routes (a
// tunnel or an ECMP group of tunnels) its VRF has in the vRouter. Several
// paths to one prefix make one installed route.
type NetworkRoutes struct {
	Network   string `json:"network"`
	Received  int    `json:"received"`
	Accepted  int    `json:"accepted"`
	Installed int    `json:"installed"`
}

// Convergence is a full convergence: from a session's Established to the
// end of the first reconcile that read the RIB after the peer's
// End-of-RIB and applied every op, so that every route received by then
// is installed in the vRouter.
type Convergence struct {
	Peer        string    `json:"peer"`
	Established time.Time `json:"established"`
	EndOfRIB    string    `json:"endOfRIB"` // after Established
	Took        string    `json:"took"`     // Established to installed
	Seconds     float64   `json:"seconds"`  // Took, for scripts
}

// NextHopWarning counts a peer's paths whose next hop is not a tunnel
// endpoint (a route server's own address, say), with one as an example.
type NextHopWarning struct {
	Peer    string `json:"peer"`
	Paths   int    `json:"paths"`
	Example string `json:"example"`
}

// Refusal is an op the vRouter refused (or that needs one it refused).
type Refusal struct {
	Op        string    `json:"op"`                 // "put_port 3"
	Endpoint  string    `json:"endpoint,omitempty"` // the endpoint it is for
	Error     string    `json:"error"`
	Attempts  int       `json:"attempts"`
	Since     time.Time `json:"since"`
	NextRetry time.Time `json:"nextRetry"`
}

// Peer is one entry of GET /v1/peers.
type Peer struct {
	Address          string `json:"address"`
	ASN              uint32 `json:"asn"`
	State            string `json:"state"`
	Uptime           string `json:"uptime,omitempty"`
	Flaps            uint32 `json:"flaps"`
	LastError        string `json:"lastError,omitempty"`
	MalformedUpdates uint64 `json:"malformedUpdates"`
	// RFC 7606's actions on the malformed UPDATEs: prefixes treated as
	// withdrawn, attributes discarded, sessions reset.
	TreatAsWithdraw   uint64   `json:"treatAsWithdraw"`
	AttributeDiscards uint64   `json:"attributeDiscards"`
	MalformedResets   uint64   `json:"malformedResets"`
	Families          []string `json:"families"` // "l3vpn-ipv4-unicast 3/3/2" received/accepted/advertised
}

// Route is one entry of GET /v1/routes: what the vRouter has installed.
type Route struct {
	Network string `json:"network"`
	Prefix  string `json:"prefix"`
	Via     string `json:"via"` // "local pg1", "mplsoudp 192.0.2.2 label 17", "ecmp [...]"
}

// Endpoint is one entry of GET /v1/endpoints, and the body of POST.
type Endpoint struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	Address string `json:"address"`
	Netns   string `json:"netns,omitempty"`
	MAC     string `json:"mac,omitempty"`
	Label   uint32 `json:"label,omitempty"`
	Source  string `json:"source,omitempty"` // "config", "api" or "cni"
	Port    uint32 `json:"port,omitempty"`
	// AllowedSources are further prefixes the endpoint may send from
	// (the vRouter drops anything else as spoofed) and that are routed
	// to it: Neutron's allowed address pairs.
	AllowedSources []string `json:"allowedSources,omitempty"`
	// NeutronPort is the ID of the Neutron port the endpoint came from
	// (join.openstack); bootstrap/openstack owns the endpoints that have one.
	NeutronPort string `json:"neutronPort,omitempty"`
	// Device is the host netdev the endpoint is (a VM's libvirt tap, on
	// a Nova compute host): the vRouter attaches to it with AF_PACKET
	// and creates nothing; Netns is then empty. "" = a TAP the vRouter
	// creates in Netns.
	Device string `json:"device,omitempty"`
	// Address6 is a CNI attachment's IPv6 address beside its IPv4 Address.
	Address6 string `json:"address6,omitempty"`
	// The CNI attachment this endpoint is, if it is one.
	ContainerID  string `json:"containerID,omitempty"`
	IfName       string `json:"ifName,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
}

// AttachRequest (POST /v1/attachments) is CNI's ADD: one endpoint for the
// container's interface IfName in the namespace Netns (a path), on
// Network, with addresses from the network's subnets.
type AttachRequest struct {
	ContainerID  string `json:"containerID"`
	IfName       string `json:"ifName"`
	Netns        string `json:"netns"`
	Network      string `json:"network"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
}

// Attachment is a CNI attachment as the agent holds it: the answer to an
// attach, and an entry of GET /v1/attachments.
type Attachment struct {
	ContainerID  string `json:"containerID"`
	IfName       string `json:"ifName"`
	Netns        string `json:"netns"`
	Network      string `json:"network"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	// Endpoint is the endpoint's name (weft ctl endpoints).
	Endpoint string `json:"endpoint"`
	// Addresses are CIDRs, IPv4 first; Gateways the one each routes
	// through (same order).
	Addresses []string `json:"addresses"`
	Gateways  []string `json:"gateways"`
	// Installed says the vRouter has the interface's port (an attachment
	// kept in the agent's state after a restart may not).
	Installed bool `json:"installed"`
}

// AttachmentKey names an attachment as CNI does.
type AttachmentKey struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// GCRequest (POST /v1/attachments-gc): detach every attachment not in Valid.
type GCRequest struct {
	Valid []AttachmentKey `json:"valid"`
}

// GCReply lists what the GC detached.
type GCReply struct {
	Removed []AttachmentKey `json:"removed"`
}

// ProbeRequest (POST /v1/probe) asks the agent whether an endpoint reaches
// an address: an operator's (or the demo's) live check through the
// overlay, run inside the endpoint's network namespace exactly as the
// workload would send.
//
// A probe is bounded: Count×TimeoutMillis at most MaxProbeDuration, and at
// most MaxRunningProbes at once per agent (one more is refused with 429
// Too Many Requests). A probe ends, its socket closed, as soon as its
// request does: a client that gives up leaves nothing running.
type ProbeRequest struct {
	Endpoint      string `json:"endpoint"`
	To            string `json:"to"`
	Kind          string `json:"kind"` // "icmp" (default) or "tcp"
	Port          int    `json:"port,omitempty"`
	Count         int    `json:"count,omitempty"`         // ICMP echoes, 1..MaxProbeCount; 0 = 3
	TimeoutMillis int    `json:"timeoutMillis,omitempty"` // per echo or connect; 0 = 2000
}

// The bounds of a probe, per agent (so per node).
const (
	// MaxProbeDuration bounds Count×TimeoutMillis: the longest a probe
	// runs. It stays below the client's wait (clientTimeout), so a probe
	// always answers before its caller gives up.
	MaxProbeDuration = 10 * time.Second
	// MaxProbeCount bounds Count.
	MaxProbeCount = 100
	// MaxRunningProbes is how many probes an agent runs at once.
	MaxRunningProbes = 8
)

// ProbeResult is what the probe saw.
type ProbeResult struct {
	OK        bool   `json:"ok"`
	Detail    string `json:"detail"`
	RTTMicros int64  `json:"rttMicros,omitempty"`
}

// Error is the body of every reply that is not 200 OK.
type Error struct {
	Error string `json:"error"`
}

// StatusError is a reply that was not 200 OK: its HTTP status (400: the
// request is wrong; 404: no such thing; 409: it exists already; 503: the
// vRouter did not take it) and the agent's message.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return "agent: " + e.Msg }
