package kube

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// BootstrapGroup is the extra group of the rig's bootstrap tokens, as
// kubeadm's system:bootstrappers:kubeadm:default-node-token.
const BootstrapGroup = "system:bootstrappers:weft"

// bootstrapObjects creates what kubeadm init leaves for nodes that join
// with a bootstrap token: the RBAC that lets the token's group create a
// node-client CSR and have it approved automatically, lets nodes renew
// their certificates, and lets anyone read kube-public/cluster-info (the
// CA a joining node checks against its pinned hash).
func (cp *ControlPlane) bootstrapObjects(ctx context.Context) error {
	rbac := cp.Admin.RbacV1()
	group := func(name string) []rbacv1.Subject {
		return []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: name}}
	}
	bindings := []*rbacv1.ClusterRoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Name: "weft:kubelet-bootstrap"}, Subjects: group(BootstrapGroup),
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "weft:node-autoapprove-bootstrap"}, Subjects: group(BootstrapGroup),
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole",
				Name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "weft:node-autoapprove-certificate-rotation"}, Subjects: group("system:nodes"),
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole",
				Name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"}},
	}
	for _, b := range bindings {
		if _, err := rbac.ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("clusterrolebinding %s: %w", b.Name, err)
		}
	}
	info := clientcmdapi.NewConfig()
	info.Clusters[""] = &clientcmdapi.Cluster{Server: cp.Server, CertificateAuthorityData: cp.ca.pem}
	kc, err := clientcmd.Write(*info)
	if err != nil {
		return fmt.Errorf("cluster-info: %w", err)
	}
	if _, err := cp.Admin.CoreV1().ConfigMaps("kube-public").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-info"}, Data: map[string]string{"kubeconfig": string(kc)},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kube-public/cluster-info: %w", err)
	}
	if _, err := rbac.Roles("kube-public").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "weft:bootstrap-signer-clusterinfo"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{"cluster-info"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("role kube-public/weft:bootstrap-signer-clusterinfo: %w", err)
	}
	if _, err := rbac.RoleBindings("kube-public").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "weft:bootstrap-signer-clusterinfo"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:anonymous"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "weft:bootstrap-signer-clusterinfo"},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("rolebinding kube-public/weft:bootstrap-signer-clusterinfo: %w", err)
	}
	return nil
}

// BootstrapToken creates a fresh bootstrap token (id.secret) in the
// BootstrapGroup, as kubeadm token create does.
func (cp *ControlPlane) BootstrapToken(ctx context.Context) (string, error) {
	id, secret := randomToken(6), randomToken(16)
	_, err := cp.Admin.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"token-id": id, "token-secret": secret,
			"usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
			"auth-extra-groups": BootstrapGroup,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("bootstrap token: %w", err)
	}
	return id + "." + secret, nil
}

func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
