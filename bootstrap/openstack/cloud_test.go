package openstack

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/internal/testrig/cloud"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// One Keystone and Neutron for the package, started by the first test
// that needs them: starting them costs ~20 s.
var (
	cloudOnce sync.Once
	theCloud  *cloud.Cloud
	cloudErr  error
	cloudDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theCloud != nil {
		theCloud.Stop()
	}
	if code == 0 && cloudDir != "" {
		os.RemoveAll(cloudDir)
	}
	os.Exit(code)
}

// needCloud is the package's cloud, or skips (fails under CI).
func needCloud(t *testing.T) *cloud.Cloud {
	t.Helper()
	testenv.SkipIfShort(t)
	if m := cloud.Missing(); m != "" {
		testenv.Unavailable(t, m+" not on PATH (make openstack-deps installs Keystone and Neutron)")
	}
	cloudOnce.Do(func() {
		if cloudDir, cloudErr = os.MkdirTemp("", "weft-openstack-"); cloudErr != nil {
			return
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		theCloud, cloudErr = cloud.Start(ctx, cloudDir)
		t.Logf("keystone and neutron started in %s", time.Since(start).Round(100*time.Millisecond))
	})
	if cloudErr != nil {
		t.Fatalf("starting keystone and neutron (state in %s): %v", cloudDir, cloudErr)
	}
	return theCloud
}

// adminJoin is join.openstack with the cloud's admin password.
func adminJoin(c *cloud.Cloud) *config.OpenStackJoin {
	return &config.OpenStackJoin{AuthURL: c.AuthURL, Region: cloud.Region,
		Password: &config.OpenStackPassword{Username: "admin", Password: cloud.Password, Project: "admin"}}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// admin is a Neutron client for the test's own setup.
func admin(t *testing.T, c *cloud.Cloud) *gophercloud.ServiceClient {
	t.Helper()
	ctx := context.Background()
	pc, err := c.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := gopenstack.NewNetworkV2(pc, gophercloud.EndpointOpts{Region: cloud.Region})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// makeNetwork creates a VXLAN network with segmentation id seg and one
// subnet, and returns their IDs.
func makeNetwork(t *testing.T, n *gophercloud.ServiceClient, name string, seg int, cidr string) (netID, subnetID string) {
	t.Helper()
	ctx := context.Background()
	var got struct {
		Network struct {
			ID string `json:"id"`
		} `json:"network"`
	}
	body := map[string]any{"network": map[string]any{"name": name, "provider:network_type": "vxlan", "provider:segmentation_id": seg}}
	if _, err := n.Post(ctx, n.ServiceURL("networks"), body, &got, nil); err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	sn, err := subnets.Create(ctx, n, subnets.CreateOpts{NetworkID: got.Network.ID, CIDR: cidr, IPVersion: gophercloud.IPv4}).Extract()
	if err != nil {
		t.Fatalf("create subnet %s: %v", cidr, err)
	}
	return got.Network.ID, sn.ID
}

func makePort(t *testing.T, n *gophercloud.ServiceClient, opts ports.CreateOptsBuilder) *ports.Port {
	t.Helper()
	p, err := ports.Create(context.Background(), n, opts).Extract()
	if err != nil {
		t.Fatalf("create port: %v", err)
	}
	return p
}
