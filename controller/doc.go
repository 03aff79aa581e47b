// Package controller is Weft's optional fleet controller, for fleets
// without OpenStack: `weft controller` serves each node its configuration in
// the OpenStack metadata format, collects the nodes' phone-home reports into
// a fleet view (JSON, a terminal table, a web page), and can run an embedded
// GoBGP route reflector that every node dials in to.
//
// A PXE fleet points its nodes at it with weft.config=http://<controller>/.
// Everything it serves comes from one inventory file (see ParseInventory):
// the fleet's weft.yaml and a table of nodes, each recognised by its MACs or
// its address.
//
// # HTTP endpoints
//
//	GET  /openstack/                               "latest"
//	GET  /openstack/latest/                        the files this node has, one a line
//	GET  /openstack/latest/meta_data.json          uuid, name, hostname, launch_index
//	GET  /openstack/latest/network_data.json       the node's networkData; 404 when it has none
//	GET  /openstack/latest/user_data               the fleet weft.yaml, byte for byte as written
//	POST /weft/v1/nodes/{name}/report              a Report (JSON); 204 on success
//	GET  /weft/v1/fleet                            the Fleet (JSON)
//	GET  /                                         the fleet as a web page
//
// The /openstack/ documents are per node: the node is the one whose MACs
// the request's X-Weft-MAC header names (see MACHeader), else the one whose
// address the request comes from. A request from a node the inventory does
// not know gets 404 with a plain-text body that says what was seen.
//
// The route reflector's sockets are opened by GoBGP on goroutines of its
// own: it listens in the network namespace the process runs in, and cannot
// be pinned to another.
package controller
