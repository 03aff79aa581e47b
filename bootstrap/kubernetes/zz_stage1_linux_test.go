package kubernetes_test

import (
	"testing"
	"time"
)

func TestKubeletStage1(t *testing.T) {
	r := newKubeletRig(t, "wkl")
	start := time.Now()
	r.pod(t, "default", "web-1", nil)
	ip, att := r.running(t, "default", "web-1")
	t.Logf("pod web-1 running with %s (network %s) %v after creation: %+v", ip, att.Network, time.Since(start).Round(time.Millisecond), att)
	mustConnect(t, att.Netns, ip+":8000")
}
