// Package cni is `weft cni`, the CNI plugin (spec 1.1.0: ADD, DEL, CHECK,
// STATUS, GC, VERSION) that makes a container's interface a Weft
// endpoint. It owns nothing: the agent creates the endpoint through the
// vRouter and hands out its addresses; the plugin turns CNI's
// environment and configuration into a request over the agent's local API
// (agent/agentapi), and the answer into a CNI result or a spec-shaped
// error that says what to do.
//
// Which network a pod joins, first match wins:
//
//  1. CNI_ARGS weft.network=NAME (what a runtime or a test asks for);
//  2. the pod's annotation weft.net/network (with the pod watch: later);
//  3. its namespace's label weft.net/network (with the pod watch: later);
//  4. the conflist's "network", the cluster's default network.
package cni
