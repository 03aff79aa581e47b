// Package controller is Weft's optional fleet controller, for fleets
// without OpenStack: `weft controller` serves each node its configuration in
// the OpenStack metadata format, collects the nodes' phone-home reports into
// a fleet view (JSON, a terminal table, a web page), and can run an embedded
// GoBGP route reflector that every node dials in to. On a PXE segment it
// also answers the nodes' DHCP (package dhcp) and serves them the boot
// files of `weft image build` with an iPXE script (package boot). Operators
// (and make demo) ask nodes for live reachability checks through it
// (package check; on the wire a check is a probe, see
// fleetapi.ProbeRequest).
//
// This package is the Server: it wires the parts together, reloads the
// inventory, and serves them on one HTTP mux. The parts: metadata (the
// /openstack/ documents), fleet (node state, reports, the web page),
// check, boot, dhcp, rr (the embedded route reflector).
//
// A PXE fleet points its nodes at it with weft.config=https://<controller>:<port>/
// weft.ca=sha256:<its CA's pin>, which the iPXE script it serves does
// itself. The listener serves everything over TLS (a certificate from the
// controller's own CA, package pki) and, over plain HTTP, only the boot
// files. The operator routes (marked * below) need the operator token or
// the unix socket (package access); every POST must be JSON. Everything it serves comes
// from one inventory file (see package inventory): the fleet's weft.yaml and
// a table of nodes, each recognised by its MACs or its address.
//
// # HTTP endpoints
//
//	GET  /openstack/                               "latest"
//	GET  /openstack/latest/                        the files this node has, one a line
//	GET  /openstack/latest/meta_data.json          uuid, name, hostname, launch_index
//	GET  /openstack/latest/network_data.json       the node's networkData; 404 when it has none
//	GET  /openstack/latest/user_data               the fleet weft.yaml as written; with the reflector, its entries carry the node's own password
//	POST /weft/v1/nodes/claim                      {} and X-Weft-MAC; a fleetapi.Claim: the node's credential
//	POST /weft/v1/nodes/{name}/arm                 a fleetapi.ArmRequest; re-arms the node's claim (operator)
//	POST /weft/v1/nodes/{name}/report              a fleetapi.Report (JSON); 204 on success
//	GET  /weft/v1/nodes/{name}/tasks[?wait=25s]    Tasks: the node's probes to run (a long poll)
//	POST /weft/v1/probes                         * a fleetapi.ProbeRequest; 201 and the fleetapi.Probe, pending
//	GET  /weft/v1/probes                         * ProbeList: the recent probes, newest first
//	GET  /weft/v1/probes/{id}[?wait=25s]         * the fleetapi.Probe; with wait, once it is final or the wait ends
//	POST /weft/v1/probes/{id}/result               a fleetapi.ProbeResult (JSON); 204 on success
//	GET  /weft/v1/fleet                          * the fleetapi.Fleet (JSON)
//	GET  /boot.ipxe                                the iPXE script (with boot files)
//	GET  /boot/vmlinuz, /boot/initramfs.cpio.gz    the boot files, with ranges (with boot files)
//	GET  /                                       * the fleet as a web page
//
// A node claims its identity first (package identity): the claim matches
// the node by the MACs of its X-Weft-MAC header (see fleetapi.MACHeader),
// else by its address, and is accepted once per arming (a boot's DHCP
// lease, the controller's start, an operator) from the armed address. A
// claim from a node the inventory does not know gets 404 with a
// plain-text body that says what was seen. The /openstack/latest/
// documents, reports, tasks and results are served for the node of the
// request's credential only (401 without one, 403 for another node's);
// the headers and the address select nothing. An X-Weft-MAC header that
// names another node's NICs is still refused (409). Errors are plain
// text, and name the field at fault.
//
// # DHCP
//
// The DHCP server answers only the inventory's nodes, matched by chaddr
// against their macs, with their inventory address; a node's prefix (or
// else the subnet of the interface's address holding the node's address)
// gives the subnet mask. Replies carry the server identifier, the lease
// time, the hostname (option 12, the node's name), the MTU (option 26,
// the node's underlay MTU by default) and a router (option 3) only when configured.
// iPXE clients (user class "iPXE") get the boot script's URL as their boot
// file (option 67). A MAC the inventory lacks gets no answer, and a log
// line naming it.
//
// The route reflector's sockets are opened by GoBGP on goroutines of its
// own: it listens in the network namespace the process runs in, and cannot
// be pinned to another. The DHCP server listens on its interface in that
// namespace too.
package controller
