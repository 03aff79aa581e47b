// Package openstack joins a Weft node to an OpenStack cloud's networks:
// it authenticates to Keystone (one token, reused and renewed before it
// expires), reads the node's Neutron ports and attaches the node on each
// port's network as an endpoint, through the agent's local API.
//
// It runs inside `weft agent` when weft.yaml has join.openstack, and talks
// to the agent only through the Endpoints interface (which
// agentapi.Client implements): it is a client of the agent, like
// `weft ctl endpoints add`, never a part of its reconcile.
package openstack
