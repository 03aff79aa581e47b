// Package pki is the controller's certificate authority: a key and a
// self-signed CA certificate created in the state directory on the first
// start and kept, and the server certificate it issues at each start.
// Nodes pin the CA by its public key's hash (fleetapi.Pin, weft.ca=), so
// the CA outlives every server certificate and a new CA is a new pin.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"
)

// The CA's files in the state directory.
const (
	KeyFile  = "ca.key" // ECDSA P-256, PKCS#8 PEM, 0600
	CertFile = "ca.crt" // the self-signed CA certificate, PEM
)

// caValidity is long: a CA that expires changes every node's boot
// parameters, which is the operator's decision (delete the files), not
// the calendar's.
const caValidity = 20 * 365 * 24 * time.Hour

// serverValidity bounds a server certificate; a new one is issued at
// every start.
const serverValidity = 397 * 24 * time.Hour

// CA is the controller's certificate authority.
type CA struct {
	key  crypto.Signer
	cert *x509.Certificate
}

// Load reads the CA from dir, creating dir (0700) and the CA when neither
// file exists. created says it was made now. A file that is missing while
// the other exists, or that does not parse, is an error naming it: a
// damaged CA is never replaced silently (every node's pin would change).
func Load(dir string) (ca *CA, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("state directory: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	_, kerr := os.Stat(keyPath)
	_, cerr := os.Stat(certPath)
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(cerr, fs.ErrNotExist):
		ca, err := create(keyPath, certPath)
		return ca, err == nil, err
	case errors.Is(kerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("%s: missing while %s exists: restore it, or delete both to make a new CA (every node then needs the new weft.ca=)", keyPath, certPath)
	case errors.Is(cerr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("%s: missing while %s exists: restore it, or delete both to make a new CA (every node then needs the new weft.ca=)", certPath, keyPath)
	}
	ca, err = read(keyPath, certPath)
	return ca, false, err
}

func create(keyPath, certPath string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft controller CA " + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	// The key first: a certificate without its key is the state Load
	// refuses, a key without its certificate too, but a crash between
	// the two leaves a file the operator sees named.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &CA{key: key, cert: cert}, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func read(keyPath, certPath string) (*CA, error) {
	kb, err := pemBlock(keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: a %T is not a signing key", keyPath, k)
	}
	cb, err := pemBlock(certPath, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", certPath)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	return &CA{key: key, cert: cert}, nil
}

func pemBlock(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %s block", path, typ)
	}
	return blk.Bytes, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// Pin is what nodes pin: the hash of the CA's public key.
func (ca *CA) Pin() fleetapi.Pin { return fleetapi.PinOf(ca.cert) }

// Issue makes a server certificate for the addresses and names a client
// may dial, with a fresh key. The chain it returns carries the CA too:
// a pinned client finds the CA by its key in what the server sends.
func (ca *CA) Issue(ips []netip.Addr, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"weft"}, CommonName: "weft controller"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
