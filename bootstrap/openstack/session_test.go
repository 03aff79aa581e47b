package openstack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/weftnet/weft/config"
)

// One token serves every call; it is renewed once less than a quarter of
// its lifetime is left, before Keystone would refuse it.
func TestTokenReuseAndRenewal(t *testing.T) {
	c := needCloud(t)
	ctx := context.Background()
	s, err := Dial(ctx, adminJoin(c), quiet())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.InstancePorts(ctx, uuid()); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Auths(); n != 1 {
		t.Errorf("%d authentications for 3 calls, want 1 (the token reused)", n)
	}
	// 50 minutes later (Keystone's tokens last an hour): renewed first.
	s.mu.Lock()
	s.now = func() time.Time { return time.Now().Add(50 * time.Minute) }
	s.mu.Unlock()
	if _, err := s.InstancePorts(ctx, uuid()); err != nil {
		t.Fatal(err)
	}
	if n := s.Auths(); n != 2 {
		t.Errorf("%d authentications after the token's last quarter began, want 2 (renewed before expiry)", n)
	}
	if _, err := s.InstancePorts(ctx, uuid()); err != nil {
		t.Fatal(err)
	}
	if n := s.Auths(); n != 2 {
		t.Errorf("%d authentications after the renewal, want 2 (the new token reused)", n)
	}
}

// An application credential authenticates as well as a password.
func TestApplicationCredential(t *testing.T) {
	c := needCloud(t)
	ctx := context.Background()
	pc, err := c.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	user, err := pc.GetAuthResult().(tokens.CreateResult).ExtractUser()
	if err != nil {
		t.Fatal(err)
	}
	id, err := gopenstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := applicationcredentials.Create(ctx, id, user.ID, applicationcredentials.CreateOpts{Name: "weft-" + uuid()}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	j := &config.OpenStackJoin{AuthURL: c.AuthURL, Region: "RegionOne",
		ApplicationCredential: config.ApplicationCredential{ID: ac.ID, Secret: ac.Secret}}
	s, err := Dial(ctx, j, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InstancePorts(ctx, uuid()); err != nil {
		t.Fatalf("neutron with an application credential's token: %v", err)
	}
}

// A wrong password's error names the call, Keystone's status and the
// request id an operator finds in Keystone's log.
func TestWrongPassword(t *testing.T) {
	c := needCloud(t)
	j := adminJoin(c)
	j.Password.Password = "wrong"
	_, err := Dial(context.Background(), j, quiet())
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Dial with a wrong password: %v, want an *Error", err)
	}
	if e.Call != "keystone POST /v3/auth/tokens" || e.Status != 401 || !strings.HasPrefix(e.RequestID, "req-") {
		t.Errorf("error call %q status %d request %q; want keystone POST /v3/auth/tokens, 401, req-…", e.Call, e.Status, e.RequestID)
	}
	for _, want := range []string{"keystone POST /v3/auth/tokens", "HTTP 401", "request " + e.RequestID} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("wrong password: %v", err)
}
