// Package fleetapi is the contract between `weft controller` and its
// clients: the documents nodes and operators exchange with it (a node's
// Report, the tasks its agent long-polls and the ProbeResult it posts, an
// operator's ProbeRequest and the Probe it reads, the Fleet view), the
// X-Weft-MAC header a node names its NICs in, and the Client that speaks
// it. PID 1, `weft ctl` and the demo import this package, never the
// controller's internals; it imports nothing of the controller, the agent
// or init.
//
// The controller is reached over https, its CA pinned (Pin, weft.ca=;
// HTTPClient); operators send their token (Client.Token) to the routes
// marked *, and every POST is JSON.
//
// The paths, under the controller's base URL:
//
//	POST /weft/v1/nodes/claim                      {} and X-Weft-MAC; 200 and a Claim: the node's credential
//	POST /weft/v1/nodes/{name}/arm                 an ArmRequest (operator); 200 and the Arming
//	POST /weft/v1/nodes/{name}/report              a Report (JSON); 204 on success
//	GET  /weft/v1/nodes/{name}/tasks[?wait=25s]    Tasks: the node's probes to run (a long poll)
//	POST /weft/v1/probes                         * a ProbeRequest; 201 and the Probe, pending
//	GET  /weft/v1/probes                         * ProbeList: the recent probes, newest first
//	GET  /weft/v1/probes/{id}[?wait=25s]         * the Probe; with wait, once it is final or the wait ends
//	POST /weft/v1/probes/{id}/result               a ProbeResult (JSON); 204 on success
//	GET  /weft/v1/fleet                          * the Fleet (JSON)
//
// A node's requests (the reports, tasks and probe results, and the
// metadata under /openstack/latest/) carry its credential (Authorization:
// Bearer, see Claimer) and are accepted only for that node: 401 without
// one, 403 with another node's.
package fleetapi
