// Package agentapi is the contract of the agent's local API: the JSON
// documents served over HTTP on the agent's unix socket (mode 0600), their
// paths, and the client that `weft ctl`, PID 1, the test rigs and CNI use.
// It imports nothing of the agent, so a client links only this.
package agentapi

// DefaultSocket is where the agent serves its local API.
const DefaultSocket = "/run/weft/agent.sock"
