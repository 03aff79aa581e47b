package controller

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/controller/fleetapi"

	"github.com/weftnet/weft/config"
	"github.com/weftnet/weft/config/source"
)

// TestNodeFetch: a node reads its configuration from the controller with
// config's own source for weft.config=http://<controller>/, built as init
// builds it, and gets its own documents, not another node's.
func TestNodeFetch(t *testing.T) {
	dir := t.TempDir()
	inventory := filepath.Join(dir, "fleet.yaml")
	// The test's requests come from 127.0.0.1: that is node "here".
	doc := baseConfig + `nodes:
  - name: other
    address: 192.0.2.10
    networkData:
      links: [{id: eth0, type: phy, ethernet_mac_address: "52:54:00:00:00:0a", mtu: 1500}]
  - name: here
    address: 127.0.0.1
    networkData:
      links: [{id: eth0, type: phy, ethernet_mac_address: "52:54:00:00:00:0b", mtu: 9000}]
      networks: [{id: n0, link: eth0, type: ipv4_dhcp}]
`
	if err := os.WriteFile(inventory, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testServer(t, inventory)
	ts := startAPI(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := source.NewURL(ts.URL+"/", slog.New(slog.DiscardHandler), pinnedNode(s, ts.URL+"/")) // as init/pid1 does
	b, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.MetaData == nil || b.MetaData.Name != "here" || b.MetaData.Hostname != "here" || b.MetaData.UUID == "" || b.MetaData.UUID != s.Inventory().Node("here").UUID {
		t.Errorf("meta_data.json: %+v", b.MetaData)
	}
	if b.NetworkData == nil {
		t.Fatal("no network_data.json")
	}
	u, probs := b.NetworkData.Underlay()
	if len(probs) > 0 || len(u.Links) != 1 || u.Links[0].Match.MAC.String() != "52:54:00:00:00:0b" || u.Links[0].MTU != 9000 || !u.Links[0].DHCP4 {
		t.Errorf("network_data.json: %+v %v", u, probs)
	}
	if !bytes.Equal(b.UserData, s.Inventory().UserData) {
		t.Errorf("user_data %q", b.UserData)
	}
	c, err := b.Config()
	if err != nil || c.BGP.ASN != 64512 {
		t.Errorf("weft.yaml from user_data: %v", err)
	}
	if n := s.Fleet().Nodes[1]; n.Name != "here" || n.ConfigFetched.IsZero() || n.Phase != fleetapi.PhaseBooting {
		t.Errorf("the fetch is not in the fleet view: %+v", n)
	}

	// The controller restarts (credentials are in its memory): the next
	// fetch meets a 401, claims again (the start armed the node) and gets
	// its documents; a report through the same claim works too.
	s2 := testServer(t, inventory)
	ts.Config.Handler = s2.Handler()
	if b, err := src.Fetch(ctx); err != nil || b.MetaData.Name != "here" {
		t.Errorf("a fetch after the controller's restart: %v", err)
	}
	if id := s2.Fleet().Nodes[1].Identity; id == nil || id.Claimed.IsZero() {
		t.Errorf("no claim after the restart: %+v", id)
	}

	// A node the inventory lacks: a 404, which the node's source reads as
	// "not found" at once, without retrying.
	doc2 := baseConfig + "nodes:\n  - {name: other, address: 192.0.2.10}\n"
	inventory2 := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(inventory2, []byte(doc2), 0o644); err != nil {
		t.Fatal(err)
	}
	s3 := testServer(t, inventory2)
	ts3 := startAPI(t, s3)
	t0 := time.Now()
	_, err = source.NewURL(ts3.URL+"/", nil, pinnedNode(s3, ts3.URL+"/")).Fetch(ctx)
	if !errors.Is(err, config.ErrNotFound) || time.Since(t0) > 2*time.Second {
		t.Errorf("unknown node: %v after %v, want ErrNotFound at once", err, time.Since(t0))
	}
}

// pinnedNode is the node's identity with s at url as PID 1 builds it: its
// NICs' MACs, the client pinning s's CA.
func pinnedNode(s *Server, url string) *fleetapi.Claimer {
	return &fleetapi.Claimer{URL: url, HTTP: fleetapi.HTTPClient(s.CA(), nil), MACs: func() []net.HardwareAddr { return source.NodeMACs() }}
}
