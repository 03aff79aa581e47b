package kube

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestControlPlane: the rig's servers answer, a node's minted credential
// is a node to the API server (the Node authorizer lets it list only its
// own pods), and a bootstrap token is accepted.
func TestControlPlane(t *testing.T) {
	cp := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, err := cp.NodeKubeconfig("n1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	node := kubernetes.NewForConfigOrDie(cfg)
	if _, err := node.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"}); err != nil {
		t.Fatalf("node n1 lists its own pods: %v", err)
	}
	if _, err := node.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n2"}); err == nil {
		t.Fatal("node n1 listed n2's pods: the Node authorizer is not in force")
	}
	tok, err := cp.BootstrapToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bcfg := *cfg
	bcfg.TLSClientConfig.CertData, bcfg.TLSClientConfig.KeyData, bcfg.BearerToken = nil, nil, tok
	if _, err := kubernetes.NewForConfigOrDie(&bcfg).CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the bootstrap token lists CSRs: %v", err)
	}
}
