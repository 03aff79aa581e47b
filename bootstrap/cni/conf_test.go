package cni

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestParseConf(t *testing.T) {
	c, err := ParseConf([]byte(`{"cniVersion": "1.1.0", "name": "weft", "type": "weft", "network": "leonardo", "dns": {"nameservers": ["10.96.0.10"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "leonardo" || c.AgentSocket != "/run/weft/agent.sock" || c.DNS.Nameservers[0] != "10.96.0.10" {
		t.Fatalf("%+v", c)
	}
	for in, want := range map[string]string{
		`{"name": "weft"`:  "network configuration",
		`{"name": "weft"}`: "cniVersion: required",
		`{"cniVersion": "1.1.0", "agentSocket": "run/a.sock"}`: "not an absolute path",
		`{"cniVersion": "1.1.0", "network": 7}`:                "network configuration",
	} {
		if _, err := ParseConf([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=nginx-1;K8S_POD_INFRA_CONTAINER_ID=abc;weft.network=leonardo")
	if err != nil || a != (Args{PodNamespace: "web", PodName: "nginx-1", Network: "leonardo"}) {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := ParseArgs("K8S_POD_NAME"); err == nil {
		t.Fatal("a key without a value was taken")
	}
	c := &Conf{Network: "default-net"}
	if network(c, Args{}) != "default-net" || network(c, a) != "leonardo" {
		t.Fatal("CNI_ARGS weft.network must win over the conflist's network")
	}
}

// FuzzParseConf: no input makes the parser panic, and what it accepts
// has an absolute agent socket.
func FuzzParseConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion": "1.1.0", "name": "weft", "type": "weft", "network": "leonardo"}`))
	f.Add([]byte(`{"cniVersion": "1.1.0", "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}]}, "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}`))
	f.Add([]byte(`{"cniVersion": "0.4.0", "agentSocket": "/x", "dns": {"nameservers": ["1.1.1.1"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConf(b)
		if err == nil && !filepath.IsAbs(c.AgentSocket) {
			t.Fatalf("accepted agent socket %q", c.AgentSocket)
		}
		if err == nil {
			prevResult(c) // must not panic either
		}
	})
}

// Install writes the plugin and a conflist the reference library reads,
// and replaces both whole on a second run.
func TestInstall(t *testing.T) {
	bin, conf := t.TempDir(), t.TempDir()
	self := filepath.Join(t.TempDir(), "weft")
	os.WriteFile(self, []byte("#!/bin/sh\n"), 0o755)
	for _, nw := range []string{"leonardo", "web"} {
		if err := Install(InstallOptions{Self: self, BinDir: bin, ConfDir: conf, Network: nw, AgentSocket: "/run/weft/agent.sock"}); err != nil {
			t.Fatal(err)
		}
		list, err := libcni.ConfListFromFile(filepath.Join(conf, ConflistName))
		if err != nil {
			t.Fatal(err)
		}
		if list.CNIVersion != "1.1.0" || list.Name != "weft" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "weft" {
			t.Fatalf("conflist: %+v", list)
		}
		var c Conf // libcni adds cniVersion and name when it runs the plugin
		if err := json.Unmarshal(list.Plugins[0].Bytes, &c); err != nil || c.Network != nw {
			t.Fatalf("the plugin's entry: %+v %v", c, err)
		}
	}
	st, err := os.Stat(filepath.Join(bin, "weft"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("plugin: %v %v", st, err)
	}
	left, _ := filepath.Glob(filepath.Join(conf, ".*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := Install(InstallOptions{Self: self, BinDir: bin, ConfDir: conf}); err == nil {
		t.Fatal("an install without a network was accepted")
	}
	// --cni-version 1.0.0, for containerd 1.6/1.7; a pre-1.0 version is
	// refused by name, and the conflist there stays as it was.
	if err := Install(InstallOptions{Self: self, BinDir: bin, ConfDir: conf, Network: "web", CNIVersion: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if list, err := libcni.ConfListFromFile(filepath.Join(conf, ConflistName)); err != nil || list.CNIVersion != "1.0.0" {
		t.Fatalf("--cni-version 1.0.0: %+v %v", list, err)
	}
	if err := Install(InstallOptions{Self: self, BinDir: bin, ConfDir: conf, Network: "web", CNIVersion: "0.4.0"}); err == nil || !strings.Contains(err.Error(), `"0.4.0"`) {
		t.Fatalf("--cni-version 0.4.0: %v, want a refusal naming it", err)
	}
	if list, err := libcni.ConfListFromFile(filepath.Join(conf, ConflistName)); err != nil || list.CNIVersion != "1.0.0" {
		t.Fatalf("after a refused install: %+v %v", list, err)
	}
}
