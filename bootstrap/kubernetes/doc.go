// Package kubernetes joins a Weft node to a Kubernetes cluster: it holds
// the node's credential for the API server and watches the node's pods,
// so that the agent can put each pod on its Weft network when CNI's ADD
// arrives.
//
// The credential is the node's own (CN system:node:<node>, group
// system:nodes): the Node authorizer then lets the agent list and watch
// only the pods bound to its node (spec.nodeName=<node>, enforced by the
// API server, not by a filter here). It comes from one of:
//   - join.kubernetes.kubeconfig: an ordinary node, whose kubelet already
//     has a credential (e.g. /etc/kubernetes/kubelet.conf);
//   - join.kubernetes.server, token and caCertHashes: kubeadm's TLS
//     bootstrap, for the appliance. The CA is read anonymously from
//     kube-public/cluster-info and accepted only if its public key hashes
//     to one of caCertHashes; the token (sent only to a server that
//     proves that CA) creates a CSR for signer
//     kubernetes.io/kube-apiserver-client-kubelet, which
//     kube-controller-manager approves and signs; the kubeconfig built
//     from the certificate is kept in <state-dir>/kubernetes/kubelet.conf
//     (0600) and reused until it nears expiry.
//
// A pod's Weft network is, first to name one:
//  1. the pod's annotation weft.net/network;
//  2. the label weft.net/network of the pod's namespace;
//  3. join.kubernetes.defaultNetwork;
//  4. the network the CNI request names (the conflist's network, or
//     CNI_ARGS weft.network).
//
// Nodes may not read namespaces under the Node authorizer: the
// ClusterRole weft:namespace-reader (deploy/kubernetes/weft.yaml) grants
// get, list and watch of namespaces to the group system:nodes.
//
// The package is a client of the agent's local API (agentapi), like
// `weft ctl`: at start, once the watch has synced, it detaches the
// attachments of pods that vanished while the agent was down.
package kubernetes

// The keys a user sets to choose a pod's network.
const (
	// AnnotationNetwork on a pod names its Weft network.
	AnnotationNetwork = "weft.net/network"
	// LabelNetwork on a namespace names the Weft network of its pods.
	LabelNetwork = "weft.net/network"
)
