package kubernetes_test

import (
	"testing"
	"time"
)

// A real kubelet runs pods with `weft cni` as its network plugin: they
// start and get Weft addresses, the ones the agent's attachments hold.
func TestKubelet(t *testing.T) {
	r := newKubeletRig(t, "wkl")
	start := time.Now()
	r.pod(t, "default", "web-1", nil)
	ip, att := r.running(t, "default", "web-1")
	t.Logf("pod web-1 running with %s (network %s) %v after creation", ip, att.Network, time.Since(start).Round(time.Millisecond))
	if addrOnly(att.Addresses[0]) != ip || att.Network != "nginx" || !att.Installed {
		t.Fatalf("pod IP %s, attachment %+v", ip, att)
	}
	c, err := klDial(att.Netns, ip+":8000", 5*time.Second)
	if err != nil {
		t.Fatalf("connect to web-1 from its own namespace: %v", err)
	}
	defer c.Close()
	if err := klEcho(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
}
