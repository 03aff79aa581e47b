// Package agent is the node agent: it turns the configuration, the node's
// endpoints and the routes learnt over BGP into vRouter state, and
// advertises this node's endpoints to the controllers.
//
// Desired state is a pure function of its inputs (Compute); the difference
// to what the vRouter has installed (read back with Dump) is applied as
// ordered, idempotent ops (MakePlan), reusing the IDs of objects that
// already exist. A restarted agent therefore changes nothing in the
// forwarding state it finds, and the vRouter keeps forwarding throughout.
package agent
