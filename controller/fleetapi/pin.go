package fleetapi

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// A Pin names the controller's CA: the SHA-256 of its certificate's DER
// SubjectPublicKeyInfo, written "sha256:<64 hex digits>" (what kubeadm's
// --discovery-token-ca-cert-hash pins). The kernel command line carries
// it as weft.ca=; `weft controller ca-hash` prints it. The zero Pin pins
// nothing.
type Pin [sha256.Size]byte

const pinPrefix = "sha256:"

// ParsePin reads "sha256:<64 hex digits>". Its errors say which byte is
// wrong; the caller names the field (weft.ca, --ca).
func ParsePin(s string) (Pin, error) {
	var p Pin
	hexs, ok := strings.CutPrefix(s, pinPrefix)
	if !ok {
		return p, fmt.Errorf("%q: want sha256:<64 hex digits> (weft controller ca-hash prints it)", s)
	}
	if len(hexs) != 2*len(p) {
		return p, fmt.Errorf("%q: %d hex digits after sha256:, want %d", s, len(hexs), 2*len(p))
	}
	for i := 0; i < len(hexs); i++ {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(hexs[i])) {
			return p, fmt.Errorf("%q: byte %d (%q) is not a hex digit", s, len(pinPrefix)+i, hexs[i])
		}
	}
	hex.Decode(p[:], []byte(hexs)) // checked above
	if p.IsZero() {
		return p, fmt.Errorf("%q: all zeros pins nothing", s)
	}
	return p, nil
}

func (p Pin) String() string { return pinPrefix + hex.EncodeToString(p[:]) }

// IsZero reports whether p pins nothing.
func (p Pin) IsZero() bool { return p == Pin{} }

// PinOf is the pin of cert's public key.
func PinOf(cert *x509.Certificate) Pin { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// ReadPinFile returns the pin of the CA certificate in a PEM file (the
// controller's ca.crt).
func ReadPinFile(path string) (Pin, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Pin{}, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return Pin{}, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return Pin{}, fmt.Errorf("%s: %w", path, err)
	}
	return PinOf(cert), nil
}

// TLSConfig accepts a server at host (a name or an IP address, as
// dialled) only when the chain it sends contains a CA certificate whose
// public key has pin's hash and the server's certificate verifies against
// that CA for host. No system root is consulted: the pin is the trust.
func TLSConfig(pin Pin, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: host,
		// The standard verification knows roots, not pins: it is
		// replaced by VerifyConnection, which checks both the pin and
		// the host.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, pin, host)
		},
	}
}

func verifyPinned(chain []*x509.Certificate, pin Pin, host string) error {
	if len(chain) == 0 {
		return errors.New("the server sent no certificate")
	}
	var ca *x509.Certificate
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if PinOf(c) == pin && c.IsCA && c.BasicConstraintsValid {
			ca = c
		}
		inter.AddCert(c)
	}
	if ca == nil {
		return fmt.Errorf("the server's certificate chain (%s) has no CA with the pinned key %s: another controller, or weft.ca= is out of date",
			chain[0].Subject, pin)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host}); err != nil {
		return fmt.Errorf("the server's certificate does not verify against the pinned CA for %s: %w", host, err)
	}
	return nil
}

// DialFunc dials the controller's TCP address; nil = a net.Dialer.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// HTTPClient returns the client for a controller. With a pin, it speaks
// only https and accepts only a server that TLSConfig accepts for the
// dialled host; a plain http URL is refused. Without one (the zero Pin),
// https is verified against the system's roots, and refused with a
// message that says what to do when there are none (an appliance image
// ships none). It has no overall timeout: each call bounds itself by its
// context (the long polls wait up to MaxWait).
func HTTPClient(pin Pin, dial DialFunc) *http.Client {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: MaxWait + 15*time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
	if !pin.IsZero() {
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			raw, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, TLSConfig(pin, host))
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, fmt.Errorf("TLS with %s: %w", addr, err)
			}
			return tc, nil
		}
	}
	return &http.Client{Transport: schemeCheck{pin: pin, next: t}}
}

// schemeCheck refuses what the pin cannot protect, before anything is
// sent: a pinned client's plain http request, an unpinned https request
// on a system without roots.
type schemeCheck struct {
	pin  Pin
	next http.RoundTripper
}

func (s schemeCheck) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case !s.pin.IsZero() && r.URL.Scheme != "https":
		return nil, fmt.Errorf("%s: the controller's CA is pinned (%s): the URL must be https", r.URL.Redacted(), s.pin)
	case s.pin.IsZero() && r.URL.Scheme == "https" && !SystemRoots():
		return nil, fmt.Errorf("%s: no CA pin (weft.ca=sha256:…, printed by weft controller ca-hash) and this system has no CA certificates to verify the server with", r.URL.Redacted())
	}
	return s.next.RoundTrip(r)
}

var systemRoots = sync.OnceValue(func() bool {
	p, err := x509.SystemCertPool()
	// On Linux the system pool is an ordinary pool: Subjects counts it.
	return err == nil && len(p.Subjects()) > 0
})

// SystemRoots reports whether this system has CA certificates to verify
// an unpinned https server with.
func SystemRoots() bool { return systemRoots() }
