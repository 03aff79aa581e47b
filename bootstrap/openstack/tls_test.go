package openstack

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// Keystone behind TLS: trusted through join.openstack.caCert, and refused
// (naming the call, with no answer) without it.
func TestKeystoneTLSWithCA(t *testing.T) {
	c := needCloud(t)
	target, err := url.Parse(c.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	srv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	defer srv.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	j := adminJoin(c)
	j.AuthURL = srv.URL + "/v3"
	_, err = Dial(context.Background(), j, quiet())
	var e *Error
	if !errors.As(err, &e) || e.Call != "keystone POST /v3/auth/tokens" || e.Status != 0 || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Dial over TLS without the CA: %v; want the call, no answer, and the certificate's fault", err)
	}
	t.Logf("without the CA: %v", err)
	j.CACert = ca
	s, err := Dial(context.Background(), j, quiet())
	if err != nil {
		t.Fatalf("Dial over TLS with join.openstack.caCert: %v", err)
	}
	if s.Auths() != 1 {
		t.Errorf("%d authentications, want 1", s.Auths())
	}
}
