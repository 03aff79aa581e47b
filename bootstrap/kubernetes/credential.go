package kubernetes

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/atomicfile"
)

// renewBefore: a kept certificate closer than this to its end is not
// reused; the node bootstraps again (with a token that must still be
// valid).
const renewBefore = time.Hour

// Credential returns the node's client configuration for the API server:
// join.kubernetes.kubeconfig as it is, or the result of a bootstrap
// (kept under stateDir when there is one; "" = in memory only).
func Credential(ctx context.Context, j *config.KubernetesJoin, node, stateDir string, log *slog.Logger) (*rest.Config, error) {
	if j.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", j.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("join.kubernetes.kubeconfig %s: %w", j.Kubeconfig, err)
		}
		return cfg, nil
	}
	path := ""
	if stateDir != "" {
		path = filepath.Join(stateDir, "kubernetes", "kubelet.conf")
		if cfg, ok := reuse(path, j.Server, log); ok {
			return cfg, nil
		}
	}
	kc, err := Bootstrap(ctx, j, node)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("bootstrap: keeping the credential: %w", err)
		}
		if err := atomicfile.WriteFile(path, kc, 0o600); err != nil {
			return nil, fmt.Errorf("bootstrap: keeping the credential: %w", err)
		}
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return cfg, nil
}

// reuse loads a kept credential for server that is not near its end.
func reuse(path, server string, log *slog.Logger) (*rest.Config, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	kc, err := clientcmd.Load(b)
	if err != nil {
		log.Warn("kept credential unreadable; bootstrapping again", "path", path, "err", err)
		return nil, false
	}
	for _, ai := range kc.AuthInfos {
		certs, err := certutil.ParseCertsPEM(ai.ClientCertificateData)
		if err != nil || len(certs) == 0 || time.Until(certs[0].NotAfter) < renewBefore {
			log.Info("kept credential expires; bootstrapping again", "path", path)
			return nil, false
		}
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil || cfg.Host != server {
		return nil, false
	}
	return cfg, true
}

// Bootstrap runs kubeadm's TLS bootstrap for node and returns a
// kubeconfig (everything embedded) with the node's new certificate.
func Bootstrap(ctx context.Context, j *config.KubernetesJoin, node string) ([]byte, error) {
	caPEM, err := discoverCA(ctx, j.Server, j.CACertHashes)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	boot, err := kubernetes.NewForConfig(&rest.Config{Host: j.Server, BearerToken: j.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}, UserAgent: "weft-agent/bootstrap"})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: key: %w", err)
	}
	req, err := certutil.MakeCSR(key, &pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: CSR: %w", err)
	}
	name, uid, err := csr.RequestCertificateWithContext(ctx, boot, req, "", certificatesv1.KubeAPIServerClientKubeletSignerName, nil,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, key)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: CSR for system:node:%s (is the token %s… valid and bound to system:node-bootstrapper?): %w",
			node, strings.SplitN(j.Token, ".", 2)[0], err)
	}
	cert, err := csr.WaitForCertificate(ctx, boot, name, uid)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: CSR %s not signed (does kube-controller-manager approve node-client CSRs of the token's group?): %w", name, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: key: %w", err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubernetes"] = &clientcmdapi.Cluster{Server: j.Server, CertificateAuthorityData: caPEM}
	kc.AuthInfos["system:node:"+node] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: keyPEM}
	kc.Contexts["default"] = &clientcmdapi.Context{Cluster: "kubernetes", AuthInfo: "system:node:" + node}
	kc.CurrentContext = "default"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: kubeconfig: %w", err)
	}
	return b, nil
}

// discoverCA reads the cluster CA from kube-public/cluster-info without
// trusting the server yet (anonymously: the token is not sent), and
// accepts it only if its public key matches one of the pinned hashes.
func discoverCA(ctx context.Context, server string, hashes []string) ([]byte, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		// Not verified here: the CA it yields is checked against the pins,
		// and every later request verifies the server with that CA.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimSuffix(server, "/")+"/api/v1/namespaces/kube-public/configmaps/cluster-info", nil)
	if err != nil {
		return nil, fmt.Errorf("cluster-info: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cluster-info: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("cluster-info: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster-info: %s (kubeadm init creates kube-public/cluster-info and lets system:anonymous read it)", resp.Status)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &cm); err != nil {
		return nil, fmt.Errorf("cluster-info: %w", err)
	}
	kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		return nil, fmt.Errorf("cluster-info: kubeconfig: %w", err)
	}
	for _, c := range kc.Clusters {
		rest := c.CertificateAuthorityData
		for {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				continue
			}
			sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
			if slices.ContainsFunc(hashes, func(h string) bool { return strings.EqualFold(h, "sha256:"+hex.EncodeToString(sum[:])) }) {
				return bytes.Clone(c.CertificateAuthorityData), nil
			}
		}
	}
	return nil, fmt.Errorf("cluster-info: the server's CA matches none of join.kubernetes.caCertHashes " +
		"(on the control plane: openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | sha256sum)")
}
